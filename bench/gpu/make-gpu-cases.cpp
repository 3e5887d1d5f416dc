//===- make-gpu-cases.cpp - The GPU check's case bundle, made here ---------===//
//
// The development machine's half of the GPU correctness check (docs/cuda.md):
// compiles every lib/ kernel for CUDA (bf16 and f16; D = 64 and 128, or the
// head dims the kernel declares) to PTX, and computes the float64 reference
// of awkward shapes (lengths off every tile, Nq != Nk, GQA, q_offset, decode
// rows, rows with no visible key) on inputs drawn from a seed. Writes a
// bundle (GpuCases.h) that attnc-gpu-check runs on the GPU machine.
//
//   make-gpu-cases OUT [--arch sm_90a] [--mma sync|wgmma] [--class-chunk N] [--partial-vote]
//                      [--kernel NAME] [--quick]
//                      [--jobs N]
//                      [--ptx FILE.ptx [--param NAME=VALUE]...]
//
// --ptx takes prebuilt kernels instead (FILE.ptx and FILE.ptx.meta, as
// `attnc --target=cuda --emit=ptx -o FILE.ptx` writes them, e.g. the
// benchmark's): their cases use the const parameters given with --param
// (the values they were compiled with).
//
// Exits 1 if a kernel failed to compile or a reference failed (the bundle
// still holds everything else).
//
//===----------------------------------------------------------------------===//

#include "GpuCases.h"

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/DSL/Reference.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Pipeline/CudaPipeline.h"
#include "attnc/Pipeline/Pipeline.h"
#include "attnc/Runtime/Cuda.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

using namespace attnc;
using namespace attnc::gpucases;

namespace {

struct Shape {
  int64_t B, Hq, Hkv, Nq, Nk, qOffset;
};

// Single rows, lengths off every tile size, Nk < Nq and Nk > Nq, GQA 2:1 and
// 4:1, chunked prefill and decode offsets, several tiles of queries.
const Shape kShapes[] = {{1, 2, 1, 1, 1, 0},    {1, 2, 2, 17, 17, 0}, {2, 4, 1, 17, 200, 100},
                         {1, 4, 4, 130, 67, 0}, {1, 2, 2, 64, 64, 0}, {1, 8, 2, 1000, 1000, 0},
                         {1, 2, 1, 5, 300, 295}};
const Shape kQuickShapes[] = {{1, 2, 1, 1, 1, 0}, {2, 4, 1, 17, 200, 100}, {1, 4, 4, 130, 67, 0}};

/// Const parameters set below their defaults so that the window is visible
/// at these lengths (kernel -> name -> value).
const std::map<std::string, std::map<std::string, std::string>> kConstOverrides = {
    {"sliding_window_attention", {{"W", "37"}}},
    {"gemma2_local", {{"W", "37"}}},
    // Blocks smaller than the kernel's tiles (PARTIAL tiles, mask per
    // element); the causal variant keeps 128 x 128 (one entry per tile).
    {"block_sparse_attention", {{"BQ", "64"}, {"BK", "32"}}},
};

struct Options {
  std::string out, arch = "sm_90a", kernel;
  std::string mma;          // empty: the pipeline's choice for the arch and head dims
  int64_t classChunk = 0;   // data-dependent masks: tiles per class pass (0: default)
  bool partialVote = false; // data-dependent masks: warp(group) vote on PARTIAL tiles
  std::vector<std::string> ptx, params;
  bool quick = false;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
};

/// One kernel to compile and the cases to run it on.
struct Job {
  std::string file, kernel, dtype;
  int64_t D;
  std::string ptxPath; // prebuilt: this PTX (and .meta), not compiled here
  // Results:
  std::string id, error;
  std::vector<Case> cases;
  size_t bytes = 0;
};

/// Query rows whose reference is kept: all of a short sequence; of a long one
/// the first and last 8 and every 16th (every 32nd past 256 rows) between.
std::vector<std::pair<int64_t, int64_t>> sampleRows(int64_t Nq) {
  if (Nq <= 32)
    return {};
  std::vector<std::pair<int64_t, int64_t>> rows = {{0, 8}};
  int64_t step = Nq > 256 ? 32 : 16;
  for (int64_t r = 8 + step / 2; r < Nq - 8; r += step)
    rows.push_back({r, r + 1});
  rows.push_back({Nq - 8, Nq});
  return rows;
}

std::string caseName(const std::string &id, const Shape &s) {
  return id + "." + std::to_string(s.B) + "x" + std::to_string(s.Hq) + "x" + std::to_string(s.Hkv) +
         "." + std::to_string(s.Nq) + "x" + std::to_string(s.Nk) + "+" + std::to_string(s.qOffset);
}

/// Writes `values` as elements of metadata type `type`.
bool writeTensor(const std::string &path, const std::string &type,
                 const std::vector<double> &values, size_t &bytes) {
  std::vector<char> buf;
  auto put = [&](const auto &x) {
    const char *p = reinterpret_cast<const char *>(&x);
    buf.insert(buf.end(), p, p + sizeof(x));
  };
  for (double v : values) {
    if (type == "f32")
      put(float(v));
    else if (type == "f64")
      put(v);
    else if (type == "i1" || type == "i8")
      put(int8_t(v));
    else if (type == "i16")
      put(int16_t(v));
    else if (type == "i32")
      put(int32_t(v));
    else if (type == "i64")
      put(int64_t(v));
    else
      return false;
  }
  bytes += buf.size();
  return writeFile(path, buf.data(), buf.size());
}

/// Compiles `job`'s kernel, writes its PTX and every case's reference.
void runJob(const Options &opts, Job &job) {
  mlir::MLIRContext ctx(mlir::MLIRContext::Threading::DISABLED);
  mlir::DialectRegistry registry;
  mlir::attn::registerAttnDialect(registry);
  pipeline::registerCudaDialects(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
  llvm::SourceMgr sm;
  std::string diag;
  llvm::raw_string_ostream diagOS(diag);
  mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, diagOS);
  auto fail = [&](const std::string &why) { job.error = why + (diag.empty() ? "" : "\n" + diag); };

  auto prog = dsl::loadProgram(sm, ctx, job.file, dsl::FrontendOptions{});
  if (!prog)
    return fail("cannot load " + job.file);
  const dsl::KernelDecl *k = prog->lookupKernel(job.kernel);
  dsl::MLIRGenOptions gen;
  gen.kernel = job.kernel;
  std::vector<std::string> bindingText = opts.params;
  if (auto it = kConstOverrides.find(job.kernel);
      job.ptxPath.empty() && it != kConstOverrides.end())
    for (auto &[name, value] : it->second)
      if (std::any_of(k->constParams.begin(), k->constParams.end(),
                      [&](const dsl::EffectiveParam &p) { return p.name == name; }))
        bindingText.push_back(name + "=" + value);
  for (const std::string &b : bindingText)
    gen.constValues[b.substr(0, b.find('='))] = b.substr(b.find('=') + 1);

  pipeline::CudaArtifact art;
  if (job.ptxPath.empty()) {
    auto module = dsl::mlirGen(ctx, *prog, gen);
    if (!module || mlir::failed(pipeline::runInlineAndSimplify(*module)))
      return fail("MLIRGen failed");
    pipeline::CudaOptions cuda;
    cuda.headDim = job.D;
    cuda.dtype = job.dtype;
    cuda.arch = opts.arch;
    cuda.mma = opts.mma;
    cuda.classChunk = opts.classChunk;
    cuda.partialVote = opts.partialVote;
    auto compiled = pipeline::compileCudaArtifact(*module, cuda);
    if (!compiled)
      return fail("compile: " + llvm::toString(compiled.takeError()));
    art = std::move(*compiled);
    job.id = job.kernel + "_" + job.dtype + "_d" + std::to_string(job.D);
  } else if (!readFile(job.ptxPath, art.ptx) || !readFile(job.ptxPath + ".meta", art.metadata)) {
    return fail("cannot read " + job.ptxPath + "(.meta)");
  } else {
    job.id = llvm::sys::path::stem(job.ptxPath).str();
  }
  // The metadata must be what the runtime accepts.
  auto info = rt::parseCudaKernelInfo(art.metadata);
  if (!info)
    return fail("metadata the runtime rejects: " + info.message());
  std::string base = opts.out + "/kernels/" + job.id;
  if (!writeFile(base + ".ptx", art.ptx.data(), art.ptx.size()) ||
      !writeFile(base + ".meta", art.metadata.data(), art.metadata.size()))
    return fail("cannot write " + base + ".ptx/.meta");
  job.bytes += art.ptx.size() + art.metadata.size();

  bool bf16 = job.dtype == "bf16";
  uint64_t seed = 1;
  for (const Shape &s :
       opts.quick ? llvm::ArrayRef<Shape>(kQuickShapes) : llvm::ArrayRef<Shape>(kShapes)) {
    ++seed;
    Case c;
    c.name = caseName(job.id, s);
    c.kernel = job.id;
    c.B = s.B, c.Hq = s.Hq, c.Hkv = s.Hkv, c.Nq = s.Nq, c.Nk = s.Nk, c.qOffset = s.qOffset;
    c.seed = seed * 1000003 + uint64_t(job.D);
    c.tol = 1e-2; // DESIGN.md: bf16/f16 inputs, f32 accumulation
    c.rows = sampleRows(s.Nq);
    reference::Shape shape{s.B, s.Hq, s.Hkv, s.Nq, s.Nk, job.D, job.D};
    auto bindings = reference::parseBindings(*k, shape, bindingText, c.seed, s.qOffset);
    if (!bindings)
      return fail(c.name + ": " + llvm::toString(bindings.takeError()));
    bindings->qOffset = s.qOffset;
    auto inputs = [&](Input which, int64_t n) {
      std::vector<double> out;
      for (uint16_t bits : randomInputs(c.seed, which, size_t(n), bf16))
        out.push_back(inputValue(bits, bf16));
      return out;
    };
    auto Q = inputs(Input::Q, s.B * s.Hq * s.Nq * job.D);
    auto K = inputs(Input::K, s.B * s.Hkv * s.Nk * job.D);
    auto V = inputs(Input::V, s.B * s.Hkv * s.Nk * job.D);
    auto ref = reference::evaluate(*k, shape, Q.data(), K.data(), V.data(), *bindings);
    if (!ref)
      return fail(c.name + ": reference: " + llvm::toString(ref.takeError()));

    std::vector<uint16_t> o;
    std::vector<float> lse;
    std::vector<int64_t> rows = c.checkedRows();
    for (int64_t bh = 0; bh < s.B * s.Hq; ++bh)
      for (int64_t row : rows) {
        size_t r = size_t(bh * s.Nq + row);
        lse.push_back(float(ref->LSE[r]));
        for (int64_t d = 0; d < job.D; ++d)
          o.push_back(rt::floatToF16(float(ref->O[r * job.D + d])));
      }
    c.oFile = "data/" + c.name + ".o";
    c.lseFile = "data/" + c.name + ".lse";
    if (!writeFile(opts.out + "/" + c.oFile, o.data(), o.size() * 2) ||
        !writeFile(opts.out + "/" + c.lseFile, lse.data(), lse.size() * 4))
      return fail("cannot write " + c.oFile);
    job.bytes += o.size() * 2 + lse.size() * 4;
    for (const rt::ParamInfo &p : info->params) {
      if (!p.isTensor) {
        if (auto it = bindings->scalars.find(p.name); it != bindings->scalars.end())
          c.scalars[p.name] = it->second;
        continue;
      }
      auto it = bindings->tensors.find(p.name);
      if (it == bindings->tensors.end())
        return fail(c.name + ": the reference bindings have no tensor '" + p.name + "'");
      TensorFile t{p.name, "data/" + c.name + "." + p.name, p.type, it->second.dims};
      if (!writeTensor(opts.out + "/" + t.file, p.type, it->second.data, job.bytes))
        return fail(c.name + ": cannot write parameter '" + p.name + "' of type " + p.type);
      c.tensors.push_back(t);
    }
    job.cases.push_back(std::move(c));
  }
}

int usage() {
  std::fprintf(stderr, "usage: make-gpu-cases OUT [--arch sm_90a] [--mma sync|wgmma] "
                       "[--class-chunk N] [--partial-vote] "
                       "[--kernel NAME] [--quick] [--jobs N] [--ptx FILE.ptx [--param "
                       "NAME=VALUE]...]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  Options opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--arch" && i + 1 < argc)
      opts.arch = argv[++i];
    else if (a == "--mma" && i + 1 < argc)
      opts.mma = argv[++i];
    else if (a == "--class-chunk" && i + 1 < argc)
      opts.classChunk = std::atoll(argv[++i]);
    else if (a == "--partial-vote")
      opts.partialVote = true;
    else if (a == "--kernel" && i + 1 < argc)
      opts.kernel = argv[++i];
    else if (a == "--jobs" && i + 1 < argc)
      opts.jobs = unsigned(std::max(1, std::atoi(argv[++i])));
    else if (a == "--ptx" && i + 1 < argc)
      opts.ptx.push_back(argv[++i]);
    else if (a == "--param" && i + 1 < argc && std::strchr(argv[i + 1], '='))
      opts.params.push_back(argv[++i]);
    else if (a == "--quick")
      opts.quick = true;
    else if (a.empty() || a[0] == '-' || !opts.out.empty())
      return usage();
    else
      opts.out = a;
  }
  if (opts.out.empty())
    return usage();
  for (const char *sub : {"", "/kernels", "/data"})
    if (std::error_code ec = llvm::sys::fs::create_directories(opts.out + sub)) {
      std::fprintf(stderr, "make-gpu-cases: %s%s: %s\n", opts.out.c_str(), sub,
                   ec.message().c_str());
      return 2;
    }

  // Every kernel of every lib file, in a stable order.
  std::vector<std::string> files = dsl::stdlibFiles();
  std::vector<Job> jobs;
  std::map<std::string, std::string> fileOf; // kernel -> lib file
  for (const std::string &file : files) {
    mlir::MLIRContext ctx;
    llvm::SourceMgr sm;
    std::string diag;
    llvm::raw_string_ostream os(diag);
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, os);
    auto prog = dsl::loadProgram(sm, ctx, file, dsl::FrontendOptions{});
    if (!prog) {
      std::fprintf(stderr, "make-gpu-cases: %s does not load:\n%s", file.c_str(), diag.c_str());
      return 1;
    }
    for (auto &k : prog->main->kernels) {
      fileOf[k->name] = file;
      if (!opts.ptx.empty() || (!opts.kernel.empty() && k->name != opts.kernel))
        continue;
      std::vector<int64_t> dims = k->headDims;
      if (dims.empty())
        dims = {64, 128};
      for (const char *dtype : {"bf16", "f16"})
        for (int64_t D : dims)
          jobs.push_back({file, k->name, dtype, D});
    }
  }
  for (const std::string &ptx : opts.ptx) {
    std::string meta;
    auto info = readFile(ptx + ".meta", meta) ? rt::parseCudaKernelInfo(meta)
                                              : rt::Status::error("cannot read " + ptx + ".meta");
    if (!info || !fileOf.count(info->name)) {
      std::fprintf(stderr, "make-gpu-cases: %s: %s\n", ptx.c_str(),
                   info ? ("no lib/ kernel named " + info->name).c_str() : info.message().c_str());
      return 2;
    }
    jobs.push_back({fileOf[info->name], info->name, info->dtype, info->headDim, ptx});
  }
  if (jobs.empty()) {
    std::fprintf(stderr, "make-gpu-cases: no kernel%s\n",
                 opts.kernel.empty() ? "" : (" named " + opts.kernel).c_str());
    return 2;
  }

  std::atomic<size_t> next{0};
  std::mutex printMutex;
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < std::min<size_t>(opts.jobs, jobs.size()); ++w)
    workers.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
        runJob(opts, jobs[i]);
        std::lock_guard<std::mutex> lock(printMutex);
        std::fprintf(stderr, "[%zu/%zu] %s %s D=%lld: %s\n", i + 1, jobs.size(),
                     jobs[i].kernel.c_str(), jobs[i].dtype.c_str(), (long long)jobs[i].D,
                     jobs[i].error.empty()
                         ? (std::to_string(jobs[i].cases.size()) + " cases").c_str()
                         : ("FAILED: " + jobs[i].error).c_str());
      }
    });
  for (auto &w : workers)
    w.join();

  std::string manifest =
      std::string(kHeader) + "\n# made by make-gpu-cases --arch " + opts.arch +
      (opts.mma.empty() ? "" : " --mma " + opts.mma) +
      (opts.classChunk ? " --class-chunk " + std::to_string(opts.classChunk) : std::string()) +
      (opts.partialVote ? " --partial-vote" : "") + (opts.quick ? " --quick" : "") + "\n";
  size_t cases = 0, bytes = 0, failed = 0;
  for (const Job &j : jobs)
    if (j.error.empty())
      manifest += formatKernel({j.id, j.kernel, j.dtype, j.D, j.D}) + "\n";
  for (const Job &j : jobs) {
    failed += !j.error.empty();
    bytes += j.bytes;
    if (!j.error.empty())
      continue;
    for (const Case &c : j.cases) {
      manifest += formatCase(c) + "\n";
      ++cases;
    }
  }
  if (!writeFile(opts.out + "/cases.txt", manifest.data(), manifest.size())) {
    std::fprintf(stderr, "make-gpu-cases: cannot write %s/cases.txt\n", opts.out.c_str());
    return 2;
  }
  std::fprintf(stderr, "make-gpu-cases: %zu kernels, %zu cases, %.1f MiB in %s; %zu failed\n",
               jobs.size() - failed, cases, double(bytes + manifest.size()) / (1 << 20),
               opts.out.c_str(), failed);
  for (const Job &j : jobs)
    if (!j.error.empty())
      std::fprintf(stderr, "  FAILED %s %s D=%lld: %s\n", j.kernel.c_str(), j.dtype.c_str(),
                   (long long)j.D, j.error.c_str());
  return failed ? 1 : 0;
}
