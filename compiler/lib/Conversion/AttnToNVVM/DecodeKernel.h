//===- DecodeKernel.h - KV-cache decode kernels for NVIDIA GPUs -*- C++ -*-===//
//
// attn-to-nvvm with kv-cache=true (DecodeKernel.cpp). ABI of the decode
// kernel `attnc_<K>` (grid (row tiles x splits, Hkv, B), block-k / 16
// warps; row tiles = ceil(G * Nq / block-q), G = Hq / Hkv):
//   u64 Q, K pool, V pool, O, LSE, O_part, LSE_part
//   i32 B, Hq, Hkv, Nq, P, max_pages, max_slots, splits, split_slots
//   i64 q_sb, q_sh, q_sn, o_sb, o_sh, o_sn, lse_sb, lse_sh
//   u64 kv_pages, kv_pos, kv_len, q_pos, k_scale, v_scale
//   i32 write_lse
//   then the runtime parameters (as the prefill kernel's), and with
//   cfg.decodeTma where the pages take bulk tensor copies (the module's
//   attn::kDecodeTmaAttr) two tensor maps by value (CUtensorMap, 128
//   bytes): over the key and the value pool as [pages * P, row] matrices.
//   (The merge and mass kernels take none.)
// Pools are [pages, P, D] / [pages, P, Dv] (a page holds one KV head's P
// slots); tables are i32: kv_pages [B * Hkv, max_pages], kv_pos [B * Hkv,
// max_slots] (-1: not retained) or null (slot j holds position j: no
// positions are read), kv_len [B * Hkv], q_pos [B] (the first query's
// position). With splits = 1 the kernel writes O and LSE; with
// more, split s writes rows s * B * Hq * Nq + (b * Hq + h) * Nq + i of
// O_part (f32, Dv each) and LSE_part (f32), and `attnc_<K>_merge`
// combines them (ABI in MergeKernel.h).
// Budget policies (H2O, SnapKV) also store their scores after LSE_part
// (f32 [B * Hkv, G * Nq, splits * split_slots], also with one split) and
// add `attnc_<K>_mass`, which turns them into each slot's attention mass
// once the LSE is final (ABI in MassKernel.h).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_DECODEKERNEL_H
#define ATTNC_CONVERSION_ATTNTONVVM_DECODEKERNEL_H

#include "attnc/Analysis/CacheStorage.h"
#include "attnc/Analysis/TileBounds.h"
#include "attnc/Conversion/AttnToNVVM.h"

#include "mlir/IR/Builders.h"

namespace mlir::attn::nvvm {

/// The launch of the decode kernel lowerDecodeKernel emitted.
struct DecodeLaunch {
  int64_t threads = 0, sharedBytes = 0;
  /// Packed rows per CTA: cfg.blockQ, or 16 where the kernel cannot take
  /// the transposed step cfg asked for (head dims not multiples of 32, int4
  /// without quantDirectV).
  int64_t blockQ = 0;
};

/// Emits the decode kernel of `kernel`, its twins for more packed rows
/// (attn::kDecodeTwinsAttr), its merge and cache-update kernels and (budget
/// policies) its mass kernel into a new gpu.module at `moduleBuilder`.
FailureOr<DecodeLaunch> lowerDecodeKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                          Type elemType, OpBuilder &moduleBuilder);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_DECODEKERNEL_H
