//===- CudaPipeline.cpp - attn -> PTX for NVIDIA GPUs
//----------------------===//

#include "attnc/Pipeline/CudaPipeline.h"

#include "attnc/Conversion/AttnToNVVM.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Pipeline/Metadata.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/LLVMIR/Transforms/Passes.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace attnc::pipeline;

static llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

void attnc::pipeline::registerCudaDialects(DialectRegistry &registry) {
  registry.insert<arith::ArithDialect, gpu::GPUDialect, LLVM::LLVMDialect, NVVM::NVVMDialect,
                  math::MathDialect, scf::SCFDialect, cf::ControlFlowDialect, ub::UBDialect>();
  // convert-gpu-to-nvvm converts every dialect through these interfaces.
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  NVVM::registerConvertGpuToNVVMInterface(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
}

/// wgmma exists only on sm_90a (the arch-specific Hopper target).
static bool hasWgmma(llvm::StringRef arch) { return arch == "sm_90a"; }

/// griddepcontrol (programmatic dependent launch) and the bulk tensor copy
/// engine (cp.async.bulk.tensor) exist from sm_90 on.
static bool isSm90OrLater(llvm::StringRef arch) {
  unsigned version = 0;
  return arch.consume_front("sm_") && !arch.consumeInteger(10, version) && version >= 90;
}

CudaOptions attnc::pipeline::tileDefaults(CudaOptions o) {
  int64_t dv = o.headDimV > 0 ? o.headDimV : o.headDim;
  if (o.kvCache) {
    // Decode: 8 packed query rows per CTA (the G query heads of a KV head
    // times Nq) on the transposed step, else 16, 4 warps of 16 keys on a
    // 64-slot tile, 3 tiles in flight (bench/NOTES.md). An explicit tile
    // of other than 8 rows is the 16- or 32-row step.
    if (o.mma.empty())
      o.mma = "sync";
    if (!o.warpMTiles)
      o.warpMTiles = 1;
    if (!o.blockQ)
      o.blockQ = o.decodeTransposed ? 8 : 16;
    else if (o.blockQ != 8)
      o.decodeTransposed = false;
    if (!o.blockK)
      o.blockK = 64;
    if (!o.stages)
      o.stages = 3;
    return o;
  }
  if (o.mma.empty()) {
    // Explicit tiles only wgmma cannot run keep the mma.sync kernel.
    bool fits = (o.headDim == 64 || o.headDim == 128) && (dv == 64 || dv == 128);
    bool tilesFit = o.blockQ % 64 == 0 && o.warpMTiles <= 1 && o.blockK <= 256;
    o.mma = hasWgmma(o.arch) && fits && tilesFit ? "wgmma" : "sync";
  }
  if (o.mma == "wgmma") {
    // Two warpgroups of 64 rows share 128-key tiles: S and O are 64 + 64
    // f32 registers per thread at D = 128 (bench/NOTES.md).
    if (!o.warpMTiles)
      o.warpMTiles = 1;
    if (!o.blockQ)
      o.blockQ = 128;
    if (!o.blockK)
      o.blockK = 128;
    if (!o.stages)
      o.stages = 2;
    return o;
  }
  bool wide = std::max(o.headDim, dv) > 128;
  if (!o.warpMTiles)
    o.warpMTiles = wide ? 1 : 2;
  if (!o.blockQ)
    o.blockQ = 64 * o.warpMTiles;
  if (!o.blockK)
    o.blockK = 32;
  if (!o.stages)
    o.stages = 2;
  return o;
}

LogicalResult attnc::pipeline::lowerToGpu(ModuleOp module, const CudaOptions &given) {
  CudaOptions options = tileDefaults(given);
  if (options.mma == "wgmma" && !hasWgmma(options.arch))
    return module.emitError("wgmma needs --arch=sm_90a, not ") << options.arch;
  PassManager pm(module->getContext());
  attn::AttnToNVVMOptions o;
  o.headDim = options.headDim;
  o.headDimV = options.headDimV;
  o.dtype = options.dtype;
  o.blockQ = options.blockQ;
  o.blockK = options.blockK;
  o.warpMTiles = options.warpMTiles;
  o.stages = options.stages;
  o.mma = options.mma;
  o.wgmmaQInRegs = options.wgmmaQInRegs;
  if (options.classChunk)
    o.classChunk = options.classChunk;
  o.partialVote = options.partialVote;
  o.kvCache = options.kvCache;
  o.quantDirectV = options.quantDirectV;
  o.quantBiasK = options.quantBiasK;
  o.decodeLazyRescale = options.decodeLazyRescale;
  o.decodeTransposed = options.decodeTransposed;
  o.decodeMinCtas = options.decodeMinCtas;
  o.decodePdl = options.decodePdl && isSm90OrLater(options.arch);
  o.decodeL2Prefetch = options.decodeL2Prefetch;
  o.decodeTma = options.decodeTma && isSm90OrLater(options.arch);
  if (options.kvCache && options.cachePrefill) {
    // The prefill kernel's measured tiles for these head dims and arch.
    CudaOptions prefill;
    prefill.headDim = options.headDim;
    prefill.headDimV = options.headDimV;
    prefill.arch = options.arch;
    prefill = tileDefaults(prefill);
    o.cachePrefillBlockQ = prefill.blockQ;
    o.cachePrefillBlockK = prefill.blockK;
    o.cachePrefillWarpMTiles = prefill.warpMTiles;
    o.cachePrefillStages = prefill.stages;
    o.cachePrefillMma = prefill.mma;
  }
  pm.addPass(attn::createAttnToNVVM(o));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  return pm.run(module);
}

/// PTX ISA version for an arch: sm_90a needs PTX 8.0 (wgmma later); the
/// instructions used today (mma.sync, ldmatrix, cp.async) need 7.0.
static std::string ptxFeatures(llvm::StringRef arch) {
  return arch.starts_with("sm_9") || arch.starts_with("sm_10") || arch.starts_with("sm_12")
             ? "+ptx80"
             : "+ptx70";
}

LogicalResult attnc::pipeline::lowerToNVVM(ModuleOp module, const CudaOptions &options) {
  // Nothing on the device path reads what is left of the attn dialect
  // (cache policies).
  for (Operation &op : llvm::make_early_inc_range(module.getBody()->getOperations()))
    if (isa<attn::AttnDialect>(op.getDialect()))
      op.erase();
  PassManager pm(module->getContext());
  OpPassManager &gm = pm.nest<gpu::GPUModuleOp>();
  gm.addPass(createSCFToControlFlowPass());
  gm.addPass(createConvertGpuOpsToNVVMOps());
  gm.addPass(createConvertNVVMToLLVMPass());
  gm.addPass(createCanonicalizerPass());
  gm.addPass(createCSEPass());
  GpuNVVMAttachTargetOptions t;
  t.chip = options.arch;
  t.features = ptxFeatures(options.arch);
  t.optLevel = options.optLevel;
  pm.addPass(createGpuNVVMAttachTarget(t));
  pm.addPass(createReconcileUnrealizedCastsPass());
  if (failed(pm.run(module)))
    return failure();
  // Tensor maps passed by value (attn::kTensorMapArgsAttr): gpu.func's
  // lowering drops byval, so the kernel's arguments get it here, as
  // 128-byte, 64-byte aligned grid constants (.param .align 64 .b8 [128],
  // whose generic address cvta.param gives the bulk tensor copies).
  Builder b(module->getContext());
  module.walk([&](LLVM::LLVMFuncOp fn) {
    auto args = fn->getAttrOfType<DenseI32ArrayAttr>(attn::kTensorMapArgsAttr);
    if (!args)
      return;
    for (int32_t i : args.asArrayRef()) {
      fn.setArgAttr(i, LLVM::LLVMDialect::getByValAttrName(),
                    TypeAttr::get(LLVM::LLVMArrayType::get(b.getI8Type(), 128)));
      fn.setArgAttr(i, LLVM::LLVMDialect::getAlignAttrName(), b.getI64IntegerAttr(64));
      fn.setArgAttr(i, NVVM::NVVMDialect::getGridConstantAttrName(), b.getUnitAttr());
    }
    fn->removeAttr(attn::kTensorMapArgsAttr);
  });
  return success();
}

llvm::Expected<CudaArtifact> attnc::pipeline::compileCudaArtifact(ModuleOp module,
                                                                  const CudaOptions &options) {
  auto single = getSingleKernel(module);
  if (!single)
    return single.takeError();
  attn::KernelOp kernel = *single;
  CudaArtifact art;
  art.kernel = kernel.getSymName().str();
  art.entry = attn::cudaEntryName(art.kernel);
  std::string params;
  {
    llvm::raw_string_ostream os(params);
    writeParamMetadata(kernel, os);
    if (options.kvCache)
      writeCacheMetadata(kernel, os);
  }

  if (failed(lowerToGpu(module, options)))
    return makeError("attn-to-nvvm failed");
  auto gm = module.lookupSymbol<gpu::GPUModuleOp>(art.entry);
  if (!gm)
    return makeError("attn-to-nvvm produced no gpu.module @" + art.entry);
  auto attrInt = [&](StringRef name) {
    auto a = gm->getAttrOfType<IntegerAttr>(name);
    return a ? a.getInt() : int64_t(0);
  };
  int64_t threads = attrInt("attn.threads"), shared = attrInt("attn.shared_bytes"),
          blockQ = attrInt("attn.block_q"), blockK = attrInt("attn.block_k");
  // Decode twins for more packed rows: (rows, threads, shared bytes).
  SmallVector<SmallVector<int64_t, 3>> twins;
  if (auto list = gm->getAttrOfType<ArrayAttr>(attn::kDecodeTwinsAttr))
    for (Attribute twin : list)
      twins.emplace_back(cast<DenseI64ArrayAttr>(twin).asArrayRef());
  const bool mergeWaits = gm->hasAttr(attn::kMergeWaitsAttr);
  const int64_t tmaBoxRows = attrInt(attn::kDecodeTmaAttr);
  auto cachePrefill = gm->getAttrOfType<DenseI64ArrayAttr>(attn::kCachePrefillAttr);
  if (failed(lowerToNVVM(module, options)))
    return makeError("lowering to NVVM failed");

  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
  PassManager pm(module->getContext());
  GpuModuleToBinaryPassOptions b;
  b.compilationTarget = "isa"; // PTX text; ptxas or the driver makes SASS
  pm.addPass(createGpuModuleToBinaryPass(b));
  if (failed(pm.run(module)))
    return makeError("PTX generation failed");
  auto bin = module.lookupSymbol<gpu::BinaryOp>(art.entry);
  if (!bin || bin.getObjects().empty())
    return makeError("gpu-module-to-binary produced no object");
  auto obj = cast<gpu::ObjectAttr>(bin.getObjects()[0]);
  art.ptx = obj.getObject().getValue().str();
  // The object string is NUL-terminated for the driver.
  while (!art.ptx.empty() && art.ptx.back() == '\0')
    art.ptx.pop_back();

  llvm::raw_string_ostream os(art.metadata);
  os << "attnc-cuda-kernel 1\n";
  os << "kernel " << art.kernel << "\n";
  os << "entry " << art.entry << "\n";
  os << "arch " << options.arch << "\n";
  os << "dtype " << options.dtype << "\n";
  os << "head_dim " << options.headDim << "\n";
  os << "head_dim_v " << (options.headDimV > 0 ? options.headDimV : options.headDim) << "\n";
  os << "block_q " << blockQ << "\n";
  if (options.kvCache) // decode: slots per KV tile (splits are multiples of it)
    os << "tile_k " << blockK << "\n";
  os << "threads " << threads << "\n";
  os << "shared_bytes " << shared << "\n";
  for (ArrayRef<int64_t> twin : twins) // decode: entry _q<N> (BLOCK_Q THREADS SHARED_BYTES)
    os << "decode_wide " << twin[0] << " " << twin[1] << " " << twin[2] << "\n";
  if (mergeWaits) // decode: the merge may launch before the decode grid ends
    os << "merge_pdl 1\n";
  if (tmaBoxRows) // decode: tensor maps over the pools (boxes of ROWS x a line)
    os << "decode_tma " << tmaBoxRows << "\n";
  if (cachePrefill) // entry _prefill: prompt chunks (BLOCK_Q THREADS SHARED_BYTES)
    os << "cache_prefill " << cachePrefill[0] << " " << cachePrefill[1] << " " << cachePrefill[2]
       << "\n";
  os << params;
  return art;
}
