// The CUDA stages printed by the driver (no GPU needed: PTX is text).
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=gpu --head-dim=64 --cuda-mma=sync | FileCheck %s --check-prefix=GPU
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=nvvm --head-dim=64 | FileCheck %s --check-prefix=NVVM
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=ptx --head-dim=64 --cuda-mma=sync -o %t.ptx
// RUN: FileCheck %s --check-prefix=PTX < %t.ptx
// RUN: FileCheck %s --check-prefix=META < %t.ptx.meta
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=ptx --dtype=f16 --arch=sm_80 | FileCheck %s --check-prefix=F16
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=gpu --cuda-mma=sync --cuda-block-q=128 --cuda-block-k=32 --cuda-warp-m-tiles=1 | FileCheck %s --check-prefix=TILES
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=gpu --head-dim=64 --cuda-mma=sync --cuda-block-q=64 --cuda-block-k=64 --cuda-warp-m-tiles=1 --cuda-stages=3 | FileCheck %s --check-prefix=STAGES
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=softcap_k --target=cuda --emit=gpu --head-dim=64 | FileCheck %s --check-prefix=SOFTCAP
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=alibi_k --target=cuda --emit=ptx --head-dim=64 -o %t.alibi.ptx
// RUN: FileCheck %s --check-prefix=ALIBI < %t.alibi.ptx.meta
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=doc_causal --target=cuda --emit=gpu --head-dim=64 --cuda-mma=sync --cuda-partial-vote | FileCheck %s --check-prefix=DOC
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=gpu --head-dim=64 | FileCheck %s --check-prefix=WGMMA
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=ptx --head-dim=64 -o %t.wg.ptx
// RUN: FileCheck %s --check-prefix=WGPTX < %t.wg.ptx
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=doc_causal --target=cuda --emit=gpu --head-dim=64 | FileCheck %s --check-prefix=WGDOC
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=doc_causal --target=cuda --emit=gpu --head-dim=64 --cuda-partial-vote | FileCheck %s --check-prefix=WGVOTE
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=causal_k --target=cuda --emit=ptx --head-dim=256 | FileCheck %s --check-prefix=WIDE
// RUN: attnc %S/../cpu/Inputs/kernels.attn --kernel=doc_causal --target=cuda --emit=gpu --head-dim=64 --cuda-class-chunk=4 | FileCheck %s --check-prefix=CHUNK
// RUN: attnc %lib/natten2d.attn --kernel=natten2d_attention --target=cuda --emit=gpu --head-dim=64 | FileCheck %s --check-prefix=NATTEN
// RUN: attnc %lib/causal.attn --kernel=causal_attention --target=cuda --emit=gpu --head-dim=64 | FileCheck %s --check-prefix=AFFINE
// RUN: attnc %lib/block_sparse.attn --kernel=block_sparse_attention --target=cuda --emit=gpu --head-dim=64 | FileCheck %s --check-prefix=BLOCKS

// One gpu.module per kernel. mma.sync tiles for D <= 128: 4 warps of 2 x 16
// query rows, 32-key tiles; Q plus two K/V stages of padded rows in dynamic
// shared memory: (128 + 2 * 32 + 2 * 32) rows * (64 + 8) * 2 bytes.
// GPU: module attributes {gpu.container_module}
// GPU: gpu.module @attnc_causal_k attributes {attn.block_k = 32 : i64, attn.block_q = 128 : i64, attn.shared_bytes = 36864 : i64, attn.threads = 128 : i64}
// GPU: llvm.mlir.global external @attnc_smem() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
// The ABI: 5 pointers, 6 i32, 14 i64 strides, write_lse.
// GPU: gpu.func @attnc_causal_k(%arg0: !llvm.ptr, %arg1: !llvm.ptr, %arg2: !llvm.ptr, %arg3: !llvm.ptr, %arg4: !llvm.ptr, %arg5: i32, %arg6: i32, %arg7: i32, %arg8: i32, %arg9: i32, %arg10: i32, %arg11: i64, {{.*}}, %arg24: i64, %arg25: i32) kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// GPU: nvvm.cp.async.shared.global {{.*}}, 16, cache = cg
// GPU: nvvm.cp.async.commit.group
// The KV loop carries m and l of 4 rows and 2 x 64 / 8 x 4 accumulators.
// GPU: scf.for {{.*}} -> ({{(f32, ){71}f32}})
// GPU: nvvm.cp.async.wait.group 1
// GPU: gpu.barrier
// GPU: nvvm.ldmatrix {{.*}} {eltType = #nvvm.ld_st_matrix_elt_type<b16>, layout = #nvvm.mma_layout<row>, num = 4 : i32, shape = #nvvm.ld_st_matrix_shape<m = 8, n = 8>}
// GPU: nvvm.mma.sync A[{{.*}}] B[{{.*}}] C[{{.*}}] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// Full tiles skip the mask; the others evaluate k <= q per element.
// GPU: scf.if
// GPU: } else {
// GPU: arith.cmpi sle
// GPU: gpu.shuffle xor
// GPU: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// GPU: nvvm.ldmatrix {{.*}}layout = #nvvm.mma_layout<col>
// GPU: gpu.return

// NVVM: gpu.module @attnc_causal_k [#nvvm.target<O = 3, chip = "sm_90a", features = "+ptx80">]
// NVVM: llvm.func @attnc_causal_k(
// NVVM-SAME: nvvm.kernel
// NVVM-NOT: scf.for

// PTX: .version 8.0
// PTX: .target sm_90a
// PTX: .extern .shared .align 16 .b8 attnc_smem[];
// PTX: .entry attnc_causal_k(
// PTX-DAG: cp.async.cg.shared.global
// PTX-DAG: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// PTX-DAG: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX-DAG: ex2.approx.ftz.f32
// PTX-DAG: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16

// META: attnc-cuda-kernel 1
// META-NEXT: kernel causal_k
// META-NEXT: entry attnc_causal_k
// META-NEXT: arch sm_90a
// META-NEXT: dtype bf16
// META-NEXT: head_dim 64
// META-NEXT: head_dim_v 64
// META-NEXT: block_q 128
// META-NEXT: threads 128
// META-NEXT: shared_bytes 36864

// F16: .version 7.0
// F16: .target sm_80
// F16: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32

// Explicit tiles: 8 warps of 16 rows, 32-key tiles (D = 128 by default):
// (128 + 2*32 + 2*32) * 136 * 2.
// TILES: gpu.module @attnc_causal_k attributes {attn.block_k = {{[0-9]+}} : i64, attn.block_q = 128 : i64, attn.shared_bytes = 69632 : i64, attn.threads = 256 : i64}

// Three K/V buffers: (64 + 3 * 64 + 3 * 64) * 72 * 2 bytes; two tiles in
// flight while one computes.
// STAGES: gpu.module @attnc_causal_k attributes {attn.block_k = {{[0-9]+}} : i64, attn.block_q = 64 : i64, attn.shared_bytes = 64512 : i64, attn.threads = 128 : i64}
// STAGES: nvvm.cp.async.wait.group 2
// STAGES: scf.for
// STAGES: nvvm.cp.async.wait.group 2

// Approximate division and the PTX tanh for the softcap score.
// SOFTCAP: arith.divf {{.*}} fastmath<arcp,afn> : f32
// SOFTCAP: llvm.inline_asm "tanh.approx.f32 $0, $1;", "=f,f"

// A tensor parameter: a pointer and its extent after the fixed ABI.
// ALIBI: param slopes tensor f32 1 H

// DOC: gpu.func @attnc_doc_causal({{.*}}%arg25: i32, %arg26: !llvm.ptr, %arg27: i32)
// A data-dependent mask with --cuda-partial-vote: keep flags before Q.K^T,
// a warp vote skips the tile's MMAs for warps that keep nothing.
// DOC: llvm.load {{.*}} invariant : !llvm.ptr<1> -> i32
// DOC: nvvm.vote.sync any
// DOC: scf.if
// DOC: nvvm.mma.sync

// The default on sm_90a for D <= 128: wgmma, two warpgroups of 64 rows,
// 128-key tiles; Q and two K/V stages unpadded (128B-swizzled) in shared
// memory aligned for the swizzle atoms: (128 + 2*128 + 2*128) * 64 * 2.
// WGMMA: gpu.module @attnc_causal_k attributes {attn.block_k = {{[0-9]+}} : i64, attn.block_q = 128 : i64, attn.shared_bytes = 81920 : i64, attn.threads = 256 : i64}
// WGMMA: llvm.mlir.global external @attnc_smem() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>
// cp.async writes reach wgmma (the async proxy) through a proxy fence.
// WGMMA: nvvm.cp.async.wait.group 1
// WGMMA-NEXT: llvm.inline_asm has_side_effects "fence.proxy.async.shared::cta;"
// WGMMA-NEXT: gpu.barrier
// S = Q.K^T: 4 k16 steps from shared-memory descriptors, the first from zero.
// WGMMA: scf.for
// WGMMA: llvm.inline_asm has_side_effects "{\0A.reg .pred zd, ad;{{.*}}wgmma.fence.sync.aligned;\0Awgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, zd, 1, 1, 0, 0;{{.*}}wgmma.mma_async{{.*}}ad, 1, 1, 0, 0;{{.*}}wgmma.commit_group.sync.aligned;\0Awgmma.wait_group.sync.aligned 0;
// P.V: P from registers, V transposed (MN-major), 8 k16 steps over 128 keys.
// WGMMA: llvm.inline_asm has_side_effects "{{.*}}wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {{.*}}, {${{[0-9]+}},${{[0-9]+}},${{[0-9]+}},${{[0-9]+}}}, ${{[0-9]+}}, ad, 1, 1, 1;
// WGMMA-NOT: nvvm.mma.sync
// WGMMA-NOT: nvvm.ldmatrix
// WGMMA: gpu.return

// WGPTX: .extern .shared .align 1024 .b8 attnc_smem[];
// WGPTX: fence.proxy.async.shared::cta;
// WGPTX-DAG: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// WGPTX-DAG: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16

// A data-dependent mask: the rows' id range once (warp butterflies, one
// barrier); then per chunk of KV tiles, each warp takes tiles, reduces the
// id range of their keys and evaluates the mask's interval bounds
// (attnc/Analysis/TileBounds.h) into a class byte in shared memory (O(1)
// per tile, never O(Nq * Nk)). Warp 0 lists the chunk's live tiles (a
// ballot per 32 classes, i16 entries); the pipelined loop runs over the list
// only, so EMPTY tiles cost nothing past their class byte.
// WGDOC: nvvm.cp.async.wait.group 0
// WGDOC: gpu.shuffle xor
// WGDOC: gpu.barrier
// WGDOC: scf.for {{.*}} step %c1024_i32 iter_args({{.*}}) -> ({{(f32, ){35}f32}})
// WGDOC-NEXT: gpu.barrier
// WGDOC: scf.for
// WGDOC: gpu.shuffle xor
// WGDOC: llvm.store {{.*}} : i8, !llvm.ptr<3>
// WGDOC: gpu.barrier
// WGDOC: scf.for {{.*}} step %c32_i32 iter_args({{.*}}) -> (i32)
// WGDOC: llvm.load {{.*}} : !llvm.ptr<3> -> i8
// WGDOC: nvvm.vote.sync  ballot
// WGDOC: llvm.intr.ctpop
// WGDOC: llvm.store {{.*}} : i16, !llvm.ptr<3>
// WGDOC: gpu.barrier
// WGDOC: llvm.load {{.*}} : !llvm.ptr<3> -> i32
// WGDOC: llvm.load {{.*}} : !llvm.ptr<3> -> i16
// WGDOC: nvvm.cp.async.shared.global
// WGDOC: nvvm.cp.async.commit.group
// WGDOC: scf.for {{.*}} -> ({{(f32, ){35}f32}})
// WGDOC: llvm.load {{.*}} : !llvm.ptr<3> -> i16
// WGDOC: llvm.load {{.*}} : !llvm.ptr<3> -> i8
// WGDOC: nvvm.cp.async.commit.group
// WGDOC-NEXT: nvvm.cp.async.wait.group 1
// By default a PARTIAL tile evaluates the mask after Q.K^T (as for index
// masks): no vote. With --cuda-partial-vote, a warpgroup none of whose rows
// keeps a key skips its MMAs (named barrier 1 + warpgroup: a wgmma needs
// all of its 4 warps).
// WGDOC-NOT: bar.red.or.pred
// WGDOC: wgmma.mma_async
// WGDOC-NOT: bar.red.or.pred
// WGVOTE: bar.red.or.pred q, $2, 128, p;
// WGVOTE: scf.if
// WGVOTE: wgmma.mma_async

// D = 256 stays on mma.sync.
// WIDE: mma.sync.aligned.m16n8k16
// WIDE-NOT: wgmma

// Shared memory of a data-dependent mask: Q, two K/V stages, 8 warps x 8
// bytes per id tensor read (doc[q], doc[k]) for the rows' range, one class
// byte and one i16 list entry per tile of a chunk, the list's length:
// 81920 + 2 * 64 + 4 + 2 * 4 + 4.
// CHUNK: gpu.module @attnc_doc_causal attributes {attn.block_k = {{[0-9]+}} : i64, attn.block_q = 128 : i64, attn.shared_bytes = 82064 : i64, attn.threads = 256 : i64}
// A new chunk every 4 tiles.
// CHUNK: scf.for {{.*}} step %c4_i32

// Index masks with division or remainder (NATTEN 2-D: q / COLS, q % COLS)
// leave EMPTY tiles inside their KV range's hull: classified at run time
// too (class bytes, then the list of live tiles).
// NATTEN: llvm.store {{.*}} : i8, !llvm.ptr<3>
// NATTEN: llvm.store {{.*}} : i16, !llvm.ptr<3>
// Affine masks need no classes: closed-form KV ranges only.
// AFFINE-NOT: : i8, !llvm.ptr<3>
// AFFINE: scf.for {{.*}} -> ({{(f32, ){35}f32}})

// A runtime block mask (blocks[b, h, q / 128, k / 128]): when a tile's
// indices are one block each, the class reads that one entry (global load
// inside the point branch); otherwise its range is i32's.
// BLOCKS: scf.if %{{.*}} -> (i64, i64) {
// BLOCKS: llvm.load %{{.*}} invariant : !llvm.ptr<1> -> i32
// BLOCKS: } else {
// BLOCKS-NEXT: scf.yield %c-2147483648_i64, %c2147483647_i64 : i64, i64
// BLOCKS: llvm.store {{.*}} : i8, !llvm.ptr<3>
