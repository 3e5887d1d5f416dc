//===- Pipeline.cpp - Pass pipelines of the compiler ----------------------===//

#include "attnc/Pipeline/Pipeline.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Dialect/Attn/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

mlir::LogicalResult attnc::pipeline::runInlineAndSimplify(mlir::ModuleOp module) {
  mlir::PassManager pm(module->getContext());
  pm.addPass(mlir::attn::createAttnInlineDefinitions());
  pm.addPass(mlir::createCanonicalizerPass());
  return pm.run(module);
}

llvm::Expected<mlir::attn::KernelOp> attnc::pipeline::getSingleKernel(mlir::ModuleOp module) {
  mlir::attn::KernelOp kernel;
  unsigned count = 0;
  module.walk([&](mlir::attn::KernelOp op) {
    kernel = op;
    ++count;
  });
  if (count != 1)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "expected exactly one kernel in the module, found " +
                                       llvm::Twine(count));
  return kernel;
}
