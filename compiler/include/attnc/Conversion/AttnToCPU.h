//===- AttnToCPU.h - attn.kernel -> flash-tiled scf/vector ------*- C++ -*-===//

#ifndef ATTNC_CONVERSION_ATTNTOCPU_H
#define ATTNC_CONVERSION_ATTNTOCPU_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

#include <memory>
#include <string>

namespace mlir {
namespace arith {
class ArithDialect;
} // namespace arith
namespace func {
class FuncDialect;
} // namespace func
namespace math {
class MathDialect;
} // namespace math
namespace memref {
class MemRefDialect;
} // namespace memref
namespace scf {
class SCFDialect;
} // namespace scf
namespace vector {
class VectorDialect;
} // namespace vector

namespace attn {

#define GEN_PASS_DECL
#include "attnc/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "attnc/Conversion/Passes.h.inc"

/// Names of the functions `attn-to-cpu` emits for kernel `name`.
inline std::string cpuEntryName(llvm::StringRef name) { return name.str(); }
inline std::string cpuItemName(llvm::StringRef name) { return (name + "_item").str(); }

} // namespace attn
} // namespace mlir

#endif // ATTNC_CONVERSION_ATTNTOCPU_H
