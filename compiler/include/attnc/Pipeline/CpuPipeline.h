//===- CpuPipeline.h - attn -> LLVM for the host CPU -------------*- C++ -*-===//
//
// The CPU target, in stages that `attnc --emit=...` can print:
//   runInlineAndSimplify (Pipeline.h)
//   -> lowerToTiled: attn-to-cpu (flash-tiled scf/vector/memref)
//   -> lowerToLLVM:  LLVM dialect (math approximations, vector-to-llvm, ...)
//   -> translateToLLVMIR / createJIT: LLVM IR for the host, ORC JIT.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PIPELINE_CPUPIPELINE_H
#define ATTNC_PIPELINE_CPUPIPELINE_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LogicalResult.h"
#include "llvm/Support/Error.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
} // namespace llvm

namespace mlir {
class DialectRegistry;
class ExecutionEngine;
namespace attn {
class KernelOp;
} // namespace attn
} // namespace mlir

namespace attnc::pipeline {

struct CpuOptions {
  int64_t headDim = 128;
  int64_t headDimV = 0; // 0: headDim
  std::string dtype = "f32";
  int64_t tileQ = 32; // fastest measured on Zen 4, D = 128 (bench/NOTES.md)
  int64_t tileK = 8;
  unsigned optLevel = 3;
  /// K/V through the kernel's cache policy (the runtime's KvCache), see
  /// attn-to-cpu's kv-cache option.
  bool kvCache = false;
  /// attn-to-cpu's bf16-dot: AVX-512 BF16 dot products for a bf16 cache's
  /// decode (hostHasAvx512Bf16()).
  bool bf16Dot = false;
};

/// Whether this host has AVX-512 BF16 (vdpbf16ps).
bool hostHasAvx512Bf16();

/// Dialects and LLVM IR translations the CPU pipeline needs in the context.
void registerCpuDialects(mlir::DialectRegistry &registry);

/// attn (inlined, canonicalized) -> `attn-to-cpu`, then canonicalize + cse.
mlir::LogicalResult lowerToTiled(mlir::ModuleOp module, const CpuOptions &options);

/// Tiled form -> LLVM dialect. Leftover attn ops (cache policies) are
/// dropped: nothing on the CPU path reads them yet.
mlir::LogicalResult lowerToLLVM(mlir::ModuleOp module, const CpuOptions &options);

/// A TargetMachine for the host CPU (its features: AVX-512 where present).
llvm::Expected<std::unique_ptr<llvm::TargetMachine>> hostTargetMachine();

/// LLVM dialect -> optimized LLVM IR for the host.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateToLLVMIR(mlir::ModuleOp module, llvm::LLVMContext &llvmCtx, const CpuOptions &options);

/// LLVM dialect -> JIT-compiled engine for the host (optimized at
/// options.optLevel with the host's cost model).
llvm::Expected<std::unique_ptr<mlir::ExecutionEngine>> createJIT(mlir::ModuleOp module,
                                                                 const CpuOptions &options);

/// A runtime parameter of a kernel, as the CPU entry point takes it (in
/// this order, after Q, K, V, O, LSE, q_offset). Captured before lowering,
/// which erases the attn.kernel.
struct CpuParam {
  std::string name;
  mlir::Type type; // scalar type, or the tensor type
  mlir::Attribute defaultValue;
};
std::vector<CpuParam> getCpuParams(mlir::attn::KernelOp kernel);

/// One call of the JIT-compiled entry point `@<kernel>` (all work items on
/// the calling thread). Q/K/V/O/LSE are dense row-major f32; tensor
/// parameters are given as row-major values (converted to their element
/// type here); scalars missing from `scalars` take their default.
struct CpuCall {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 1, Dv = 1;
  const float *Q = nullptr, *K = nullptr, *V = nullptr;
  float *O = nullptr, *LSE = nullptr;
  int32_t qOffset = 0;
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<double>>> tensors;
  std::map<std::string, double> scalars;
};
llvm::Error invokeCpuKernel(mlir::ExecutionEngine &engine, llvm::StringRef kernelName,
                            const std::vector<CpuParam> &params, const CpuCall &call);

} // namespace attnc::pipeline

#endif // ATTNC_PIPELINE_CPUPIPELINE_H
