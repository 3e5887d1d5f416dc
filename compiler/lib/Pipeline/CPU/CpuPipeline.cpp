//===- CpuPipeline.cpp - attn -> LLVM for the host CPU ---------------------===//

#include "attnc/Pipeline/CpuPipeline.h"

#include "attnc/Conversion/AttnToCPU.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

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
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
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
#include "llvm/TargetParser/Host.h"

#include <cstring>

using namespace mlir;

void attnc::pipeline::registerCpuDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, func::FuncDialect, math::MathDialect,
                  memref::MemRefDialect, scf::SCFDialect, vector::VectorDialect,
                  x86vector::X86VectorDialect, LLVM::LLVMDialect>();
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
  o.kvCache = options.kvCache;
  o.bf16Dot = options.bf16Dot;
  pm.addPass(attn::createAttnToCPU(o));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  return pm.run(module);
}

bool attnc::pipeline::hostHasAvx512Bf16() {
  llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
  auto it = features.find("avx512bf16");
  return it != features.end() && it->second;
}

LogicalResult attnc::pipeline::lowerToLLVM(ModuleOp module, const CpuOptions &options) {
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
  // The predicate sees full op names ("math.exp").
  populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
    name.consume_front("math.");
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
  vo.x86Vector = options.bf16Dot; // x86vector.avx512.dot -> llvm.x86.avx512bf16.dpbf16ps
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

std::vector<attnc::pipeline::CpuParam> attnc::pipeline::getCpuParams(attn::KernelOp kernel) {
  std::vector<CpuParam> params;
  for (unsigned i = 0, e = kernel.getNumArguments(); i < e; ++i)
    params.push_back({kernel.getParamName(i).str(), kernel.getArgumentTypes()[i],
                      kernel.getArgAttr(i, "attn.default")});
  return params;
}

namespace {
/// A memref descriptor as the C interface takes it: base, aligned, offset,
/// sizes[rank], strides[rank] (row-major).
struct Descriptor {
  std::vector<int64_t> words;
  Descriptor(const void *data, llvm::ArrayRef<int64_t> dims) {
    int64_t p = int64_t(reinterpret_cast<intptr_t>(data));
    words = {p, p, 0};
    words.insert(words.end(), dims.begin(), dims.end());
    std::vector<int64_t> strides(dims.size(), 1);
    for (int i = int(dims.size()) - 2; i >= 0; --i)
      strides[i] = strides[i + 1] * dims[i + 1];
    words.insert(words.end(), strides.begin(), strides.end());
  }
};

/// Storage of one argument: typed tensor bytes + descriptor, or scalar bits.
struct ArgStorage {
  std::vector<char> bytes;
  std::unique_ptr<Descriptor> desc;
  void *descPtr = nullptr; // the C interface takes a pointer to the descriptor
  int64_t scalar = 0;
};

bool storeElement(char *p, Type elem, double v) {
  if (elem.isF32()) {
    float f = float(v);
    std::memcpy(p, &f, 4);
  } else if (elem.isInteger(64)) {
    int64_t x = int64_t(v);
    std::memcpy(p, &x, 8);
  } else if (elem.isInteger(32)) {
    int32_t x = int32_t(int64_t(v));
    std::memcpy(p, &x, 4);
  } else if (elem.isInteger(1) || elem.isInteger(8)) {
    *p = v != 0;
  } else {
    return false;
  }
  return true;
}
} // namespace

llvm::Error attnc::pipeline::invokeCpuKernel(ExecutionEngine &engine, llvm::StringRef kernelName,
                                             const std::vector<CpuParam> &params,
                                             const CpuCall &call) {
  std::vector<ArgStorage> storage(params.size());
  for (auto [p, s] : llvm::zip(params, storage)) {
    if (auto tt = dyn_cast<RankedTensorType>(p.type)) {
      auto it = call.tensors.find(p.name);
      if (it == call.tensors.end())
        return makeError("tensor parameter '" + p.name + "' is not bound");
      Type elem = tt.getElementType();
      size_t width = elem.isInteger(1) ? 1 : (elem.getIntOrFloatBitWidth() + 7) / 8;
      const auto &values = it->second.second;
      s.bytes.assign(std::max<size_t>(1, values.size()) * width, 0);
      for (size_t i = 0; i < values.size(); ++i)
        if (!storeElement(s.bytes.data() + i * width, elem, values[i]))
          return makeError("unsupported element type of tensor parameter '" + p.name + "'");
      s.desc = std::make_unique<Descriptor>(s.bytes.data(), it->second.first);
      s.descPtr = s.desc->words.data();
      continue;
    }
    double v;
    auto it = call.scalars.find(p.name);
    if (it != call.scalars.end())
      v = it->second;
    else if (auto fa = dyn_cast_or_null<FloatAttr>(p.defaultValue))
      v = fa.getValueAsDouble();
    else if (auto ia = dyn_cast_or_null<IntegerAttr>(p.defaultValue))
      v = double(ia.getValue().getSExtValue());
    else
      return makeError("scalar parameter '" + p.name + "' is not bound and has no default");
    if (!storeElement(reinterpret_cast<char *>(&s.scalar), p.type, v))
      return makeError("unsupported type of scalar parameter '" + p.name + "'");
  }
  Descriptor dQ(call.Q, {call.B, call.Hq, call.Nq, call.D});
  Descriptor dK(call.K, {call.B, call.Hkv, call.Nk, call.D});
  Descriptor dV(call.V, {call.B, call.Hkv, call.Nk, call.Dv});
  Descriptor dO(call.O, {call.B, call.Hq, call.Nq, call.Dv});
  Descriptor dL(call.LSE, {call.B, call.Hq, call.Nq});
  void *pQ = dQ.words.data(), *pK = dK.words.data(), *pV = dV.words.data(),
       *pO = dO.words.data(), *pL = dL.words.data();
  int32_t qOffset = call.qOffset;
  llvm::SmallVector<void *> args = {&pQ, &pK, &pV, &pO, &pL, &qOffset};
  for (ArgStorage &s : storage)
    args.push_back(s.descPtr ? static_cast<void *>(&s.descPtr) : static_cast<void *>(&s.scalar));
  return engine.invokePacked("_mlir_ciface_" + attn::cpuEntryName(kernelName), args);
}
