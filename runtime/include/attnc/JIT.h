//===- JIT.h - attnc's JIT: compiler + light runtime ------------*- C++ -*-===//
//
//   auto c = attnc::Compiler::create();
//   if (auto s = c->loadSource("lib/causal.attn"); !s) ... s.message()
//   attnc::KernelSpec spec; spec.dtype = "f32"; spec.headDim = 64;
//   auto k = c->getKernel("causal_attention", spec);   // compiles or hits cache
//   attnc::rt::LaunchArgs args; args.q = &q; ...; args.params["W"] = ...;
//   if (auto s = (*k)->launch(args); !s) ... s.message()
//
//   spec.dtype = "bf16"; spec.arch = "";               // CUDA: the GPU's arch
//   auto g = c->getCudaKernel("causal_attention", spec); // needs a GPU
//   auto a = c->compileCudaArtifact("causal_attention", spec); // PTX + metadata,
//                                                      // no GPU if arch is set
//
// Kernels specialize on (definition, target, dtype, head dims, tiles, const
// params, and for CUDA the GPU arch); everything in LaunchArgs (shapes,
// q_offset, runtime scalars and tensors) is runtime and never recompiles.
// Kernels are cached in memory and on disk under $ATTNC_CACHE_DIR (default
// ~/.cache/attnc), keyed by a SHA-256 of the canonical IR + specialization +
// target + host CPU or GPU arch + compiler version (docs/cpu-runtime.md,
// docs/cuda.md).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_JIT_H
#define ATTNC_JIT_H

#include "attnc/Runtime/Cuda.h"
#include "attnc/Runtime/Runtime.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace mlir {
class MLIRContext;
} // namespace mlir

namespace attnc {
namespace dsl {
class Program;
} // namespace dsl

struct KernelSpec {
  /// "cpu" (getKernel) or "cuda" (getCudaKernel, compileCudaArtifact); empty:
  /// the target of the call.
  std::string target;
  /// Q/K/V element type: f32, bf16, f16 on the CPU; bf16, f16 on CUDA.
  std::string dtype = "f32";
  int64_t headDim = 128;
  int64_t headDimV = 0; // 0: headDim
  /// Values of the kernel's `const` parameters (specialize the kernel).
  std::map<std::string, std::string> consts;
  /// CPU: query rows per work item / keys per KV tile; CUDA: query rows per
  /// CTA / keys per KV tile. 0: the target pipeline's defaults
  /// (pipeline::CpuOptions, tuned per machine class; pipeline::CudaOptions).
  int64_t tileQ = 0, tileK = 0;
  /// CUDA: the GPU architecture to compile for (sm_80, sm_90a, ...). Empty:
  /// device 0's (rt::deviceArch) at JIT time, which needs a GPU.
  std::string arch;
  /// CPU: read K/V through the kernel's cache policy (launch with
  /// rt::CacheLaunchArgs over an rt::KvCache) instead of plain tensors.
  bool kvCache = false;
};

/// A compiled CUDA kernel that is not loaded: what rt::CudaKernel::load takes
/// (docs/cuda.md). Compiling one needs no GPU.
struct CudaArtifact {
  std::string kernel;   // kernel name
  std::string arch;     // the architecture it was compiled for
  std::string ptx;      // PTX text (`.entry attnc_<kernel>`)
  std::string metadata; // "attnc-cuda-kernel 1" ...
  /// Its cache key; the disk entry is <cacheDir>/<key>.ptx, .ptx.meta, .sum.
  std::string key;
};

struct CacheStats {
  uint64_t memoryHits = 0, diskHits = 0, misses = 0, corrupt = 0;
  /// Wall time of the last request (ms) and how it was served.
  double lastMs = 0;
  std::string lastSource; // "memory", "disk" or "compiled"
};

struct CompilerOptions {
  /// Empty: $ATTNC_CACHE_DIR, else ~/.cache/attnc.
  std::string cacheDir;
  bool diskCache = true;
  std::vector<std::string> importPaths;
};

/// The cache directory CompilerOptions{} resolves to.
std::string defaultCacheDir();

/// What `attnc cache stats` prints: entries on disk and the hit / miss /
/// corrupt events every process recorded in the directory's stats.log.
struct DiskCacheInfo {
  uint64_t entries = 0, bytes = 0, hits = 0, misses = 0, corrupt = 0;
};
DiskCacheInfo diskCacheInfo(const std::string &dir);
/// Removes every entry, temporary and the stats; keeps the directory.
rt::Status clearDiskCache(const std::string &dir);

/// Compiles kernels of an already loaded program through the memory and disk
/// caches. Thread safe (`ctx` is the caller's to serialize).
class KernelCache {
public:
  explicit KernelCache(CompilerOptions options = {});
  ~KernelCache();
  /// A CPU kernel for the host.
  rt::Expected<std::shared_ptr<rt::CpuKernel>> get(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                                   const std::string &name, const KernelSpec &spec,
                                                   std::string *diagnostics = nullptr);
  /// A CUDA kernel's PTX and metadata for `spec.arch` (empty: device 0's,
  /// which then needs a GPU). Loads the CUDA pipeline's dialects into `ctx`.
  rt::Expected<CudaArtifact> getCudaArtifact(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                             const std::string &name, const KernelSpec &spec,
                                             std::string *diagnostics = nullptr);
  /// getCudaArtifact, loaded on the GPU (rt::CudaKernel::load).
  rt::Expected<std::shared_ptr<rt::CudaKernel>>
  getCuda(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &name,
          const KernelSpec &spec, std::string *diagnostics = nullptr);
  CacheStats stats() const;
  const std::string &dir() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// The architecture a CUDA KernelSpec compiles for: `arch` if given (checked:
/// sm_<digits>[a|f]), else device 0's; an error without a GPU.
rt::Expected<std::string> resolveCudaArch(const std::string &arch);

class Compiler {
public:
  static std::unique_ptr<Compiler> create(CompilerOptions options = {});
  ~Compiler();
  /// Loads a DSL file (imports resolve against its directory, the import
  /// paths and lib/). Replaces any previously loaded program.
  rt::Status loadSource(const std::string &path);
  rt::Status loadString(const std::string &text, const std::string &name = "<string>");
  /// A CPU kernel (KernelSpec.target "cpu" or empty).
  rt::Expected<std::shared_ptr<rt::CpuKernel>> getKernel(const std::string &name,
                                                         const KernelSpec &spec = {});
  /// A CUDA kernel (KernelSpec.target "cuda" or empty), compiled for
  /// `spec.arch` or the GPU's and loaded on it. Needs a GPU.
  rt::Expected<std::shared_ptr<rt::CudaKernel>> getCudaKernel(const std::string &name,
                                                              const KernelSpec &spec = {});
  /// The same compilation without loading it: PTX + metadata, through the
  /// same caches. Without a GPU, `spec.arch` must be given.
  rt::Expected<CudaArtifact> compileCudaArtifact(const std::string &name,
                                                 const KernelSpec &spec = {});
  /// Kernels of the loaded program (main file and imports).
  std::vector<std::string> kernelNames() const;
  CacheStats stats() const;
  const std::string &cacheDir() const;

private:
  Compiler() = default;
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace attnc

#endif // ATTNC_JIT_H
