//===- Passes.h - attn passes -----------------------------------*- C++ -*-===//

#ifndef ATTNC_DIALECT_ATTN_TRANSFORMS_PASSES_H
#define ATTNC_DIALECT_ATTN_TRANSFORMS_PASSES_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
namespace attn {

#define GEN_PASS_DECL
#include "attnc/Dialect/Attn/Transforms/Passes.h.inc"

/// Generates `void registerAttnPasses();`, which registers every attn pass
/// with the global registry (attnc-opt, textual pipelines).
#define GEN_PASS_REGISTRATION
#include "attnc/Dialect/Attn/Transforms/Passes.h.inc"

} // namespace attn
} // namespace mlir

#endif // ATTNC_DIALECT_ATTN_TRANSFORMS_PASSES_H
