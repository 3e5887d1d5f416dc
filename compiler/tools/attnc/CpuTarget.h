//===- CpuTarget.h - attnc's CPU target (JIT, --emit stages) ----*- C++ -*-===//

#ifndef ATTNC_TOOLS_CPUTARGET_H
#define ATTNC_TOOLS_CPUTARGET_H

#include "Driver.h"

#include "attnc/DSL/Reference.h"

#include "llvm/Support/Error.h"

namespace attnc::driver {

/// The CPU stages `attnc FILE --emit=...` prints.
enum class CpuStage { Tiled, LLVMDialect, LLVMIR };

/// MLIRGen -> inline+simplify -> attn-to-cpu [-> LLVM], printed. Head
/// dimension: --head-dim, else the kernel's first head_dim, else 128.
/// `kvCache`: K/V through the kernel's cache policy, with the cache's
/// generated append / move functions.
bool emitCpu(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &kernel,
             const std::vector<std::string> &params, CpuStage stage, bool kvCache,
             llvm::raw_ostream &os);

struct CpuRunResult : JitRunResult {
  /// Best wall time of one full call (ms) over --cpu-repeat calls.
  double bestMs = 0;
  unsigned repeats = 0;
};

/// `attnc FILE --kernel=K --target=cpu --emit=obj -o OUT.o`: a PIC object
/// for the host with the kernel's entry points, and OUT.h declaring them.
bool emitCpuObject(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &kernel,
                   const std::vector<std::string> &params, const std::string &dtype, bool kvCache,
                   const std::string &outPath);

/// `attnc run --target=cpu`: gets the kernel for the run's dtype and the
/// shape's D/Dv through the JIT API (kernel cache) and launches it on the
/// given inputs (already rounded to the dtype) on the runtime's threads.
llvm::Expected<CpuRunResult> runCpu(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                    const dsl::KernelDecl &k, const RunOptions &options,
                                    const reference::Shape &shape, const std::vector<double> &Q,
                                    const std::vector<double> &K, const std::vector<double> &V,
                                    const reference::Bindings &bindings);

} // namespace attnc::driver

#endif // ATTNC_TOOLS_CPUTARGET_H
