//===- CacheUpdateKernels.h - Kernels that write a device KV cache -*- C++ -*-===//
//
// The kernels a KV cache on the GPU needs besides attention, generated with
// the decode kernel (kv-cache=true) for the policy's storage, in its
// gpu.module. Pools and scales are laid out as the decode kernel reads
// them ([pages, P, D] / [pages, P, Dv], f32 scales [pages, P, groups]); a
// pool row is page * P + slot.
//
// `attnc_<K>_append` (grid ceil(count / 4), 128 threads: a warp per row)
// writes token rows into pool rows, quantizing on the way in for int8 /
// int4 storage exactly as the host KvCache does (per token or per group:
// scale = max|x| / 127 (int4: / 7), q = round(x / scale) half away from
// zero, clamped; int4 packs element 2i in the low nibble):
//   u64 k_new, v_new     [rows, D] / [rows, Dv] of the kernel's dtype, dense
//   u64 k_pool, v_pool, k_scale, v_scale
//   u64 rows             i32 [count, 3]: (row of k_new / v_new, pool row,
//                        the token's logical position)
//   u64 slot_scores, slot_positions   f32 / i32 per pool row, or null
//   i32 count
// With the slot-metadata pools (a budget cache whose H2O scores live on
// the GPU: MassKernel.h, VictimsKernel.h), a new row's score is set to 0
// and its position stored.
//
// `attnc_<K>_move` (grid ceil(count / 4), 128 threads) copies pool rows
// (K, V and their scales), for compaction after an eviction; the moves of
// one launch must not read a row another writes:
//   u64 k_pool, v_pool, k_scale, v_scale
//   u64 slot_scores, slot_positions   moved too when not null
//   u64 moves            i32 [count, 2]: (from row, to row)
//   i32 count
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_CACHEUPDATEKERNELS_H
#define ATTNC_CONVERSION_ATTNTONVVM_CACHEUPDATEKERNELS_H

#include "attnc/Analysis/CacheStorage.h"
#include "attnc/Conversion/AttnToNVVM.h"

#include "mlir/IR/Builders.h"

namespace mlir::attn::nvvm {

/// Emits `attnc_<K>_append` and `attnc_<K>_move` of `kernel` (head dims from
/// `cfg`, new rows of `elemType`) at `gpuModuleBuilder`.
void buildCacheUpdateKernels(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                             Type elemType, const attn::CacheStorage &storage,
                             OpBuilder &gpuModuleBuilder);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_CACHEUPDATEKERNELS_H
