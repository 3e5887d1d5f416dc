//===- CpuArtifact.h - CPU kernels as objects / shared objects ---*- C++ -*-===//
//
// The compiler half of the CPU runtime: turns an inlined attn module into a
// relocatable object (AOT, `attnc --emit=obj`) or a shared object that the
// light runtime (runtime/, no MLIR/LLVM) dlopens. Both carry, next to the
// kernel's `_mlir_ciface_*` entry points:
//   - `attnc_<K>_item_packed(void **args)`: the per-work-item entry with its
//     arguments packed as pointers (one uniform C signature whatever the
//     kernel's parameters), so the runtime needs no per-kernel glue;
//   - `attnc_<K>_metadata`: a NUL-terminated text describing the
//     specialization and the runtime parameters (names, types, attn.dims),
//     so that launches can be validated without the compiler.
// docs/cpu-runtime.md documents the format and the ABI.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PIPELINE_CPUARTIFACT_H
#define ATTNC_PIPELINE_CPUARTIFACT_H

#include "attnc/Pipeline/CpuPipeline.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <string>

namespace attnc::pipeline {

struct CpuArtifact {
  std::string kernel;   // kernel name
  std::string metadata; // the text stored in attnc_<K>_metadata
  std::string object;   // ELF relocatable object bytes (PIC)
  std::string header;   // C header declaring the entry points
};

/// `module` is the inlined+simplified attn module holding one kernel.
/// Lowers it (consuming `module`) for the host and emits a PIC object.
llvm::Expected<CpuArtifact> compileCpuArtifact(mlir::ModuleOp module, const CpuOptions &options);

/// Links `objectPath` into the shared object `soPath` with the system C
/// compiler driver (cc, found on PATH at run time).
llvm::Error linkSharedObject(llvm::StringRef objectPath, llvm::StringRef soPath);

/// Host CPU name and features, for cache keys.
std::string hostCpuDescription();

} // namespace attnc::pipeline

#endif // ATTNC_PIPELINE_CPUARTIFACT_H
