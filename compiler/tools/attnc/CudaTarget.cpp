//===- CudaTarget.cpp - attnc's CUDA target (--emit stages) ---------------===//

#include "CudaTarget.h"

#include "attnc/Pipeline/CudaPipeline.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace attnc;
using namespace attnc::driver;

static bool writeFile(const std::string &path, llvm::StringRef text) {
  std::string err;
  auto out = mlir::openOutputFile(path, &err);
  if (!out) {
    llvm::errs() << "attnc: error: " << err << "\n";
    return false;
  }
  out->os() << text;
  out->keep();
  return true;
}

/// ptxas -arch=<arch> in.ptx -o out.cubin.
static bool runPtxas(const std::string &arch, const std::string &ptx, const std::string &outPath) {
  auto ptxas = llvm::sys::findProgramByName("ptxas");
  if (!ptxas) {
    llvm::errs() << "attnc: error: --emit=cubin needs ptxas on PATH (the CUDA toolkit); "
                    "--emit=ptx writes PTX that the runtime hands to the driver "
                    "instead\n";
    return false;
  }
  llvm::SmallString<128> tmp;
  if (llvm::sys::fs::createTemporaryFile("attnc", "ptx", tmp)) {
    llvm::errs() << "attnc: error: cannot create a temporary file\n";
    return false;
  }
  llvm::FileRemover remover(tmp);
  if (!writeFile(std::string(tmp), ptx))
    return false;
  std::string archFlag = "-arch=" + arch;
  llvm::SmallVector<llvm::StringRef> args = {*ptxas, archFlag, tmp, "-o", outPath};
  std::string err;
  int rc = llvm::sys::ExecuteAndWait(*ptxas, args, std::nullopt, {}, 0, 0, &err);
  if (rc != 0) {
    llvm::errs() << "attnc: error: ptxas failed (" << rc << ")" << (err.empty() ? "" : ": ") << err
                 << "\n";
    return false;
  }
  return true;
}

bool attnc::driver::emitCuda(mlir::MLIRContext &ctx, const dsl::Program &prog,
                             const CudaEmitOptions &options, CudaStage stage) {
  mlir::DialectRegistry registry;
  pipeline::registerCudaDialects(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
  const dsl::KernelDecl *k = nullptr;
  auto module = genInlinedKernel(ctx, prog, options.kernel, options.params, k);
  if (!module)
    return false;
  pipeline::CudaOptions o;
  o.dtype = options.dtype;
  o.arch = options.arch;
  o.headDim = options.headDim ? options.headDim
              : headDimFlag() ? headDimFlag()
                              : (k->headDims.empty() ? 128 : k->headDims.front());
  if (options.blockQ)
    o.blockQ = options.blockQ;
  if (options.blockK)
    o.blockK = options.blockK;
  if (options.warpMTiles)
    o.warpMTiles = options.warpMTiles;
  if (o.dtype != "bf16" && o.dtype != "f16") {
    llvm::errs() << "attnc: error: --target=cuda takes --dtype=bf16 or f16, not " << o.dtype
                 << "\n";
    return false;
  }
  if (stage == CudaStage::Gpu || stage == CudaStage::NVVM) {
    if (mlir::failed(pipeline::lowerToGpu(*module, o)))
      return false;
    if (stage == CudaStage::NVVM && mlir::failed(pipeline::lowerToNVVM(*module, o)))
      return false;
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os);
    return writeFile(options.outPath, text);
  }
  auto art = pipeline::compileCudaArtifact(*module, o);
  if (!art) {
    llvm::errs() << "attnc: error: " << llvm::toString(art.takeError()) << "\n";
    return false;
  }
  bool toStdout = options.outPath == "-";
  if (!toStdout && !writeFile(options.outPath + ".meta", art->metadata))
    return false;
  if (stage == CudaStage::PTX)
    return writeFile(options.outPath, art->ptx);
  if (toStdout) {
    llvm::errs() << "attnc: error: --emit=cubin needs -o FILE\n";
    return false;
  }
  return runPtxas(o.arch, art->ptx, options.outPath);
}
