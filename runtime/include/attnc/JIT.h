//===- JIT.h - attnc's JIT: compiler + light runtime ------------*- C++ -*-===//
//
//   auto c = attnc::Compiler::create();
//   if (auto s = c->loadSource("lib/causal.attn"); !s) ... s.message()
//   attnc::KernelSpec spec; spec.dtype = "f32"; spec.headDim = 64;
//   auto k = c->getKernel("causal_attention", spec);   // compiles or hits cache
//   attnc::rt::LaunchArgs args; args.q = &q; ...; args.params["W"] = ...;
//   if (auto s = (*k)->launch(args); !s) ... s.message()
//
// getKernel specializes on (definition, target, dtype, head dims, const
// params); everything in LaunchArgs (shapes, q_offset, runtime scalars and
// tensors) is runtime and never recompiles. Kernels are cached in memory and
// on disk under $ATTNC_CACHE_DIR (default ~/.cache/attnc), keyed by a SHA-256
// of the canonical IR + specialization + target + host CPU + compiler version
// (docs/cpu-runtime.md).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_JIT_H
#define ATTNC_JIT_H

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
  std::string target = "cpu";
  std::string dtype = "f32"; // Q/K/V element type: f32, bf16, f16
  int64_t headDim = 128;
  int64_t headDimV = 0; // 0: headDim
  /// Values of the kernel's `const` parameters (specialize the kernel).
  std::map<std::string, std::string> consts;
  /// Query rows per work item / keys per KV tile; 0: the compiler's
  /// defaults (pipeline::CpuOptions, tuned per machine class).
  int64_t tileQ = 0, tileK = 0;
};

struct CacheStats {
  uint64_t memoryHits = 0, diskHits = 0, misses = 0, corrupt = 0;
  /// Wall time of the last getKernel (ms) and how it was served.
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
/// caches. Thread safe.
class KernelCache {
public:
  explicit KernelCache(CompilerOptions options = {});
  rt::Expected<std::shared_ptr<rt::CpuKernel>> get(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                                   const std::string &name, const KernelSpec &spec,
                                                   std::string *diagnostics = nullptr);
  CacheStats stats() const;
  const std::string &dir() const { return cacheDir; }

private:
  CompilerOptions options;
  std::string cacheDir;
  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<rt::CpuKernel>> memory;
  CacheStats counters;
};

class Compiler {
public:
  static std::unique_ptr<Compiler> create(CompilerOptions options = {});
  ~Compiler();
  /// Loads a DSL file (imports resolve against its directory, the import
  /// paths and lib/). Replaces any previously loaded program.
  rt::Status loadSource(const std::string &path);
  rt::Status loadString(const std::string &text, const std::string &name = "<string>");
  rt::Expected<std::shared_ptr<rt::CpuKernel>> getKernel(const std::string &name,
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
