//===- CpuTarget.cpp - attnc's CPU target (JIT, --emit stages) ------------===//

#include "CpuTarget.h"
#include "LaunchBindings.h"

#include "attnc/Conversion/AttnToCPU.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/JIT.h"
#include "attnc/Pipeline/CpuArtifact.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Path.h"

#include <chrono>
#include <cstring>

using namespace attnc;
using namespace attnc::driver;

namespace {
// 0: the pipeline's defaults (pipeline::CpuOptions), as for the JIT API.
llvm::cl::opt<int64_t>
    tileQOpt("cpu-tile-q",
             llvm::cl::desc("CPU target: query rows per work item (default: the pipeline's, 32)"),
             llvm::cl::init(0), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<int64_t>
    tileKOpt("cpu-tile-k",
             llvm::cl::desc("CPU target: keys per KV tile (default: the pipeline's, 8)"),
             llvm::cl::init(0), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<unsigned> repeatOpt("cpu-repeat",
                                  llvm::cl::desc("CPU target: run N times, report the best time"),
                                  llvm::cl::init(1), llvm::cl::sub(llvm::cl::SubCommand::getAll()));

llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

const char *const kNegativeTiles = "--cpu-tile-q and --cpu-tile-k must not be negative";

/// --cpu-tile-q/--cpu-tile-k over the pipeline's defaults; false (after an
/// error) when one is negative.
bool applyTileFlags(pipeline::CpuOptions &options) {
  if (tileQOpt < 0 || tileKOpt < 0) {
    llvm::errs() << "attnc: error: " << kNegativeTiles << "\n";
    return false;
  }
  if (tileQOpt)
    options.tileQ = tileQOpt;
  if (tileKOpt)
    options.tileK = tileKOpt;
  return true;
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
                            CpuStage stage, bool kvCache, llvm::raw_ostream &os) {
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
  options.headDim =
      headDimFlag() ? headDimFlag() : (k->headDims.empty() ? 128 : k->headDims.front());
  options.kvCache = kvCache;
  options.bf16Dot = pipeline::hostHasAvx512Bf16(); // code for this host, as the JIT's
  if (!applyTileFlags(options) || mlir::failed(pipeline::lowerToTiled(*module, options)))
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

bool attnc::driver::emitCpuObject(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                  const std::string &kernel, const std::vector<std::string> &params,
                                  const std::string &dtype, bool kvCache,
                                  const std::string &outPath) {
  registerCpu(ctx);
  if (outPath == "-" || outPath.empty()) {
    llvm::errs() << "attnc: error: --emit=obj needs -o FILE.o (the header goes next to it)\n";
    return false;
  }
  std::map<std::string, std::string> consts;
  for (auto &p : params) {
    auto [name, value] = llvm::StringRef(p).split('=');
    consts[name.trim().str()] = value.trim().str();
  }
  std::string name = kernel;
  if (name.empty() && prog.main->kernels.size() == 1)
    name = prog.main->kernels.front()->name;
  const dsl::KernelDecl *k = name.empty() ? nullptr : prog.lookupKernel(name);
  if (!k) {
    llvm::errs() << "attnc: error: --emit=obj needs --kernel=NAME of an existing kernel\n";
    return false;
  }
  auto module = genKernel(ctx, prog, name, consts);
  if (!module)
    return false;
  pipeline::CpuOptions options;
  options.headDim =
      headDimFlag() ? headDimFlag() : (k->headDims.empty() ? 128 : k->headDims.front());
  options.dtype = dtype;
  options.kvCache = kvCache;
  options.bf16Dot = pipeline::hostHasAvx512Bf16(); // code for this host, as the JIT's
  if (!applyTileFlags(options))
    return false;
  auto art = pipeline::compileCpuArtifact(*module, options);
  if (!art) {
    llvm::errs() << "attnc: error: " << llvm::toString(art.takeError()) << "\n";
    return false;
  }
  llvm::SmallString<128> headerPath(outPath);
  llvm::sys::path::replace_extension(headerPath, "h");
  for (auto [path, data] :
       {std::pair<std::string, std::string *>(outPath, &art->object),
        std::pair<std::string, std::string *>(headerPath.str().str(), &art->header)}) {
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    if (ec) {
      llvm::errs() << "attnc: error: cannot write " << path << ": " << ec.message() << "\n";
      return false;
    }
    os << *data;
  }
  return true;
}

llvm::Expected<CpuRunResult>
attnc::driver::runCpu(mlir::MLIRContext &ctx, const dsl::Program &prog, const dsl::KernelDecl &k,
                      const RunOptions &options, const reference::Shape &shape,
                      const std::vector<double> &Q, const std::vector<double> &K,
                      const std::vector<double> &V, const reference::Bindings &bindings) {
  registerCpu(ctx);
  KernelSpec spec;
  spec.consts = constBindings(k, bindings);
  spec.dtype = dsl::toString(options.dtype).str();
  spec.headDim = shape.D;
  spec.headDimV = shape.Dv;
  if (tileQOpt < 0 || tileKOpt < 0)
    return makeError(kNegativeTiles);
  spec.tileQ = tileQOpt; // 0: the pipeline's default
  spec.tileK = tileKOpt;
  // Through the JIT API, so `attnc run` uses (and fills) the kernel cache.
  auto kernel = runCache().get(ctx, prog, k.name, spec);
  if (!kernel)
    return makeError(kernel.message());
  CacheStats stats = runCache().stats();

  // Q, K, V in the kernel's dtype (the values arrive rounded to it, so the
  // conversion is exact); O and LSE f32.
  std::vector<char> q = packInputs(Q, spec.dtype), kk = packInputs(K, spec.dtype),
                    v = packInputs(V, spec.dtype);
  std::vector<float> O(shape.B * shape.Hq * shape.Nq * shape.Dv),
      LSE(shape.B * shape.Hq * shape.Nq);
  std::vector<int64_t> sq = {shape.B, shape.Hq, shape.Nq, shape.D},
                       sk = {shape.B, shape.Hkv, shape.Nk, shape.D},
                       sv = {shape.B, shape.Hkv, shape.Nk, shape.Dv},
                       so = {shape.B, shape.Hq, shape.Nq, shape.Dv},
                       sl = {shape.B, shape.Hq, shape.Nq};
  DLDataType in = dlInputType(spec.dtype), f32{kDLFloat, 32, 1};
  DLTensor tq = dlView(q.data(), in, sq), tk = dlView(kk.data(), in, sk),
           tv = dlView(v.data(), in, sv), to = dlView(O.data(), f32, so),
           tl = dlView(LSE.data(), f32, sl);
  rt::LaunchArgs args;
  args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.lse = &tl;
  args.qOffset = options.qOffset;
  LaunchBindings params;
  if (std::string err = params.bind((*kernel)->info(), bindings, args); !err.empty())
    return makeError(err);

  CpuRunResult result;
  result.bestMs = 1e300;
  result.jitMs = stats.lastMs;
  result.jitSource = stats.lastSource;
  unsigned repeats = std::max(1u, unsigned(repeatOpt));
  for (unsigned r = 0; r < repeats; ++r) {
    // Poison the outputs: every element must be written.
    std::fill(O.begin(), O.end(), std::nanf(""));
    std::fill(LSE.begin(), LSE.end(), std::nanf(""));
    auto start = std::chrono::steady_clock::now();
    if (rt::Status s = (*kernel)->launch(args); !s)
      return makeError(s.message());
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    result.bestMs = std::min(result.bestMs, ms);
  }
  result.repeats = repeats;
  result.O.assign(O.begin(), O.end());
  result.LSE.assign(LSE.begin(), LSE.end());
  return result;
}
