//===- CpuTarget.cpp - attnc's CPU target (JIT, --emit stages) ------------===//

#include "CpuTarget.h"

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

bool attnc::driver::emitCpuObject(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                  const std::string &kernel,
                                  const std::vector<std::string> &params, const std::string &dtype,
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
  options.headDim = headDimOpt ? headDimOpt : (k->headDims.empty() ? 128 : k->headDims.front());
  options.dtype = dtype;
  options.tileQ = tileQOpt;
  options.tileK = tileKOpt;
  auto art = pipeline::compileCpuArtifact(*module, options);
  if (!art) {
    llvm::errs() << "attnc: error: " << llvm::toString(art.takeError()) << "\n";
    return false;
  }
  llvm::SmallString<128> headerPath(outPath);
  llvm::sys::path::replace_extension(headerPath, "h");
  for (auto [path, data] : {std::pair<std::string, std::string *>(outPath, &art->object),
                            std::pair<std::string, std::string *>(headerPath.str().str(),
                                                                  &art->header)}) {
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

/// Converts row-major double values to a buffer of the parameter's type.
static bool toTyped(const std::string &type, const std::vector<double> &values,
                    std::vector<char> &out, DLDataType &dt) {
  size_t width = type == "f64" || type == "i64" ? 8 : type == "i1" || type == "i8" ? 1 : 4;
  out.assign(std::max<size_t>(1, values.size()) * width, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    char *p = out.data() + i * width;
    double v = values[i];
    if (type == "f32") {
      float f = float(v);
      std::memcpy(p, &f, 4);
    } else if (type == "f64") {
      std::memcpy(p, &v, 8);
    } else if (type == "i32") {
      int32_t x = int32_t(int64_t(v));
      std::memcpy(p, &x, 4);
    } else if (type == "i64") {
      int64_t x = int64_t(v);
      std::memcpy(p, &x, 8);
    } else if (type == "i1" || type == "i8") {
      *p = type == "i1" ? v != 0 : int8_t(v);
    } else {
      return false;
    }
  }
  dt.code = type[0] == 'f' ? kDLFloat : kDLInt;
  dt.bits = uint8_t(width * 8);
  dt.lanes = 1;
  return true;
}

static DLTensor viewOf(void *data, DLDataType dt, std::vector<int64_t> &shape) {
  DLTensor t{};
  t.data = data;
  t.device = {kDLCPU, 0};
  t.ndim = int(shape.size());
  t.dtype = dt;
  t.shape = shape.data();
  return t;
}

llvm::Expected<CpuRunResult>
attnc::driver::runCpu(mlir::MLIRContext &ctx, const dsl::Program &prog, const dsl::KernelDecl &k,
                      const RunOptions &options, const reference::Shape &shape,
                      const std::vector<double> &Q, const std::vector<double> &K,
                      const std::vector<double> &V, const reference::Bindings &bindings) {
  registerCpu(ctx);
  KernelSpec spec;
  for (auto &p : k.constParams) {
    auto it = bindings.scalars.find(p.name);
    if (it != bindings.scalars.end())
      spec.consts[p.name] = p.decl->elemType == dsl::ScalarType::F32
                                ? std::to_string(it->second)
                                : std::to_string(int64_t(it->second));
  }
  spec.headDim = shape.D;
  spec.headDimV = shape.Dv;
  spec.tileQ = tileQOpt;
  spec.tileK = tileKOpt;
  // Through the JIT API, so `attnc run` uses (and fills) the kernel cache.
  static KernelCache cache;
  auto kernel = cache.get(ctx, prog, k.name, spec);
  if (!kernel)
    return makeError(kernel.message());
  CacheStats stats = cache.stats();

  // Inputs are f32 (bf16/f16 inputs arrive already rounded, so f32 holds
  // them exactly).
  std::vector<float> q(Q.begin(), Q.end()), kk(K.begin(), K.end()), v(V.begin(), V.end());
  std::vector<float> O(shape.B * shape.Hq * shape.Nq * shape.Dv), LSE(shape.B * shape.Hq * shape.Nq);
  std::vector<int64_t> sq = {shape.B, shape.Hq, shape.Nq, shape.D},
                       sk = {shape.B, shape.Hkv, shape.Nk, shape.D},
                       sv = {shape.B, shape.Hkv, shape.Nk, shape.Dv},
                       so = {shape.B, shape.Hq, shape.Nq, shape.Dv},
                       sl = {shape.B, shape.Hq, shape.Nq};
  DLDataType f32{kDLFloat, 32, 1};
  DLTensor tq = viewOf(q.data(), f32, sq), tk = viewOf(kk.data(), f32, sk),
           tv = viewOf(v.data(), f32, sv), to = viewOf(O.data(), f32, so),
           tl = viewOf(LSE.data(), f32, sl);
  rt::LaunchArgs args;
  args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.lse = &tl;
  args.qOffset = options.qOffset;
  std::map<std::string, std::vector<char>> buffers;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, DLTensor> tensors;
  for (auto &p : (*kernel)->info().params) {
    if (p.isTensor) {
      auto it = bindings.tensors.find(p.name);
      if (it == bindings.tensors.end())
        continue; // launch reports it
      DLDataType dt;
      if (!toTyped(p.type, it->second.data, buffers[p.name], dt))
        return makeError("unsupported element type of tensor parameter '" + p.name + "'");
      shapes[p.name] = it->second.dims;
      tensors[p.name] = viewOf(buffers[p.name].data(), dt, shapes[p.name]);
      args.params[p.name] = rt::Arg::ofTensor(&tensors[p.name]);
    } else if (auto it = bindings.scalars.find(p.name); it != bindings.scalars.end()) {
      args.params[p.name] = rt::Arg::ofScalar(it->second);
    }
  }

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
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
    result.bestMs = std::min(result.bestMs, ms);
  }
  result.repeats = repeats;
  result.O.assign(O.begin(), O.end());
  result.LSE.assign(LSE.begin(), LSE.end());
  return result;
}
