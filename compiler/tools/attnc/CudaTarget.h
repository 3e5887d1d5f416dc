//===- CudaTarget.h - attnc's CUDA target (--emit stages) -------*- C++ -*-===//

#ifndef ATTNC_TOOLS_CUDATARGET_H
#define ATTNC_TOOLS_CUDATARGET_H

#include "Driver.h"

namespace attnc::driver {

/// The CUDA stages `attnc FILE --target=cuda --emit=...` prints or writes.
enum class CudaStage { Gpu, NVVM, PTX, Cubin };

struct CudaEmitOptions {
  std::string kernel;
  std::vector<std::string> params;
  std::string dtype = "bf16";
  std::string arch = "sm_90a";
  int64_t headDim = 0;                            // 0: the kernel's first head_dim, or 128
  int64_t blockQ = 0, blockK = 0, warpMTiles = 0; // 0: pipeline::CudaOptions defaults
  std::string outPath = "-";
};

/// MLIRGen -> inline+simplify -> attn-to-nvvm [-> NVVM -> PTX [-> cubin]].
/// PTX goes to `outPath` with the runtime metadata next to it
/// (`outPath`.meta) unless writing to stdout; cubin runs `ptxas` (found on
/// PATH) on the PTX.
bool emitCuda(mlir::MLIRContext &ctx, const dsl::Program &prog, const CudaEmitOptions &options,
              CudaStage stage);

} // namespace attnc::driver

#endif // ATTNC_TOOLS_CUDATARGET_H
