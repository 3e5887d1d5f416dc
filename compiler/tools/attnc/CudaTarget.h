//===- CudaTarget.h - attnc's CUDA target (--emit, run) ---------*- C++ -*-===//

#ifndef ATTNC_TOOLS_CUDATARGET_H
#define ATTNC_TOOLS_CUDATARGET_H

#include "Driver.h"

#include "attnc/DSL/Reference.h"

#include "llvm/Support/Error.h"

namespace attnc::driver {

/// The CUDA stages `attnc FILE --target=cuda --emit=...` prints or writes.
enum class CudaStage { Gpu, NVVM, PTX, Cubin };

struct CudaEmitOptions {
  std::string kernel;
  std::vector<std::string> params;
  std::string dtype = "bf16";
  std::string arch = "sm_90a";
  int64_t headDim = 0; // 0: the kernel's first head_dim, or 128
  int64_t blockQ = 0, blockK = 0, warpMTiles = 0, stages = 0; // 0: pipeline defaults
  std::string mma;                                            // empty: pipeline default
  bool wgmmaQInRegs = false;
  int64_t classChunk = 0;
  bool partialVote = false;
  bool kvCache = false;
  bool quantDirectV = true;
  bool quantBiasK = false;
  bool decodeLazyRescale = false;
  bool decodeTransposed = true;
  int64_t decodeMinCtas = 0;
  bool decodePdl = true;
  int64_t decodeL2Prefetch = 0;
  bool decodeTma = false;
  bool cachePrefill = true;
  std::string outPath = "-";
};

/// MLIRGen -> inline+simplify -> attn-to-nvvm [-> NVVM -> PTX [-> cubin]].
/// PTX goes to `outPath` with the runtime metadata next to it
/// (`outPath`.meta) unless writing to stdout; cubin runs `ptxas` (found on
/// PATH) on the PTX.
bool emitCuda(mlir::MLIRContext &ctx, const dsl::Program &prog, const CudaEmitOptions &options,
              CudaStage stage);

struct CudaRunResult : JitRunResult {
  std::string device; // the GPU's name
  std::string arch;   // the kernel's
  /// The launch, timed with CUDA events.
  double kernelMs = 0;
  /// O and LSE elements the kernel left at their NaN poison.
  size_t unwritten = 0;
};

/// `attnc run --target=cuda`: gets the kernel for the run's dtype, the
/// shape's D/Dv and `--arch` (default: the GPU's) through the JIT API
/// (kernel cache), copies the inputs (already rounded to the dtype) and the
/// tensor parameters to GPU 0, poisons O and LSE, launches and copies back.
/// Fails with the reason when there is no usable GPU.
llvm::Expected<CudaRunResult> runCuda(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                      const dsl::KernelDecl &k, const RunOptions &options,
                                      const reference::Shape &shape, const std::vector<double> &Q,
                                      const std::vector<double> &K, const std::vector<double> &V,
                                      const reference::Bindings &bindings);

} // namespace attnc::driver

#endif // ATTNC_TOOLS_CUDATARGET_H
