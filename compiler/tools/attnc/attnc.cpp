//===- attnc.cpp - The attnc compiler driver ------------------------------===//
//
//   attnc FILE.attn --emit=ast|format|attn [--kernel=NAME] [-o FILE]
//   attnc run FILE.attn --kernel=NAME --shape=B,Hq,Hkv,Nq,Nk,D[,Dv]
//         [--param NAME=VALUE]... [--q-offset=N] [--check]
//
//===----------------------------------------------------------------------===//

#include "CpuTarget.h"
#include "CudaTarget.h"
#include "Driver.h"
#include "TilesTarget.h"
#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/Printer.h"
#include "attnc/JIT.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace attnc;

namespace {

cl::SubCommand runCmd("run", "Run a kernel on random inputs (float64 reference)");

cl::SubCommand cacheCmd("cache", "Kernel cache: stats | clear ($ATTNC_CACHE_DIR, default "
                                 "~/.cache/attnc)");
cl::opt<std::string> cacheAction(cl::Positional, cl::desc("<stats|clear>"), cl::init("stats"),
                                 cl::sub(cacheCmd));

cl::opt<std::string> inputFile(cl::Positional, cl::desc("<input .attn file>"), cl::init("-"),
                               cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));

enum class Emit { AST, Format, Attn, Tiles, Tiled, LLVMDialect, LLVM, Obj, Gpu, NVVM, PTX, Cubin };
cl::opt<Emit> emit(
    "emit", cl::desc("What to print"), cl::init(Emit::Attn),
    cl::values(clEnumValN(Emit::AST, "ast", "the checked AST"),
               clEnumValN(Emit::Format, "format", "canonical DSL source"),
               clEnumValN(Emit::Attn, "attn", "the attn dialect (MLIRGen output)"),
               clEnumValN(Emit::Tiles, "tiles",
                          "the mask's FULL/EMPTY/PARTIAL tiles (--shape, --tile-q/-k)"),
               clEnumValN(Emit::Tiled, "tiled", "CPU: flash-tiled scf/vector (attn-to-cpu)"),
               clEnumValN(Emit::LLVMDialect, "llvm-dialect", "CPU: the LLVM dialect"),
               clEnumValN(Emit::LLVM, "llvm", "CPU: optimized LLVM IR for the host"),
               clEnumValN(Emit::Obj, "obj", "CPU: object file (-o FILE.o) + C header FILE.h (AOT)"),
               clEnumValN(Emit::Gpu, "gpu", "CUDA: the gpu.func kernel (attn-to-nvvm)"),
               clEnumValN(Emit::NVVM, "nvvm", "CUDA: NVVM/LLVM dialect, target attached"),
               clEnumValN(Emit::PTX, "ptx", "CUDA: PTX (-o FILE.ptx also writes FILE.ptx.meta)"),
               clEnumValN(Emit::Cubin, "cubin", "CUDA: cubin through ptxas (-o FILE)")),
    cl::sub(cl::SubCommand::getTopLevel()));

cl::opt<std::string> outputFile("o", cl::desc("Output file"), cl::value_desc("file"), cl::init("-"),
                                cl::sub(cl::SubCommand::getTopLevel()));

cl::opt<std::string> kernelName("kernel", cl::desc("Kernel to compile or run"),
                                cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));

cl::list<std::string> params("param",
                             cl::desc("NAME=VALUE: a const parameter (compile) or a runtime "
                                      "parameter (run); tensors take v1,v2,..."),
                             cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));

cl::list<std::string> importPaths("I", cl::desc("Import search path"), cl::Prefix,
                                  cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));

cl::opt<bool> noStdlib("no-stdlib", cl::desc("Do not search the standard library for imports"),
                       cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));

cl::opt<std::string> shape("shape", cl::desc("B,Hq,Hkv,Nq,Nk,D[,Dv] (--emit=tiles: also Nq,Nk)"),
                           cl::sub(runCmd), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> qOffset("q-offset", cl::desc("Position of the first query row"), cl::init(0),
                         cl::sub(runCmd), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> tileQ("tile-q", cl::desc("--emit=tiles: query rows per tile"), cl::init(64),
                       cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> tileK("tile-k", cl::desc("--emit=tiles: keys per tile"), cl::init(64),
                       cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<unsigned> tileRefine("tile-refine",
                             cl::desc("--emit=tiles: bisect PARTIAL tiles up to N levels"),
                             cl::init(0), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> check("check", cl::desc("Compare against the float64 reference"), cl::sub(runCmd));
cl::opt<uint64_t> seed("seed", cl::desc("Random seed for the inputs"), cl::init(1),
                       cl::sub(runCmd));
cl::opt<std::string>
    target("target",
           cl::desc("Where to run: reference (float64, the oracle) or interp "
                    "(the attn IR, interpreted in f32) or cpu (JIT-compiled for the host) "
                    "or cuda (JIT-compiled for GPU 0)"),
           cl::init("reference"), cl::sub(runCmd), cl::sub(cl::SubCommand::getTopLevel()));

cl::opt<std::string> arch("arch",
                          cl::desc("CUDA target: GPU architecture (sm_80, sm_90a, ...; default: "
                                   "sm_90a to emit, the GPU's to run)"),
                          cl::init("sm_90a"), cl::sub(cl::SubCommand::getTopLevel()),
                          cl::sub(runCmd));
cl::opt<int64_t> cudaBlockQ("cuda-block-q",
                            cl::desc("CUDA target: query rows per CTA (16 per warp; 0: default)"),
                            cl::init(0), cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));
cl::opt<int64_t> cudaBlockK("cuda-block-k", cl::desc("CUDA target: keys per KV tile (0: default)"),
                            cl::init(0), cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd));
cl::opt<int64_t> cudaWarpMTiles("cuda-warp-m-tiles",
                                cl::desc("CUDA target: m16 row tiles per warp (0: default)"),
                                cl::init(0), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> cudaStages("cuda-stages",
                            cl::desc("CUDA target: K/V shared-memory buffers (0: default)"),
                            cl::init(0), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> cudaMma("cuda-mma",
                             cl::desc("CUDA target: tensor-core instruction, sync (mma.sync) or "
                                      "wgmma (sm_90a); default: wgmma where it applies"),
                             cl::init(""), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaWgmmaQRegs("cuda-wgmma-q-in-registers",
                             cl::desc("CUDA target, wgmma: Q.K^T reads Q from registers"),
                             cl::init(false), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> cudaClassChunk(
    "cuda-class-chunk",
    cl::desc("CUDA target, data-dependent masks: KV tiles classified per pass (0: default)"),
    cl::init(0), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaPartialVote(
    "cuda-partial-vote",
    cl::desc("CUDA target, data-dependent masks: skip PARTIAL tiles per warp(group) by a vote "
             "before Q.K^T (default: the mask after Q.K^T)"),
    cl::init(false), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaQuantDirectV(
    "cuda-quant-direct-v",
    cl::desc("CUDA target, --kv-cache with quantized storage: V's MMA fragments straight from "
             "the raw rows (default; =false: through an f16 V tile in shared memory)"),
    cl::init(true), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaQuantBiasK(
    "cuda-quant-bias-k",
    cl::desc("CUDA target, --kv-cache with int8/int4 storage: K's MMA fragments keep the f16 "
             "magic-number bias, which the accumulators start from (off: 0-1.7% on the H100)"),
    cl::init(false), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaDecodeLazyRescale(
    "cuda-decode-lazy-rescale",
    cl::desc("CUDA target, --kv-cache: the decode kernel rescales O only when a row's maximum "
             "grew by more than 2^8 (a warp vote; off: 1-3% slower on the H100)"),
    cl::init(false), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaDecodeTransposed(
    "cuda-decode-transposed",
    cl::desc("CUDA target, --kv-cache: the decode kernel on 8-row tiles with the keys as the "
             "MMAs' M (S^T = K Q^T, O^T = V^T P^T), where the kernel takes it (head dims "
             "multiples of 32, int4 with direct V; on: int4 7-11% faster on the H100); "
             "--cuda-block-q other than 8 turns it off"),
    cl::init(true), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> cudaDecodeMinCtas(
    "cuda-decode-min-ctas",
    cl::desc("CUDA target, --kv-cache: the decode entry asks ptxas for N resident CTAs per SM "
             "(registers capped at 64K / (N x threads)) where N CTAs' shared memory fits the SM; "
             "0: the measured default (3 for int4 with scale groups, else none)"),
    cl::init(0), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaDecodePdl(
    "cuda-decode-pdl",
    cl::desc("CUDA target, --kv-cache, sm_90 or later: the split-KV merge kernel waits on the "
             "decode grid (griddepcontrol), so that the runtime launches it before the decode "
             "ends (programmatic dependent launch); on by default"),
    cl::init(true), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaDecodeTma(
    "cuda-decode-tma",
    cl::desc("CUDA target, --kv-cache, sm_90 or later: K/V pages whose rows are whole 128-byte "
             "lines (bf16/f16; int8/fp8 of one line) copied by bulk tensor copies (one thread, an "
             "mbarrier per stage) instead of 16-byte cp.asyncs; the decode entries take tensor "
             "maps over the pools. Off: slower on an H200 (bench/NOTES.md session 15)"),
    cl::init(false), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> cudaCachePrefill(
    "cuda-cache-prefill",
    cl::desc("CUDA target, --kv-cache, bf16/f16 storage, every head retaining all: also emit the "
             "prefill-shaped entry attnc_<K>_prefill (the prefill kernel reading K/V through the "
             "page tables), which the runtime takes for prompt chunks; the metadata's "
             "cache_prefill"),
    cl::init(true), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> cudaDecodeL2Prefetch(
    "cuda-decode-l2-prefetch",
    cl::desc("CUDA target, --kv-cache: each K/V tile copy also prefetches to L2 the rows of the "
             "tile N tiles after it (0: off; an experiment, slower on the H100)"),
    cl::init(0), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> kvCache("kv-cache",
                      cl::desc("Compile the kernel over its cache policy (K/V through page "
                               "tables) with the cache's generated append/move code: on CUDA "
                               "the split-KV decode kernel and its merge kernel, on the CPU "
                               "(--emit=tiled|llvm-dialect|llvm|obj) the item function over the "
                               "pools (the JIT's KernelSpec::kvCache)"),
                      cl::init(false), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> remarks("remarks",
                      cl::desc("Remarks on how the mask's tiles are skipped (closed form, at "
                               "launch, what stays PARTIAL), for --kernel or every kernel"),
                      cl::init(false));
cl::opt<dsl::ElemType> dtype("dtype", cl::desc("Input element type"), cl::init(dsl::ElemType::F32),
                             cl::values(clEnumValN(dsl::ElemType::F32, "f32", "float32"),
                                        clEnumValN(dsl::ElemType::F16, "f16", "float16"),
                                        clEnumValN(dsl::ElemType::BF16, "bf16", "bfloat16")),
                             cl::sub(runCmd), cl::sub(cl::SubCommand::getTopLevel()));

int runCache() {
  std::string dir = attnc::defaultCacheDir();
  if (cacheAction == "clear") {
    if (auto s = attnc::clearDiskCache(dir); !s) {
      errs() << "attnc cache: error: " << s.message() << "\n";
      return 1;
    }
    outs() << "cleared " << dir << "\n";
    return 0;
  }
  if (cacheAction != "stats") {
    errs() << "attnc cache: error: unknown action '" << cacheAction
           << "' (expected stats or clear)\n";
    return 1;
  }
  attnc::DiskCacheInfo info = attnc::diskCacheInfo(dir);
  outs() << "cache: " << dir << "\nentries: " << info.entries << "\nbytes: " << info.bytes
         << "\nhits: " << info.hits << "\nmisses: " << info.misses << "\ncorrupt: " << info.corrupt
         << "\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "attnc: the attention compiler\n");
  if (cacheCmd)
    return runCache();

  mlir::MLIRContext ctx;
  driver::registerDialects(ctx);
  SourceMgr sm;
  mlir::SourceMgrDiagnosticHandler diagHandler(sm, &ctx);

  dsl::FrontendOptions feOptions;
  feOptions.importPaths.assign(importPaths.begin(), importPaths.end());
  feOptions.useStdlib = !noStdlib;

  std::optional<std::string> stdinText;
  if (inputFile == "-") {
    auto buf = MemoryBuffer::getSTDIN();
    if (!buf) {
      errs() << "attnc: cannot read stdin\n";
      return 1;
    }
    stdinText = (*buf)->getBuffer().str();
  }
  std::unique_ptr<dsl::Program> prog =
      dsl::loadProgram(sm, ctx, inputFile == "-" ? std::string("<stdin>") : std::string(inputFile),
                       feOptions, stdinText ? std::optional<StringRef>(*stdinText) : std::nullopt);
  if (!prog)
    return 1;

  if (remarks && !driver::emitTileRemarks(ctx, *prog, kernelName, {params.begin(), params.end()}))
    return 1;

  if (runCmd) {
    driver::RunOptions opts{kernelName, shape, {params.begin(), params.end()}, qOffset, check, seed,
                            target,     dtype};
    // --target=cuda: the GPU's arch unless --arch is given.
    opts.arch = arch.getNumOccurrences() ? std::string(arch) : "";
    opts.blockQ = cudaBlockQ;
    opts.blockK = cudaBlockK;
    return driver::runKernel(ctx, *prog, opts, outs()) ? 0 : 1;
  }

  // The object and its header are written by emitCpuObject (two files);
  // an output file opened here would delete the object when discarded.
  if (emit == Emit::Obj) {
    if (target != "cpu" && target != "reference") {
      errs() << "attnc: error: --emit=obj is for --target=cpu\n";
      return 1;
    }
    return driver::emitCpuObject(ctx, *prog, kernelName, {params.begin(), params.end()},
                                 dsl::toString(dtype).str(), kvCache, outputFile)
               ? 0
               : 1;
  }

  const bool cudaEmit =
      emit == Emit::Gpu || emit == Emit::NVVM || emit == Emit::PTX || emit == Emit::Cubin;
  const bool cpuEmit = emit == Emit::Tiled || emit == Emit::LLVMDialect || emit == Emit::LLVM;
  if (kvCache && !cudaEmit && !cpuEmit) {
    errs() << "attnc: error: --kv-cache is for --emit=tiled|llvm-dialect|llvm|obj (CPU) or "
              "gpu|nvvm|ptx|cubin (CUDA)\n";
    return 1;
  }
  if (cudaEmit) {
    if (target != "cuda") {
      errs() << "attnc: error: --emit=gpu|nvvm|ptx|cubin is for --target=cuda\n";
      return 1;
    }
    driver::CudaEmitOptions o;
    o.kernel = kernelName;
    o.params.assign(params.begin(), params.end());
    // bf16 unless --dtype says otherwise; tensor cores take no f32 here.
    if (dtype.getNumOccurrences() && dtype == dsl::ElemType::F32) {
      errs() << "attnc: error: --target=cuda takes --dtype=bf16 or f16\n";
      return 1;
    }
    o.dtype = dtype == dsl::ElemType::F32 ? "bf16" : dsl::toString(dtype).str();
    o.arch = arch;
    o.blockQ = cudaBlockQ;
    o.blockK = cudaBlockK;
    o.warpMTiles = cudaWarpMTiles;
    o.stages = cudaStages;
    o.mma = cudaMma;
    o.wgmmaQInRegs = cudaWgmmaQRegs;
    o.classChunk = cudaClassChunk;
    o.partialVote = cudaPartialVote;
    o.kvCache = kvCache;
    o.quantDirectV = cudaQuantDirectV;
    o.quantBiasK = cudaQuantBiasK;
    o.decodeLazyRescale = cudaDecodeLazyRescale;
    o.decodeTransposed = cudaDecodeTransposed;
    o.decodeMinCtas = cudaDecodeMinCtas;
    o.decodePdl = cudaDecodePdl;
    o.decodeL2Prefetch = cudaDecodeL2Prefetch;
    o.decodeTma = cudaDecodeTma;
    o.cachePrefill = cudaCachePrefill;
    o.outPath = outputFile;
    driver::CudaStage stage = emit == Emit::Gpu    ? driver::CudaStage::Gpu
                              : emit == Emit::NVVM ? driver::CudaStage::NVVM
                              : emit == Emit::PTX  ? driver::CudaStage::PTX
                                                   : driver::CudaStage::Cubin;
    return driver::emitCuda(ctx, *prog, o, stage) ? 0 : 1;
  }

  std::string err;
  auto out = mlir::openOutputFile(outputFile, &err);
  if (!out) {
    errs() << "attnc: " << err << "\n";
    return 1;
  }
  switch (emit) {
  case Emit::AST:
    dsl::dumpAST(*prog->main, out->os());
    break;
  case Emit::Format:
    dsl::formatModule(*prog->main, out->os());
    break;
  case Emit::Attn:
    if (!driver::emitAttn(ctx, *prog, kernelName, {params.begin(), params.end()}, out->os()))
      return 1;
    break;
  case Emit::Tiles: {
    driver::TilesOptions o{kernelName, {params.begin(), params.end()}, shape, qOffset, tileQ, tileK,
                           tileRefine};
    if (!driver::emitTiles(ctx, *prog, o, out->os()))
      return 1;
    break;
  }
  case Emit::Obj:
  case Emit::Gpu:
  case Emit::NVVM:
  case Emit::PTX:
  case Emit::Cubin:
    break;
  case Emit::Tiled:
  case Emit::LLVMDialect:
  case Emit::LLVM:
    if (!driver::emitCpu(ctx, *prog, kernelName, {params.begin(), params.end()},
                         emit == Emit::Tiled         ? driver::CpuStage::Tiled
                         : emit == Emit::LLVMDialect ? driver::CpuStage::LLVMDialect
                                                     : driver::CpuStage::LLVMIR,
                         kvCache, out->os()))
      return 1;
    break;
  }
  out->keep();
  return 0;
}
