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

} // namespace attn
} // namespace mlir

#endif // ATTNC_CONVERSION_ATTNTOCPU_H
