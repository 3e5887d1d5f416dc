// The kernel cache from the command line: a cold compile, a disk hit from a
// second process, `attnc cache stats|clear`, and --emit=obj's errors.
//
// RUN: rm -rf %t && mkdir -p %t
// RUN: env ATTNC_CACHE_DIR=%t/cache attnc run %S/Inputs/kernels.attn --kernel=dense --shape=1,1,1,17,17,32 --target=cpu --check | FileCheck %s --check-prefix=COLD
// RUN: grep -a -o -h "tile_[qk] [0-9]*" %t/cache/*.so | FileCheck %s --check-prefix=TILES
// RUN: env ATTNC_CACHE_DIR=%t/cache attnc run %S/Inputs/kernels.attn --kernel=dense --shape=1,2,1,33,9,32 --target=cpu --check | FileCheck %s --check-prefix=WARM
// RUN: env ATTNC_CACHE_DIR=%t/cache attnc cache stats | FileCheck %s --check-prefix=STATS
// RUN: env ATTNC_CACHE_DIR=%t/cache attnc cache clear | FileCheck %s --check-prefix=CLEAR
// RUN: env ATTNC_CACHE_DIR=%t/cache attnc cache stats | FileCheck %s --check-prefix=EMPTY
// RUN: not env ATTNC_CACHE_DIR=%t/cache attnc cache frobnicate 2>&1 | FileCheck %s --check-prefix=BADACTION
// RUN: not attnc %S/Inputs/kernels.attn --kernel=dense --emit=obj 2>&1 | FileCheck %s --check-prefix=NOOUT
// RUN: attnc %S/Inputs/kernels.attn --kernel=dense --target=cpu --emit=obj --head-dim=32 -o %t/dense.o
// RUN: FileCheck %s --check-prefix=HEADER < %t/dense.h

// COLD: cpu jit: compiled in
// COLD: PASS
// attnc run compiles with the pipeline's default tiles (CpuOptions).
// TILES: tile_q 32
// TILES: tile_k 8
// A new shape is not a new kernel: the second process hits the disk cache.
// WARM: cpu jit: disk in
// WARM: PASS
// STATS: entries: 1
// STATS: hits: 1
// STATS: misses: 1
// STATS: corrupt: 0
// CLEAR: cleared
// EMPTY: entries: 0
// EMPTY: hits: 0
// BADACTION: error: unknown action 'frobnicate'
// NOOUT: error: --emit=obj needs -o FILE.o
// HEADER: void _mlir_ciface_dense_item(attnc_memref4 *Q, attnc_memref4 *K, attnc_memref4 *V, attnc_memref4 *O, attnc_memref3 *LSE, int32_t q_offset, int64_t b, int64_t h, int64_t qtile);
// HEADER: void attnc_dense_item_packed(void **args);
// HEADER: extern const char attnc_dense_metadata[];
