//===- CachePrefillKernel.h - Prompt chunks over a KV cache -----*- C++ -*-===//
//
// The prefill-shaped entry of a KV-cache module, `attnc_<K>_prefill`: the
// prefill kernel (AttnToNVVM.cpp: a CTA per tile of block-q queries of one
// query head, tensor-core MMAs over block-k key tiles) reading K/V rows
// through a cache's page tables. The decode kernel packs the G query heads
// of a KV head into a few rows and splits the keys, which suits a decode
// step; a prompt chunk of hundreds of queries is the prefill kernel's
// shape instead. The runtime takes this entry for launches of many queries
// over caches whose slot j holds position j (retention `all`,
// bf16 / f16 storage). ABI: the prefill kernel's (CudaPipeline.h) with
//   K, V = the key and value pools ([pages, P, D] / [pages, P, Dv]; their
//   batch and head strides 0, row strides D / Dv), Nk and q_offset unused,
// then, before the runtime parameters,
//   u64 kv_pages (i32 [B * Hkv, max_pages]), kv_len (i32 [B * Hkv]),
//       q_pos (i32 [B]: the first query's position), O_part, LSE_part
//   i32 max_pages, P (unused when the policy fixes P), splits
// Grid (ceil(Nq / block-q) * splits, Hq, B). A sequence's keys are its
// kv_len slots; the mask sees query q_pos[b] + i and key (slot) j.
// With splits > 1 (short chunks, whose query tiles alone leave SMs idle)
// the splits of a query tile take consecutive runs of its key tiles, and
// each writes its part of O (f32, normalized over its keys) and its LSE to
// O_part / LSE_part in the merge kernel's layout (MergeKernel.h), which
// then writes O and the LSE; with one split O and LSE are written directly.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_CACHEPREFILLKERNEL_H
#define ATTNC_CONVERSION_ATTNTONVVM_CACHEPREFILLKERNEL_H

#include "attnc/Conversion/AttnToNVVM.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"

#include <array>

namespace mlir::attn::nvvm {

/// The configuration of the prefill kernel `cfg.cachePrefill` describes
/// (head dims from `cfg`, no KV-cache decode options).
attn::NvvmKernelConfig cachePrefillConfig(const attn::NvvmKernelConfig &cfg);

/// Emits `<entry>_prefill` of `kernel` with the tiles of cfg.cachePrefill
/// into the KV-cache module at `mb` (pages of `pageSize` slots, 0: given at
/// launch); returns its [block-q, threads, shared bytes].
FailureOr<std::array<int64_t, 3>> buildCachePrefillKernel(attn::KernelOp kernel,
                                                          const attn::NvvmKernelConfig &cfg,
                                                          Type elemType, int64_t pageSize,
                                                          OpBuilder &mb);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_CACHEPREFILLKERNEL_H
