//===- CpuPipeline.cpp - attn -> LLVM for the host CPU ---------------------===//

#include "attnc/Pipeline/CpuPipeline.h"

#include "attnc/Conversion/AttnToCPU.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"

using namespace mlir;

void attnc::pipeline::registerCpuDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, func::FuncDialect, math::MathDialect,
                  memref::MemRefDialect, scf::SCFDialect, vector::VectorDialect,
                  LLVM::LLVMDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
}

LogicalResult attnc::pipeline::lowerToTiled(ModuleOp module, const CpuOptions &options) {
  PassManager pm(module->getContext());
  attn::AttnToCPUOptions o;
  o.headDim = options.headDim;
  o.headDimV = options.headDimV;
  o.dtype = options.dtype;
  o.tileQ = options.tileQ;
  o.tileK = options.tileK;
  pm.addPass(attn::createAttnToCPU(o));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  return pm.run(module);
}

LogicalResult attnc::pipeline::lowerToLLVM(ModuleOp module, const CpuOptions &options) {
  (void)options;
  for (Operation &op : llvm::make_early_inc_range(module.getBody()->getOperations()))
    if (isa<attn::AttnDialect>(op.getDialect()))
      op.erase();
  // Argument names document the ABI in the tiled form; LLVM has no use for
  // them (and warns about dialect attributes it does not know).
  module.walk([](func::FuncOp fn) {
    for (unsigned i = 0, e = fn.getNumArguments(); i < e; ++i)
      fn.removeArgAttr(i, "attn.name");
  });

  // exp/log/tanh as vector polynomials (LLVM would otherwise scalarize
  // them into libm calls). Their error is a few ulp, well inside 1e-5.
  RewritePatternSet patterns(module->getContext());
  populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
    return name == "exp" || name == "log" || name == "tanh" || name == "log2" ||
           name == "expm1" || name == "log1p" || name == "erf";
  });
  if (failed(applyPatternsGreedily(module, std::move(patterns))))
    return failure();

  PassManager pm(module->getContext());
  pm.addPass(arith::createArithExpandOpsPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  ConvertVectorToLLVMPassOptions vo;
  vo.reassociateFPReductions = true;
  pm.addPass(createConvertVectorToLLVMPass(vo));
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
  return pm.run(module);
}

static llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>> attnc::pipeline::hostTargetMachine() {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  auto jtmb = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!jtmb)
    return jtmb.takeError();
  jtmb->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return jtmb->createTargetMachine();
}

llvm::Expected<std::unique_ptr<llvm::Module>>
attnc::pipeline::translateToLLVMIR(ModuleOp module, llvm::LLVMContext &llvmCtx,
                                   const CpuOptions &options) {
  auto tm = hostTargetMachine();
  if (!tm)
    return tm.takeError();
  auto llvmModule = translateModuleToLLVMIR(module, llvmCtx);
  if (!llvmModule)
    return makeError("translation to LLVM IR failed");
  llvmModule->setDataLayout((*tm)->createDataLayout());
  llvmModule->setTargetTriple((*tm)->getTargetTriple());
  auto transformer = makeOptimizingTransformer(options.optLevel, 0, tm->get());
  if (auto err = transformer(llvmModule.get()))
    return std::move(err);
  return std::move(llvmModule);
}

llvm::Expected<std::unique_ptr<ExecutionEngine>>
attnc::pipeline::createJIT(ModuleOp module, const CpuOptions &options) {
  auto tm = hostTargetMachine();
  if (!tm)
    return tm.takeError();
  ExecutionEngineOptions eo;
  // Gotcha (mlir-notes 2): without the TM the optimizer has no cost model.
  eo.transformer = makeOptimizingTransformer(options.optLevel, 0, tm->get());
  eo.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  return ExecutionEngine::create(module, eo, std::move(*tm));
}
