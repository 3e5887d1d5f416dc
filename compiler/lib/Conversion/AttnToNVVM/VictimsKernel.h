//===- VictimsKernel.h - Eviction victims of a budget cache, on the GPU -*- C++ -*-===//
//
// A budget head (H2O) that holds more slots than its budget drops all but
// the `recent` newest positions and the `keep` others of highest score,
// ties to the later position (KvCache's total order). When the scores live
// on the GPU (a score and a position per pool row, which the append, move
// and mass kernels maintain; CacheUpdateKernels.h, MassKernel.h), the
// victims are chosen there too, by `attnc_<K>_victims`, a CTA of 128
// threads per request:
//   u64 slot_scores     f32 [pool rows]: each row's eviction score
//   u64 slot_positions  i32 [pool rows]: each row's logical position
//   u64 pages           i32: the requests' page lists, one after another
//   u64 requests        i32 [count, 5]: (first page in `pages`, slots,
//                       recent_from, keep, victim cursor)
//   u64 victims         i32: slot indices out
//   i32 count, page_size
// Slot s of a request is pool row pages[first + s / P] * P + s % P; the
// candidates are its slots below `slots` whose position is in [0,
// recent_from). The CTA finds T, the keep-th largest candidate key (score
// as an ordered 32-bit integer, then the position: a total order, so the
// choice is the host's) by setting its 64 bits from the top, counting the
// candidates at or above each trial value (bar.red.popc over the bits of
// each thread's count: no shared memory; a thread's first 8 slots' keys
// read once, into registers), then writes every candidate
// below T into victims at the request's cursor (advanced by one atomic
// add a warp and round for its dying lanes, each writing at its rank among
// them; the order of one request's victims is not fixed, the set is).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_VICTIMSKERNEL_H
#define ATTNC_CONVERSION_ATTNTONVVM_VICTIMSKERNEL_H

#include "attnc/Conversion/AttnToNVVM.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::attn::nvvm {

/// Threads of a victims CTA.
constexpr int64_t kVictimsThreads = 128;
/// Slots a thread keeps the keys of in registers over the select's passes
/// (requests of up to 1024 slots read each slot once).
constexpr int64_t kVictimsCachedSlots = 8;

/// Emits `attnc_<K>_victims` at `gpuModuleBuilder`.
void buildVictimsKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType,
                        OpBuilder &gpuModuleBuilder);

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_VICTIMSKERNEL_H
