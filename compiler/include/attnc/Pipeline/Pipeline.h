//===- Pipeline.h - Pass pipelines of the compiler --------------*- C++ -*-===//

#ifndef ATTNC_PIPELINE_PIPELINE_H
#define ATTNC_PIPELINE_PIPELINE_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LogicalResult.h"
#include "llvm/Support/Error.h"

namespace mlir::attn {
class KernelOp;
} // namespace mlir::attn

namespace attnc::pipeline {

/// attn as MLIRGen emits it -> self-contained kernels: every definition
/// inlined into the attention regions, then canonicalized (constants of
/// specialization fold here). Every target starts from this form.
mlir::LogicalResult runInlineAndSimplify(mlir::ModuleOp module);

/// The one attn.kernel an artifact is compiled from, or an error naming how
/// many the module holds.
llvm::Expected<mlir::attn::KernelOp> getSingleKernel(mlir::ModuleOp module);

} // namespace attnc::pipeline

#endif // ATTNC_PIPELINE_PIPELINE_H
