//===- MergeKernel.h - The split-KV decode's merge kernel -------*- C++ -*-===//
//
// With more than one split the decode kernel (DecodeKernel.h) writes each
// split's normalized part of O and its LSE; `attnc_<K>_merge` (grid (Nq,
// Hq, B), Dv threads) combines them into O and (write_lse) the LSE:
//   u64 O_part, LSE_part, O, LSE
//   i32 B, Hq, Nq, splits
//   i64 o_sb, o_sh, o_sn, lse_sb, lse_sh
//   i32 write_lse
// Split s's part of row (b, h, i) is row s * B * Hq * Nq + (b * Hq + h) *
// Nq + i of O_part (f32, Dv each) and LSE_part (f32). Rows no split saw a
// key of get O = 0 and LSE = -inf. With cfg.decodePdl (sm_90+) it begins
// with griddepcontrol.wait, so the runtime may launch it while the decode
// grid still runs (metadata `merge_pdl 1`).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_MERGEKERNEL_H
#define ATTNC_CONVERSION_ATTNTONVVM_MERGEKERNEL_H

#include "attnc/Conversion/AttnToNVVM.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::attn::nvvm {

/// Emits `attnc_<K>_merge` of `kernel` (Dv from `cfg`, O of `elemType`) at
/// `gpuModuleBuilder`.
void buildMergeKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType,
                      OpBuilder &gpuModuleBuilder);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_MERGEKERNEL_H
