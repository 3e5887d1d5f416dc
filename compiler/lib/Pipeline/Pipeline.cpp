//===- Pipeline.cpp - Pass pipelines of the compiler ----------------------===//

#include "attnc/Pipeline/Pipeline.h"

#include "attnc/Dialect/Attn/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

mlir::LogicalResult attnc::pipeline::runInlineAndSimplify(mlir::ModuleOp module) {
  mlir::PassManager pm(module->getContext());
  pm.addPass(mlir::attn::createAttnInlineDefinitions());
  pm.addPass(mlir::createCanonicalizerPass());
  return pm.run(module);
}
