//===- CudaTarget.cpp - attnc's CUDA target (--emit, run) -----------------===//

#include "CudaTarget.h"
#include "LaunchBindings.h"

#include "attnc/JIT.h"
#include "attnc/Pipeline/CudaPipeline.h"
#include "attnc/Runtime/Cuda.h"
#include "attnc/Runtime/Half.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/ToolOutputFile.h"

#include <deque>

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
  if (options.stages)
    o.stages = options.stages;
  o.mma = options.mma;
  o.wgmmaQInRegs = options.wgmmaQInRegs;
  o.classChunk = options.classChunk;
  o.partialVote = options.partialVote;
  o.kvCache = options.kvCache;
  o.quantDirectV = options.quantDirectV;
  o.quantBiasK = options.quantBiasK;
  o.decodeLazyRescale = options.decodeLazyRescale;
  o.decodeTransposed = options.decodeTransposed;
  o.decodeMinCtas = options.decodeMinCtas;
  o.decodePdl = options.decodePdl;
  o.decodeL2Prefetch = options.decodeL2Prefetch;
  o.decodeTma = options.decodeTma;
  o.cachePrefill = options.cachePrefill;
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

namespace {

llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// Dense tensors in GPU 0's memory, each with its DLPack view.
class DeviceTensors {
public:
  struct Tensor {
    attnc::rt::CudaBuffer buffer;
    std::vector<int64_t> shape;
    DLTensor view{};
    size_t bytes = 0;
  };

  /// A `shape` tensor of `dt`, holding `data` if given.
  llvm::Expected<Tensor *> add(std::vector<int64_t> shape, DLDataType dt,
                               const void *data = nullptr) {
    size_t n = 1;
    for (int64_t d : shape)
      n *= size_t(d);
    size_t bytes = n * dt.bits / 8;
    // Whole 32-bit words (fill32), never empty (a null data pointer).
    auto buffer = attnc::rt::CudaBuffer::allocate(0, std::max<size_t>(4, (bytes + 3) / 4 * 4));
    if (!buffer)
      return makeError(buffer.message());
    if (data && bytes)
      if (attnc::rt::Status s = buffer->upload(data, bytes); !s)
        return makeError(s.message());
    Tensor &t = tensors.emplace_back();
    t.buffer = std::move(*buffer);
    t.shape = std::move(shape);
    t.bytes = bytes;
    t.view = dlView(t.buffer.data(), dt, t.shape);
    t.view.device = {kDLCUDA, 0};
    return &t;
  }

private:
  std::deque<Tensor> tensors; // stable addresses for the views
};

} // namespace

llvm::Expected<CudaRunResult>
attnc::driver::runCuda(mlir::MLIRContext &ctx, const dsl::Program &prog, const dsl::KernelDecl &k,
                       const RunOptions &options, const reference::Shape &shape,
                       const std::vector<double> &Q, const std::vector<double> &K,
                       const std::vector<double> &V, const reference::Bindings &bindings) {
  std::string why;
  if (!rt::cudaAvailable(&why))
    return makeError("--target=cuda needs a CUDA GPU: " + why +
                     " (attnc FILE --target=cuda --emit=ptx compiles without one)");
  KernelSpec spec;
  spec.consts = constBindings(k, bindings);
  spec.dtype = dsl::toString(options.dtype).str();
  if (spec.dtype != "bf16" && spec.dtype != "f16")
    return makeError("--target=cuda takes --dtype=bf16 or f16");
  spec.headDim = shape.D;
  spec.headDimV = shape.Dv;
  spec.arch = options.arch; // empty: the GPU's
  spec.tileQ = options.blockQ;
  spec.tileK = options.blockK;
  // Through the JIT API, so `attnc run` uses (and fills) the kernel cache.
  auto kernel = runCache().getCuda(ctx, prog, k.name, spec);
  if (!kernel)
    return makeError(kernel.message());
  CacheStats stats = runCache().stats();
  CudaRunResult result;
  result.jitMs = stats.lastMs;
  result.jitSource = stats.lastSource;
  result.arch = (*kernel)->info().arch;
  auto device = rt::deviceName(0);
  result.device = device ? *device : "GPU 0";

  // Q, K, V in the kernel's dtype (the values arrive rounded to it, so the
  // conversion is exact), O too; LSE f32.
  DLDataType in = dlInputType(spec.dtype), f32{kDLFloat, 32, 1};
  DeviceTensors gpu;
  std::vector<char> q = packInputs(Q, spec.dtype), kk = packInputs(K, spec.dtype),
                    v = packInputs(V, spec.dtype);
  auto tq = gpu.add({shape.B, shape.Hq, shape.Nq, shape.D}, in, q.data());
  auto tk = gpu.add({shape.B, shape.Hkv, shape.Nk, shape.D}, in, kk.data());
  auto tv = gpu.add({shape.B, shape.Hkv, shape.Nk, shape.Dv}, in, v.data());
  auto to = gpu.add({shape.B, shape.Hq, shape.Nq, shape.Dv}, in);
  auto tl = gpu.add({shape.B, shape.Hq, shape.Nq}, f32);
  for (auto *t : {&tq, &tk, &tv, &to, &tl})
    if (!*t)
      return t->takeError();
  rt::LaunchArgs args;
  args.q = &(*tq)->view, args.k = &(*tk)->view, args.v = &(*tv)->view, args.o = &(*to)->view;
  args.lse = &(*tl)->view;
  args.qOffset = options.qOffset;
  // Tensor parameters: bound on the host, then copied to the GPU.
  LaunchBindings params;
  if (std::string err = params.bind((*kernel)->info(), bindings, args); !err.empty())
    return makeError(err);
  for (auto &[name, arg] : args.params) {
    if (!arg.isTensor)
      continue;
    const DLTensor *host = arg.tensor;
    auto t = gpu.add(std::vector<int64_t>(host->shape, host->shape + host->ndim), host->dtype,
                     host->data);
    if (!t)
      return t.takeError();
    arg = rt::Arg::ofTensor(&(*t)->view);
  }

  // Poison the outputs with NaN: every element must be written.
  uint32_t nan16 = spec.dtype == "bf16" ? 0x7fc0 : 0x7e00;
  if (rt::Status s = (*to)->buffer.fill32(nan16 | nan16 << 16); !s)
    return makeError(s.message());
  if (rt::Status s = (*tl)->buffer.fill32(0x7fc00000); !s)
    return makeError(s.message());
  auto timer = rt::CudaTimer::create(0);
  if (!timer)
    return makeError(timer.message());
  rt::Status s = timer->start();
  if (s)
    s = (*kernel)->launch(args);
  if (s)
    s = timer->stop();
  if (s)
    s = rt::cudaSynchronize(0);
  if (!s)
    return makeError(s.message());
  auto ms = timer->elapsedMs();
  if (!ms)
    return makeError(ms.message());
  result.kernelMs = *ms;

  std::vector<uint16_t> o((*to)->bytes / 2);
  std::vector<float> lse((*tl)->bytes / 4);
  if (rt::Status d = (*to)->buffer.download(o.data(), (*to)->bytes); !d)
    return makeError(d.message());
  if (rt::Status d = (*tl)->buffer.download(lse.data(), (*tl)->bytes); !d)
    return makeError(d.message());
  for (uint16_t x : o)
    result.O.push_back(spec.dtype == "bf16" ? rt::bf16ToFloat(x) : rt::f16ToFloat(x));
  result.LSE.assign(lse.begin(), lse.end());
  for (const std::vector<double> *out : {&result.O, &result.LSE})
    result.unwritten += size_t(llvm::count_if(*out, [](double x) { return std::isnan(x); }));
  return result;
}
