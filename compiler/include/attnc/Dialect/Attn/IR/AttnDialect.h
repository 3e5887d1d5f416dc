//===- AttnDialect.h - attn dialect -----------------------------*- C++ -*-===//
//
// The attn dialect: attention kernels before tiling (docs/ir.md).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNDIALECT_H
#define ATTNC_DIALECT_ATTN_IR_ATTNDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Dialect.h"

#include "attnc/Dialect/Attn/IR/AttnDialect.h.inc"

namespace mlir {
class DialectRegistry;
namespace attn {

/// Inserts the attn dialect and the dialects its bodies are written in
/// (arith, math, func, tensor) into `registry`.
void registerAttnDialect(DialectRegistry &registry);

} // namespace attn
} // namespace mlir

#endif // ATTNC_DIALECT_ATTN_IR_ATTNDIALECT_H
