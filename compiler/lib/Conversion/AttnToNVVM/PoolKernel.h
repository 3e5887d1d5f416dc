//===- PoolKernel.h - SnapKV's pooled scores, on the GPU ---------*- C++ -*-===//
//
// A SnapKV head scores each retained slot by the largest attention mass
// its observation window put on the `pool` retained positions around it
// (itself, `half` before and `half` after, in position order): SnapKV's
// max-pooling, which keeps the neighbours of a heavy position. When the
// scores live on the GPU (a score and a position per pool row, as for
// H2O: VictimsKernel.h), the mass kernel writes the launch's mass table
// (MassKernel.h) and `attnc_<K>_pool` replaces the slots' scores with the
// pooled mass, so the victims kernel chooses from them and nothing comes
// back to the host:
//   u64 kv_mass      f32 [rows, mass_pitch]: the window's mass by slot
//   u64 order        i32 [rows, mass_pitch]: a row's slots in position
//                    order, -1 past its retained count (the host's tables
//                    know the order; compaction does not keep it)
//   u64 pages        i32 [rows, pages_pitch]: the page tables
//   u64 slot_scores  f32 per pool row: written
//   i32 mass_pitch, pages_pitch, page_size, half
// Grid (ceil(mass_pitch / 128), rows), 128 threads: the thread of rank i
// (its slot order[row, i]) takes the maximum over ranks i - half .. i +
// half of the mass, from 0 and in rank order (the host's std::max over its
// sorted slots: the same float), and stores it at the slot's pool row.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_POOLKERNEL_H
#define ATTNC_CONVERSION_ATTNTONVVM_POOLKERNEL_H

#include "attnc/Conversion/AttnToNVVM.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::attn::nvvm {

/// Threads of a pool CTA.
constexpr int64_t kPoolThreads = 128;

/// Emits `attnc_<K>_pool` at `gpuModuleBuilder`.
void buildPoolKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType,
                     OpBuilder &gpuModuleBuilder);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_POOLKERNEL_H
