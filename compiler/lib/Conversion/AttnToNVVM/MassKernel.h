//===- MassKernel.h - The budget decode's attention-mass kernel -*- C++ -*-===//
//
// Budget policies (H2O, SnapKV) score each retained slot by its attention
// mass exp(s - LSE), which needs each row's final LSE: with split-KV only
// the merge has it. The decode kernel (DecodeKernel.h) therefore stores its
// scores (log2 domain, s * scale * log2 e after the score function; -inf
// where masked or dropped) in the workspace after the split parts,
//   scores: f32 [B * Hkv, G * Nq, splits * split_slots]
// (row (b * Hkv + g) * G * Nq + packed row, column the slot), and
// `attnc_<K>_mass` runs after the merge with the decode ABI plus, before the
// runtime parameters,
//   u64 kv_mass (f32 [B * Hkv, max_slots], added to), i32 mass_rows,
//   u64 slot_scores (f32 per pool row, or null)
// With slot_scores, each slot's sum goes to its pool row's score instead
// (the page table's row page * P + slot % P; kv_mass is not read): H2O
// scores kept on the GPU, which VictimsKernel.h evicts by.
// Grid (ceil(splits * split_slots / threads), Hkv, B), the decode's
// threads (a CTA per split looping over its slots left too few warps to
// hide the loads' latency; bench/NOTES.md, session 13): one thread per
// slot sums
// 2^(t - LSE log2 e) over the packed rows in order whose query is among the
// last mass_rows and whose LSE is finite, and adds the sum to kv_mass
// (one thread per slot, a fixed order: eviction stays deterministic). It
// reads 4 bytes per row and slot where recomputing Q.K^T read K
// (bench/NOTES.md, session 13).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_MASSKERNEL_H
#define ATTNC_CONVERSION_ATTNTONVVM_MASSKERNEL_H

#include "attnc/Conversion/AttnToNVVM.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::attn::nvvm {

/// Emits `attnc_<K>_mass` of `kernel` (a block of `threads`, the decode
/// kernel's) at `gpuModuleBuilder`.
void buildMassKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType,
                     int64_t threads, OpBuilder &gpuModuleBuilder);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_MASSKERNEL_H
