//===- Driver.h - attnc subcommands ------------------------------*- C++ -*-===//

#ifndef ATTNC_TOOLS_DRIVER_H
#define ATTNC_TOOLS_DRIVER_H

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/Reference.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <vector>

namespace mlir {
class MLIRContext;
} // namespace mlir

namespace attnc {
class KernelCache;
} // namespace attnc

namespace attnc::driver {

/// Loads every dialect attnc emits or parses.
void registerDialects(mlir::MLIRContext &ctx);

/// `attnc FILE --emit=attn`: MLIRGen, printed. `params` are NAME=VALUE
/// specializations of const parameters.
bool emitAttn(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &kernel,
              const std::vector<std::string> &params, llvm::raw_ostream &os);

/// `--head-dim` of the compile stages (0 when not given: the kernel's first
/// head_dim, or 128).
int64_t headDimFlag();

/// The kernel an `--emit` stage compiles: `kernel`, or the file's only
/// kernel when empty. MLIRGen with `params` (NAME=VALUE const
/// specializations), then inlined and simplified. Prints an error and returns
/// null on failure; `decl` receives the kernel's declaration.
mlir::OwningOpRef<mlir::ModuleOp> genInlinedKernel(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                                   const std::string &kernel,
                                                   const std::vector<std::string> &params,
                                                   const dsl::KernelDecl *&decl);

struct RunOptions {
  std::string kernel;
  std::string shape;
  std::vector<std::string> params;
  int64_t qOffset = 0;
  bool check = false;
  uint64_t seed = 1;
  std::string target;
  dsl::ElemType dtype = dsl::ElemType::F32;
  /// --target=cuda: the GPU arch (empty: the device's) and the CTA tiles
  /// (0: the pipeline's defaults).
  std::string arch;
  int64_t blockQ = 0, blockK = 0;
};

/// The values of `k`'s const parameters in `bindings`, as MLIRGen and
/// KernelSpec::consts take them.
std::map<std::string, std::string> constBindings(const dsl::KernelDecl &k,
                                                 const reference::Bindings &bindings);

/// The kernel cache `attnc run`'s compiled targets go through
/// ($ATTNC_CACHE_DIR).
KernelCache &runCache();

/// What `attnc run` gets from a compiled target (runCpu, runCuda).
struct JitRunResult {
  std::vector<double> O, LSE;
  /// How the kernel was obtained (compiled, memory, disk) and how long it took.
  double jitMs = 0;
  std::string jitSource;
};

/// `attnc run`: runs a kernel on random inputs and prints a summary; with
/// `check`, compares the target's output against the float64 reference.
bool runKernel(mlir::MLIRContext &ctx, const dsl::Program &prog, const RunOptions &options,
               llvm::raw_ostream &os);

} // namespace attnc::driver

#endif // ATTNC_TOOLS_DRIVER_H
