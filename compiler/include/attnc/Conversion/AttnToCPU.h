//===- AttnToCPU.h - attn.kernel -> flash-tiled scf/vector ------*- C++ -*-===//

#ifndef ATTNC_CONVERSION_ATTNTOCPU_H
#define ATTNC_CONVERSION_ATTNTOCPU_H

#include "attnc/Conversion/Passes.h"

#include <string>

namespace mlir {
namespace attn {

/// Names of the functions `attn-to-cpu` emits for kernel `name`.
inline std::string cpuEntryName(llvm::StringRef name) { return name.str(); }
inline std::string cpuItemName(llvm::StringRef name) { return (name + "_item").str(); }
/// The KV-cache functions of a kernel compiled with kv-cache: the append of
/// token rows of `inputType` (f32, bf16 or f16) and the move of pool rows.
inline std::string cpuAppendName(llvm::StringRef name, llvm::StringRef inputType) {
  return (name + "_append_" + inputType).str();
}
inline std::string cpuMoveName(llvm::StringRef name) { return (name + "_move").str(); }

/// Kernels compiled with kv-cache and a tile of more than kCpuDecodeTileQ
/// packed rows also get a decode twin, the work item `<name>_decode_item`
/// with tiles of kCpuDecodeTileQ packed rows and kCpuDecodeTileK keys: a
/// decode step packs only G x Nq rows (4 for Hq/Hkv = 32/8, one query),
/// which the default tile (32, for prefill chunks) fills an eighth of. The
/// runtime launches it when G x Nq fits (bench/NOTES.md: 3-5x faster
/// decode steps on one core).
constexpr int64_t kCpuDecodeTileQ = 4, kCpuDecodeTileK = 16;
inline std::string cpuDecodeItemName(llvm::StringRef name) { return (name + "_decode_item").str(); }

} // namespace attn
} // namespace mlir

#endif // ATTNC_CONVERSION_ATTNTOCPU_H
