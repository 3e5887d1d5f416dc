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

/// A decode twin: the kernel's work item on tiles of tileQ packed rows and
/// tileK keys, which a cache launch takes for up to maxItems row tiles.
struct CpuDecodeTwin {
  int64_t tileQ, tileK, maxItems;
};

/// Kernels compiled with kv-cache and a tile of more packed rows than a
/// twin's also get that twin (metadata `decode_tile TQ TK ITEMS`): a decode
/// step packs only G x Nq rows (4 for Hq/Hkv = 32/8, one query), which the
/// default tile (32, for prefill chunks) fills an eighth of. The runtime
/// launches the first twin whose items hold the rows (bench/NOTES.md, one
/// core: 4-row tiles make decode steps 3-5x faster, two of their items
/// still beat the 32-row item; a 16-row item runs 9-16 rows 1.35-1.7x
/// faster than the 32-row item, two of them lose to it).
inline constexpr CpuDecodeTwin kCpuDecodeTwins[] = {{4, 16, 2}, {16, 8, 1}};

/// The item of the decode twin of `tileQ` rows: `<name>_decode_item` for
/// the first twin (its name before there were several), else
/// `<name>_decode_item_q<tileQ>`.
inline std::string cpuDecodeItemName(llvm::StringRef name, int64_t tileQ) {
  std::string item = (name + "_decode_item").str();
  return tileQ == kCpuDecodeTwins[0].tileQ ? item : item + "_q" + std::to_string(tileQ);
}

} // namespace attn
} // namespace mlir

#endif // ATTNC_CONVERSION_ATTNTOCPU_H
