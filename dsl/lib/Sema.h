//===- Sema.h - Semantic analysis of DSL programs ---------------*- C++ -*-===//

#ifndef ATTNC_DSL_LIB_SEMA_H
#define ATTNC_DSL_LIB_SEMA_H

#include "attnc/DSL/Frontend.h"

namespace attnc::dsl {

/// Resolves names, checks types and fills the Sema annotations of every
/// module in `prog`. Reports errors as diagnostics; returns false if any.
bool runSema(Program &prog, mlir::MLIRContext &ctx);

} // namespace attnc::dsl

#endif // ATTNC_DSL_LIB_SEMA_H
