//===- MLIRGen.h - Typed AST to the attn dialect ----------------*- C++ -*-===//

#ifndef ATTNC_DSL_MLIRGEN_H
#define ATTNC_DSL_MLIRGEN_H

#include "attnc/DSL/Frontend.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <string>

namespace attnc::dsl {

struct MLIRGenOptions {
  /// Emit only this kernel (and what it uses); empty: everything in the main
  /// file.
  std::string kernel;
  /// Values of const (specialization) parameters, as text.
  std::map<std::string, std::string> constValues;
};

/// Emits the attn dialect for a checked program. Returns null after
/// reporting errors (e.g. a const parameter with no value).
mlir::OwningOpRef<mlir::ModuleOp> mlirGen(mlir::MLIRContext &ctx, const Program &prog,
                                          const MLIRGenOptions &options);

} // namespace attnc::dsl

#endif // ATTNC_DSL_MLIRGEN_H
