//===- CpuTarget.cpp - attnc's CPU target (JIT, --emit stages) ------------===//

#include "CpuTarget.h"

#include "attnc/Conversion/AttnToCPU.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"

#include <chrono>
#include <cstring>

using namespace attnc;
using namespace attnc::driver;

namespace {
llvm::cl::opt<int64_t> headDimOpt("head-dim",
                                  llvm::cl::desc("Head dimension for --emit=tiled|llvm "
                                                 "(default: the kernel's first head_dim, or 128)"),
                                  llvm::cl::init(0), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<int64_t> tileQOpt("cpu-tile-q", llvm::cl::desc("CPU target: query rows per work item"),
                                llvm::cl::init(16), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<int64_t> tileKOpt("cpu-tile-k", llvm::cl::desc("CPU target: keys per KV tile"),
                                llvm::cl::init(16), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<unsigned> repeatOpt("cpu-repeat",
                                  llvm::cl::desc("CPU target: run N times, report the best time"),
                                  llvm::cl::init(1), llvm::cl::sub(llvm::cl::SubCommand::getAll()));

llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

void registerCpu(mlir::MLIRContext &ctx) {
  mlir::DialectRegistry registry;
  pipeline::registerCpuDialects(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
}

/// MLIRGen of one kernel, inlined and simplified.
mlir::OwningOpRef<mlir::ModuleOp> genKernel(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                            const std::string &kernel,
                                            const std::map<std::string, std::string> &consts) {
  dsl::MLIRGenOptions genOptions;
  genOptions.kernel = kernel;
  genOptions.constValues = consts;
  auto module = dsl::mlirGen(ctx, prog, genOptions);
  if (!module || mlir::failed(pipeline::runInlineAndSimplify(*module)))
    return nullptr;
  return module;
}

} // namespace

bool attnc::driver::emitCpu(mlir::MLIRContext &ctx, const dsl::Program &prog,
                            const std::string &kernel, const std::vector<std::string> &params,
                            CpuStage stage, llvm::raw_ostream &os) {
  registerCpu(ctx);
  std::map<std::string, std::string> consts;
  for (auto &p : params) {
    auto [name, value] = llvm::StringRef(p).split('=');
    consts[name.trim().str()] = value.trim().str();
  }
  std::string name = kernel;
  if (name.empty()) {
    if (prog.main->kernels.size() != 1) {
      llvm::errs() << "attnc: error: --emit=tiled|llvm needs --kernel when the file has "
                   << prog.main->kernels.size() << " kernels\n";
      return false;
    }
    name = prog.main->kernels.front()->name;
  }
  const dsl::KernelDecl *k = prog.lookupKernel(name);
  if (!k) {
    llvm::errs() << "attnc: error: no kernel named '" << name << "'\n";
    return false;
  }
  auto module = genKernel(ctx, prog, name, consts);
  if (!module)
    return false;
  pipeline::CpuOptions options;
  options.headDim = headDimOpt ? headDimOpt : (k->headDims.empty() ? 128 : k->headDims.front());
  options.tileQ = tileQOpt;
  options.tileK = tileKOpt;
  if (mlir::failed(pipeline::lowerToTiled(*module, options)))
    return false;
  if (stage == CpuStage::Tiled) {
    module->print(os);
    return true;
  }
  if (mlir::failed(pipeline::lowerToLLVM(*module, options)))
    return false;
  if (stage == CpuStage::LLVMDialect) {
    module->print(os);
    return true;
  }
  llvm::LLVMContext llvmCtx;
  auto llvmModule = pipeline::translateToLLVMIR(*module, llvmCtx, options);
  if (!llvmModule) {
    llvm::errs() << "attnc: error: " << llvm::toString(llvmModule.takeError()) << "\n";
    return false;
  }
  (*llvmModule)->print(os, nullptr);
  return true;
}

llvm::Expected<CpuRunResult>
attnc::driver::runCpu(mlir::MLIRContext &ctx, const dsl::Program &prog, const dsl::KernelDecl &k,
                      const RunOptions &options, const reference::Shape &shape,
                      const std::vector<double> &Q, const std::vector<double> &K,
                      const std::vector<double> &V, const reference::Bindings &bindings) {
  registerCpu(ctx);
  std::map<std::string, std::string> consts;
  for (auto &p : k.constParams) {
    auto it = bindings.scalars.find(p.name);
    if (it != bindings.scalars.end())
      consts[p.name] = p.decl->elemType == dsl::ScalarType::F32
                           ? std::to_string(it->second)
                           : std::to_string(int64_t(it->second));
  }
  auto module = genKernel(ctx, prog, k.name, consts);
  if (!module)
    return makeError("MLIRGen or the attn passes failed");
  mlir::attn::KernelOp kernel;
  module->walk([&](mlir::attn::KernelOp op) { kernel = op; });
  if (!kernel)
    return makeError("no kernel after MLIRGen");

  std::vector<pipeline::CpuParam> params = pipeline::getCpuParams(kernel);

  pipeline::CpuOptions cpu;
  cpu.headDim = shape.D;
  cpu.headDimV = shape.Dv;
  cpu.tileQ = tileQOpt;
  cpu.tileK = tileKOpt;
  if (mlir::failed(pipeline::lowerToTiled(*module, cpu)))
    return makeError("attn-to-cpu failed");
  if (mlir::failed(pipeline::lowerToLLVM(*module, cpu)))
    return makeError("lowering to the LLVM dialect failed");
  auto engine = pipeline::createJIT(*module, cpu);
  if (!engine)
    return engine.takeError();

  // Inputs are f32 (bf16/f16 inputs arrive already rounded, so f32 holds
  // them exactly).
  std::vector<float> q(Q.begin(), Q.end()), kk(K.begin(), K.end()), v(V.begin(), V.end());
  std::vector<float> O(shape.B * shape.Hq * shape.Nq * shape.Dv), LSE(shape.B * shape.Hq * shape.Nq);
  pipeline::CpuCall call;
  call.B = shape.B, call.Hq = shape.Hq, call.Hkv = shape.Hkv, call.Nq = shape.Nq;
  call.Nk = shape.Nk, call.D = shape.D, call.Dv = shape.Dv;
  call.Q = q.data(), call.K = kk.data(), call.V = v.data(), call.O = O.data();
  call.LSE = LSE.data();
  call.qOffset = int32_t(options.qOffset);
  for (auto &[name, t] : bindings.tensors)
    call.tensors[name] = {t.dims, t.data};
  call.scalars = bindings.scalars;

  CpuRunResult result;
  result.bestMs = 1e300;
  unsigned repeats = std::max(1u, unsigned(repeatOpt));
  for (unsigned r = 0; r < repeats; ++r) {
    // Poison the outputs: every element must be written.
    std::fill(O.begin(), O.end(), std::nanf(""));
    std::fill(LSE.begin(), LSE.end(), std::nanf(""));
    auto start = std::chrono::steady_clock::now();
    if (llvm::Error err = pipeline::invokeCpuKernel(**engine, k.name, params, call))
      return std::move(err);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
    result.bestMs = std::min(result.bestMs, ms);
  }
  result.repeats = repeats;
  result.O.assign(O.begin(), O.end());
  result.LSE.assign(LSE.begin(), LSE.end());
  return result;
}
