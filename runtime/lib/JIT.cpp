//===- JIT.cpp - attnc's JIT: compiler + light runtime --------------------===//

#include "attnc/JIT.h"

#include "attnc/CompilerBuildId.h"

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Pipeline/CpuArtifact.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Pipeline/CudaPipeline.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <deque>
#include <fcntl.h>
#include <unistd.h>

using namespace attnc;

std::string attnc::defaultCacheDir() {
  if (auto env = llvm::sys::Process::GetEnv("ATTNC_CACHE_DIR"); env && !env->empty())
    return *env;
  llvm::SmallString<128> home;
  if (auto env = llvm::sys::Process::GetEnv("HOME"))
    home = *env;
  else
    home = "/tmp";
  llvm::sys::path::append(home, ".cache", "attnc");
  return home.str().str();
}

namespace {

std::string sha256Hex(llvm::StringRef data) {
  auto digest = llvm::SHA256::hash(
      llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(data.data()), data.size()));
  return llvm::toHex(digest, /*LowerCase=*/true);
}

/// One line per cache event, appended with O_APPEND (atomic for short
/// writes), so concurrent processes never lose or garble each other's counts.
void recordEvent(const std::string &dir, const char *event) {
  std::string path = dir + "/stats.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0)
    return;
  std::string line = std::string(event) + "\n";
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

/// Writes `data` to `path` atomically: a unique temporary in the same
/// directory, then rename (readers see the old file, the new one or none).
bool writeAtomically(const std::string &path, llvm::StringRef data) {
  llvm::SmallString<128> tmp;
  int fd;
  if (llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%%%", fd, tmp))
    return false;
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << data;
    os.flush();
    if (os.has_error()) {
      os.clear_error();
      llvm::sys::fs::remove(tmp);
      return false;
    }
  }
  if (llvm::sys::fs::rename(tmp, path)) {
    llvm::sys::fs::remove(tmp);
    return false;
  }
  return true;
}

/// Payload files of a disk cache entry, by target.
const char *const kCpuSuffixes[] = {".so"};
const char *const kCudaSuffixes[] = {".ptx", ".ptx.meta"};

/// A disk cache entry: payload files <dir>/<key><suffix> and <key>.sum, the
/// SHA-256 of each payload on its own line, in suffix order. Writers publish
/// the payloads first and the .sum last, each with an atomic rename.
struct DiskEntry {
  std::string base; // <dir>/<key>
  llvm::ArrayRef<const char *> suffixes;

  std::string path(size_t i) const { return base + suffixes[i]; }
  std::string sumPath() const { return base + ".sum"; }

  enum class State { Missing, Found, Corrupt };
  /// Reads the payloads and checks them against the .sum. A first payload
  /// without its .sum is a writer between its renames: Missing, left alone
  /// (the rebuild overwrites it).
  State read(std::vector<std::string> &payloads) const {
    if (!llvm::sys::fs::exists(path(0)))
      return State::Missing;
    auto sum = llvm::MemoryBuffer::getFile(sumPath());
    if (!sum)
      return State::Missing;
    llvm::SmallVector<llvm::StringRef> sums;
    (*sum)->getBuffer().split(sums, '\n', -1, /*KeepEmpty=*/false);
    if (sums.size() != suffixes.size())
      return State::Corrupt;
    payloads.clear();
    for (size_t i = 0; i < suffixes.size(); ++i) {
      auto data = llvm::MemoryBuffer::getFile(path(i), /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
      if (!data || sha256Hex((*data)->getBuffer()) != sums[i].trim())
        return State::Corrupt;
      payloads.push_back((*data)->getBuffer().str());
    }
    return State::Found;
  }

  /// Publishes `payloads` (one per suffix), then the .sum.
  bool write(llvm::ArrayRef<llvm::StringRef> payloads) const {
    std::string sums;
    for (size_t i = 0; i < suffixes.size(); ++i) {
      if (!writeAtomically(path(i), payloads[i]))
        return false;
      sums += sha256Hex(payloads[i]) + "\n";
    }
    return writeAtomically(sumPath(), sums);
  }

  void remove() const {
    for (size_t i = 0; i < suffixes.size(); ++i)
      llvm::sys::fs::remove(path(i));
    llvm::sys::fs::remove(sumPath());
  }
};

/// One kernel's front half: MLIRGen + inline + canonicalize, its cache key,
/// and everything the diagnostic engine says while the Build is alive (the
/// caller gets it in the error).
class Build {
public:
  Build(mlir::MLIRContext &ctx, std::string *diagnostics)
      : ctx(ctx), diagnostics(diagnostics), handler(&ctx, [this](mlir::Diagnostic &d) {
          llvm::raw_string_ostream os(text);
          os << d.getLocation() << ": " << d << "\n";
          return mlir::success();
        }) {}

  /// Generates kernel `name` specialized with `spec`'s consts. The key hashes
  /// the canonical IR (after inlining and canonicalization, so formatting and
  /// unrelated definitions in the source do not matter) with `specText` (the
  /// rest of the specialization: target, dtype, dims, tiles, host CPU or GPU
  /// arch) and the compiler version.
  rt::Status generate(const dsl::Program &prog, const std::string &name, const KernelSpec &spec,
                      const std::string &specText) {
    const dsl::KernelDecl *k = prog.lookupKernel(name);
    if (!k)
      return rt::Status::error("no kernel named '" + name + "'");
    if (!k->headDims.empty() && !llvm::is_contained(k->headDims, spec.headDim))
      return rt::Status::error("kernel '" + name + "' is not declared for head_dim " +
                               std::to_string(spec.headDim));
    dsl::MLIRGenOptions genOptions;
    genOptions.kernel = name;
    genOptions.constValues = spec.consts;
    module = dsl::mlirGen(ctx, prog, genOptions);
    if (!module || mlir::failed(pipeline::runInlineAndSimplify(*module)))
      return fail("kernel '" + name + "' failed to compile");
    std::string ir;
    {
      llvm::raw_string_ostream os(ir);
      module->print(os);
    }
    // The build id (a hash of the compiler's sources) keeps a rebuilt
    // compiler from hitting kernels an older lowering cached.
    key = name + "-" +
          sha256Hex(ir + "\n--\n" + specText + "\nversion=" ATTNC_VERSION +
                    "\nbuild=" ATTNC_COMPILER_BUILD_ID)
              .substr(0, 32);
    return rt::Status::ok();
  }

  rt::Status fail(const std::string &msg) {
    if (diagnostics)
      *diagnostics = text;
    return rt::Status::error(msg + (text.empty() ? "" : ":\n" + text));
  }

  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::string key;

private:
  mlir::MLIRContext &ctx;
  std::string *diagnostics;
  std::string text;
  mlir::ScopedDiagnosticHandler handler;
};

rt::Status checkDims(const KernelSpec &spec) {
  if (spec.headDim <= 0 || spec.headDimV < 0 || spec.tileQ < 0 || spec.tileK < 0)
    return rt::Status::error("head dims must be positive and tiles non-negative");
  return rt::Status::ok();
}

/// `spec.target` is empty or the call's (`target`).
rt::Status checkTarget(const KernelSpec &spec, llvm::StringRef target) {
  if (spec.target.empty() || spec.target == target)
    return rt::Status::ok();
  if (spec.target == "cpu")
    return rt::Status::error("KernelSpec.target is 'cpu': getCudaKernel and compileCudaArtifact "
                             "compile for cuda (getKernel compiles for the CPU)");
  if (spec.target == "cuda")
    return rt::Status::error("KernelSpec.target is 'cuda': getKernel compiles for the CPU (use "
                             "getCudaKernel or compileCudaArtifact)");
  return rt::Status::error("unknown target '" + spec.target + "' (available: cpu, cuda)");
}

/// Loading a CUDA kernel needs the driver and a device.
rt::Status needsGpu(const std::string &name) {
  std::string why;
  if (rt::cudaAvailable(&why))
    return rt::Status::ok();
  return rt::Status::error("CUDA kernel '" + name + "' needs a GPU: " + why +
                           " (compileCudaArtifact compiles without one, given an arch)");
}

} // namespace

DiskCacheInfo attnc::diskCacheInfo(const std::string &dir) {
  DiskCacheInfo info;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec; it.increment(ec)) {
    llvm::sys::fs::file_status st;
    if (llvm::sys::fs::status(it->path(), st))
      continue;
    info.bytes += st.getSize();
    // One .sum per published entry, whatever its target.
    if (llvm::StringRef(it->path()).ends_with(".sum"))
      ++info.entries;
  }
  if (auto log = llvm::MemoryBuffer::getFile(dir + "/stats.log")) {
    llvm::SmallVector<llvm::StringRef> lines;
    (*log)->getBuffer().split(lines, '\n', -1, false);
    for (auto l : lines) {
      info.hits += l == "hit";
      info.misses += l == "miss";
      info.corrupt += l == "corrupt";
    }
  }
  return info;
}

rt::Status attnc::clearDiskCache(const std::string &dir) {
  std::error_code ec;
  std::vector<std::string> victims;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec; it.increment(ec)) {
    llvm::StringRef p = it->path();
    llvm::StringRef file = llvm::sys::path::filename(p);
    bool payload = llvm::any_of(llvm::concat<const char *const>(kCpuSuffixes, kCudaSuffixes),
                                [&](const char *suffix) { return p.ends_with(suffix); });
    if (payload || p.ends_with(".sum") || file == "stats.log" || file.contains(".tmp-"))
      victims.push_back(p.str());
  }
  for (auto &v : victims)
    if (llvm::sys::fs::remove(v))
      return rt::Status::error("cannot remove " + v);
  return rt::Status::ok();
}

rt::Expected<std::string> attnc::resolveCudaArch(const std::string &arch) {
  if (!arch.empty()) {
    if (!llvm::Regex("^sm_[0-9]+[af]?$").match(arch))
      return rt::Status::error("CUDA arch must be sm_<version>[a|f] (e.g. sm_80, sm_90a), got '" +
                               arch + "'");
    return arch;
  }
  std::string why;
  if (!rt::cudaAvailable(&why))
    return rt::Status::error("KernelSpec.arch is empty, which means the GPU's architecture, but "
                             "there is no usable GPU (" +
                             why + "); give an arch (e.g. sm_90a) to compile without one");
  return rt::deviceArch(0);
}

//===----------------------------------------------------------------------===//
// KernelCache
//===----------------------------------------------------------------------===//

struct KernelCache::Impl {
  explicit Impl(CompilerOptions o) : options(std::move(o)) {
    dir = options.cacheDir.empty() ? defaultCacheDir() : options.cacheDir;
  }

  CompilerOptions options;
  std::string dir;
  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<rt::CpuKernel>> cpuKernels;
  std::map<std::string, CudaArtifact> cudaArtifacts;
  std::map<std::string, std::shared_ptr<rt::CudaKernel>> cudaKernels;
  CacheStats counters;

  using Clock = std::chrono::steady_clock;
  void finish(Clock::time_point start, const char *source) {
    counters.lastMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    counters.lastSource = source;
  }

  /// The disk cache is on and its directory exists (an unwritable directory
  /// degrades to compiling).
  bool diskEnabled() const { return options.diskCache && !llvm::sys::fs::create_directories(dir); }
  DiskEntry entry(const std::string &key, llvm::ArrayRef<const char *> suffixes) const {
    return DiskEntry{dir + "/" + key, suffixes};
  }

  /// Looks `e` up on disk. `accept` takes a found entry's payloads (false:
  /// they are unusable). Counts and records the hit, or the corrupt entry
  /// (then removed: truncated, flipped, or written by something else).
  bool fromDisk(const DiskEntry &e, llvm::function_ref<bool(std::vector<std::string> &)> accept) {
    std::vector<std::string> payloads;
    DiskEntry::State state = e.read(payloads);
    if (state == DiskEntry::State::Missing)
      return false;
    if (state == DiskEntry::State::Found && accept(payloads)) {
      ++counters.diskHits;
      recordEvent(dir, "hit");
      return true;
    }
    ++counters.corrupt;
    recordEvent(dir, "corrupt");
    e.remove();
    return false;
  }

  void countMiss(bool disk) {
    ++counters.misses;
    if (disk)
      recordEvent(dir, "miss");
  }

  /// KernelCache::getCudaArtifact with the mutex held; `source` receives how
  /// it was served.
  rt::Expected<CudaArtifact> cudaArtifact(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                          const std::string &name, const KernelSpec &spec,
                                          std::string *diagnostics, const char *&source);
};

KernelCache::KernelCache(CompilerOptions options)
    : impl(std::make_unique<Impl>(std::move(options))) {}
KernelCache::~KernelCache() = default;

CacheStats KernelCache::stats() const {
  std::lock_guard<std::mutex> l(impl->mutex);
  return impl->counters;
}

const std::string &KernelCache::dir() const { return impl->dir; }

rt::Expected<std::shared_ptr<rt::CpuKernel>>
KernelCache::get(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &name,
                 const KernelSpec &spec, std::string *diagnostics) {
  using rt::Status;
  auto start = Impl::Clock::now();
  if (Status s = checkTarget(spec, "cpu"); !s)
    return s;
  if (spec.dtype != "f32" && spec.dtype != "bf16" && spec.dtype != "f16")
    return Status::error("dtype must be f32, bf16 or f16, got '" + spec.dtype + "'");
  if (Status s = checkDims(spec); !s)
    return s;
  pipeline::CpuOptions cpu;
  cpu.headDim = spec.headDim;
  cpu.headDimV = spec.headDimV > 0 ? spec.headDimV : spec.headDim;
  cpu.dtype = spec.dtype;
  if (spec.tileQ)
    cpu.tileQ = spec.tileQ;
  if (spec.tileK)
    cpu.tileK = spec.tileK;
  cpu.kvCache = spec.kvCache;
  // Code for this host (the cache key holds its features).
  cpu.bf16Dot = pipeline::hostHasAvx512Bf16();
  Build build(ctx, diagnostics);
  std::string specText = "target=cpu dtype=" + spec.dtype + " D=" + std::to_string(cpu.headDim) +
                         " Dv=" + std::to_string(cpu.headDimV) +
                         " tq=" + std::to_string(cpu.tileQ) + " tk=" + std::to_string(cpu.tileK) +
                         (spec.kvCache ? " kvcache" : "") +
                         "\ncpu=" + pipeline::hostCpuDescription();
  if (Status s = build.generate(prog, name, spec, specText); !s)
    return s;
  const std::string &key = build.key;

  std::lock_guard<std::mutex> lock(impl->mutex);
  if (auto it = impl->cpuKernels.find(key); it != impl->cpuKernels.end()) {
    ++impl->counters.memoryHits;
    impl->finish(start, "memory");
    return it->second;
  }

  bool disk = impl->diskEnabled();
  DiskEntry entry = impl->entry(key, kCpuSuffixes);
  std::shared_ptr<rt::CpuKernel> kernel;
  if (disk && impl->fromDisk(entry, [&](std::vector<std::string> &) {
        auto loaded = rt::CpuKernel::load(entry.path(0), name);
        if (loaded)
          kernel = *loaded;
        return bool(loaded);
      })) {
    impl->cpuKernels[key] = kernel;
    impl->finish(start, "disk");
    return kernel;
  }

  impl->countMiss(disk);
  auto art = pipeline::compileCpuArtifact(*build.module, cpu);
  if (!art)
    return build.fail("kernel '" + name + "': " + llvm::toString(art.takeError()));

  // Link in a private temporary directory, then publish with rename.
  llvm::SmallString<128> tmpDir;
  if (llvm::sys::fs::createUniqueDirectory("attnc-jit", tmpDir))
    return build.fail("cannot create a temporary directory");
  std::string objPath = (tmpDir + "/" + key + ".o").str();
  std::string tmpSo = (tmpDir + "/" + key + ".so").str();
  auto cleanup = [&] {
    llvm::sys::fs::remove(objPath);
    llvm::sys::fs::remove(tmpSo);
    llvm::sys::fs::remove(tmpDir);
  };
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objPath, ec);
    if (ec)
      return cleanup(), build.fail("cannot write " + objPath + ": " + ec.message());
    os << art->object;
  }
  if (auto err = pipeline::linkSharedObject(objPath, tmpSo)) {
    cleanup();
    return build.fail(llvm::toString(std::move(err)));
  }
  std::string loadPath = tmpSo;
  if (disk) {
    auto so = llvm::MemoryBuffer::getFile(tmpSo, false, false);
    if (so && entry.write({(*so)->getBuffer()}))
      loadPath = entry.path(0);
  }
  auto loaded = rt::CpuKernel::load(loadPath, name);
  cleanup(); // a dlopened file may be unlinked
  if (!loaded)
    return loaded.error();
  impl->cpuKernels[key] = *loaded;
  impl->finish(start, "compiled");
  return *loaded;
}

rt::Expected<CudaArtifact>
KernelCache::Impl::cudaArtifact(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                const std::string &name, const KernelSpec &spec,
                                std::string *diagnostics, const char *&source) {
  using rt::Status;
  if (Status s = checkTarget(spec, "cuda"); !s)
    return s;
  if (spec.dtype != "bf16" && spec.dtype != "f16")
    return Status::error("CUDA kernels take dtype bf16 or f16 (f32 accumulation), got '" +
                         spec.dtype + "'");
  if (Status s = checkDims(spec); !s)
    return s;
  auto arch = resolveCudaArch(spec.arch);
  if (!arch)
    return arch.error();
  pipeline::CudaOptions cuda;
  cuda.headDim = spec.headDim;
  cuda.headDimV = spec.headDimV > 0 ? spec.headDimV : spec.headDim;
  cuda.dtype = spec.dtype;
  cuda.arch = *arch;
  cuda.blockQ = spec.tileQ;
  cuda.blockK = spec.tileK;
  cuda.kvCache = spec.kvCache;
  // The tiles the kernel gets (0: the measured defaults for its head dims).
  cuda = pipeline::tileDefaults(cuda);
  Build build(ctx, diagnostics);
  // Every pipeline::CudaOptions field that shapes the code belongs here.
  std::string specText =
      "target=cuda arch=" + cuda.arch + " dtype=" + cuda.dtype +
      " D=" + std::to_string(cuda.headDim) + " Dv=" + std::to_string(cuda.headDimV) +
      " bq=" + std::to_string(cuda.blockQ) + " bk=" + std::to_string(cuda.blockK) +
      " wm=" + std::to_string(cuda.warpMTiles) + " st=" + std::to_string(cuda.stages) +
      " mma=" + cuda.mma + (cuda.wgmmaQInRegs ? " qregs" : "") +
      (cuda.classChunk ? " chunk=" + std::to_string(cuda.classChunk) : "") +
      (cuda.partialVote ? " vote" : "") + (cuda.kvCache ? " kvcache" : "") + " O" +
      std::to_string(cuda.optLevel);
  if (Status s = build.generate(prog, name, spec, specText); !s)
    return s;
  const std::string &key = build.key;

  if (auto it = cudaArtifacts.find(key); it != cudaArtifacts.end()) {
    ++counters.memoryHits;
    source = "memory";
    return it->second;
  }
  CudaArtifact art;
  art.kernel = name;
  art.arch = cuda.arch;
  art.key = key;
  bool disk = diskEnabled();
  DiskEntry entry = this->entry(key, kCudaSuffixes);
  if (disk && fromDisk(entry, [&](std::vector<std::string> &payloads) {
        art.ptx = std::move(payloads[0]);
        art.metadata = std::move(payloads[1]);
        return true;
      })) {
    cudaArtifacts[key] = art;
    source = "disk";
    return art;
  }

  countMiss(disk);
  // The CUDA pipeline's dialects and translations (a no-op once loaded).
  mlir::DialectRegistry registry;
  pipeline::registerCudaDialects(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
  auto compiled = pipeline::compileCudaArtifact(*build.module, cuda);
  if (!compiled)
    return build.fail("kernel '" + name + "': " + llvm::toString(compiled.takeError()));
  art.ptx = std::move(compiled->ptx);
  art.metadata = std::move(compiled->metadata);
  if (disk)
    (void)entry.write({art.ptx, art.metadata}); // unwritable: served from memory
  cudaArtifacts[key] = art;
  source = "compiled";
  return art;
}

rt::Expected<CudaArtifact> KernelCache::getCudaArtifact(mlir::MLIRContext &ctx,
                                                        const dsl::Program &prog,
                                                        const std::string &name,
                                                        const KernelSpec &spec,
                                                        std::string *diagnostics) {
  auto start = Impl::Clock::now();
  std::lock_guard<std::mutex> lock(impl->mutex);
  const char *source = nullptr;
  auto art = impl->cudaArtifact(ctx, prog, name, spec, diagnostics, source);
  if (art)
    impl->finish(start, source);
  return art;
}

rt::Expected<std::shared_ptr<rt::CudaKernel>>
KernelCache::getCuda(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &name,
                     const KernelSpec &spec, std::string *diagnostics) {
  auto start = Impl::Clock::now();
  if (rt::Status s = needsGpu(name); !s)
    return s;
  std::lock_guard<std::mutex> lock(impl->mutex);
  const char *source = nullptr;
  auto art = impl->cudaArtifact(ctx, prog, name, spec, diagnostics, source);
  if (!art)
    return art.error();
  auto &kernel = impl->cudaKernels[art->key];
  if (!kernel) {
    auto loaded = rt::CudaKernel::load(art->ptx, art->metadata);
    if (!loaded) {
      impl->cudaKernels.erase(art->key);
      return rt::Status::error("kernel '" + name + "' (" + art->arch + "): " + loaded.message());
    }
    kernel = *loaded;
  }
  impl->finish(start, source);
  return kernel;
}

//===----------------------------------------------------------------------===//
// Compiler
//===----------------------------------------------------------------------===//

struct Compiler::Impl {
  explicit Impl(CompilerOptions o) : options(o), cache(o) {}
  CompilerOptions options;
  mlir::MLIRContext ctx;
  KernelCache cache;
  std::unique_ptr<llvm::SourceMgr> sm;
  std::unique_ptr<dsl::Program> program;
  /// Texts given to loadString. Kept for the Compiler's lifetime: a failed
  /// load keeps the previous program, which may point into its text.
  std::deque<std::string> sourceTexts;
  std::mutex mutex;
  /// (kernel, specialization) -> result for the loaded program: a repeated
  /// request skips MLIRGen and hashing. Cleared when the source changes.
  std::map<std::string, std::shared_ptr<rt::CpuKernel>> cpuMemo;
  std::map<std::string, std::shared_ptr<rt::CudaKernel>> cudaMemo;
  std::map<std::string, CudaArtifact> artifactMemo;
  uint64_t memoHits = 0;
  double memoMs = -1;

  rt::Status load(const std::string &path, std::optional<llvm::StringRef> text);

  /// `memo[name + spec + arch]`, else `get()` (stored when it succeeds).
  /// Holds the mutex; checks the program and the kernel's declared dtypes.
  template <typename T>
  rt::Expected<T> memoized(std::map<std::string, T> &memo, const std::string &name,
                           const KernelSpec &spec, const std::string &arch,
                           llvm::function_ref<rt::Expected<T>()> get);
};

std::unique_ptr<Compiler> Compiler::create(CompilerOptions options) {
  std::unique_ptr<Compiler> c(new Compiler());
  c->impl = std::make_unique<Impl>(options);
  mlir::DialectRegistry registry;
  mlir::attn::registerAttnDialect(registry);
  pipeline::registerCpuDialects(registry);
  c->impl->ctx.appendDialectRegistry(registry);
  c->impl->ctx.loadAllAvailableDialects();
  return c;
}

Compiler::~Compiler() = default;

rt::Status Compiler::Impl::load(const std::string &path, std::optional<llvm::StringRef> text) {
  auto newSm = std::make_unique<llvm::SourceMgr>();
  std::string diagText;
  llvm::raw_string_ostream os(diagText);
  std::unique_ptr<dsl::Program> prog;
  {
    mlir::SourceMgrDiagnosticHandler handler(*newSm, &ctx, os);
    dsl::FrontendOptions fe;
    fe.importPaths = options.importPaths;
    prog = dsl::loadProgram(*newSm, ctx, path, fe, text);
  }
  if (!prog)
    return rt::Status::error("cannot load '" + path + "'" +
                             (diagText.empty() ? "" : ":\n" + diagText));
  sm = std::move(newSm);
  program = std::move(prog);
  cpuMemo.clear();
  cudaMemo.clear();
  artifactMemo.clear();
  return rt::Status::ok();
}

rt::Status Compiler::loadSource(const std::string &path) {
  std::lock_guard<std::mutex> l(impl->mutex);
  return impl->load(path, std::nullopt);
}

rt::Status Compiler::loadString(const std::string &text, const std::string &name) {
  std::lock_guard<std::mutex> l(impl->mutex);
  impl->sourceTexts.push_back(text);
  return impl->load(name, llvm::StringRef(impl->sourceTexts.back()));
}

template <typename T>
rt::Expected<T> Compiler::Impl::memoized(std::map<std::string, T> &memo, const std::string &name,
                                         const KernelSpec &spec, const std::string &arch,
                                         llvm::function_ref<rt::Expected<T>()> get) {
  std::lock_guard<std::mutex> l(mutex);
  if (!program)
    return rt::Status::error("no source loaded (call loadSource or loadString first)");
  // The declared dtypes are the kernel's contract with API users. (KernelCache
  // itself does not check: `attnc run` computes bf16/f16-rounded inputs in f32.)
  if (const dsl::KernelDecl *k = program->lookupKernel(name);
      k && !k->dtypes.empty() &&
      llvm::none_of(k->dtypes, [&](dsl::ElemType t) { return dsl::toString(t) == spec.dtype; }))
    return rt::Status::error("kernel '" + name + "' is not declared for dtype " + spec.dtype);
  auto start = std::chrono::steady_clock::now();
  std::string key = name + "|" + spec.target + "|" + arch + "|" + spec.dtype + "|" +
                    std::to_string(spec.headDim) + "|" + std::to_string(spec.headDimV) + "|" +
                    std::to_string(spec.tileQ) + "|" + std::to_string(spec.tileK);
  for (auto &[k, v] : spec.consts)
    key += "|" + k + "=" + v;
  if (auto it = memo.find(key); it != memo.end()) {
    ++memoHits;
    memoMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return it->second;
  }
  memoMs = -1;
  auto result = get();
  if (result)
    memo[key] = *result;
  return result;
}

rt::Expected<std::shared_ptr<rt::CpuKernel>> Compiler::getKernel(const std::string &name,
                                                                 const KernelSpec &spec) {
  return impl->memoized<std::shared_ptr<rt::CpuKernel>>(impl->cpuMemo, name, spec, "", [&] {
    return impl->cache.get(impl->ctx, *impl->program, name, spec);
  });
}

rt::Expected<std::shared_ptr<rt::CudaKernel>> Compiler::getCudaKernel(const std::string &name,
                                                                      const KernelSpec &spec) {
  if (rt::Status s = needsGpu(name); !s)
    return s;
  // The memo is keyed by the arch the spec resolves to (the GPU's when empty).
  auto arch = resolveCudaArch(spec.arch);
  if (!arch)
    return arch.error();
  return impl->memoized<std::shared_ptr<rt::CudaKernel>>(impl->cudaMemo, name, spec, *arch, [&] {
    KernelSpec resolved = spec;
    resolved.arch = *arch;
    return impl->cache.getCuda(impl->ctx, *impl->program, name, resolved);
  });
}

rt::Expected<CudaArtifact> Compiler::compileCudaArtifact(const std::string &name,
                                                         const KernelSpec &spec) {
  auto arch = resolveCudaArch(spec.arch);
  if (!arch)
    return arch.error();
  return impl->memoized<CudaArtifact>(impl->artifactMemo, name, spec, *arch, [&] {
    KernelSpec resolved = spec;
    resolved.arch = *arch;
    return impl->cache.getCudaArtifact(impl->ctx, *impl->program, name, resolved);
  });
}

std::vector<std::string> Compiler::kernelNames() const {
  std::lock_guard<std::mutex> l(impl->mutex);
  std::vector<std::string> names;
  if (impl->program)
    for (auto &[name, _] : impl->program->kernels)
      names.push_back(name);
  return names;
}

CacheStats Compiler::stats() const {
  CacheStats s = impl->cache.stats();
  s.memoryHits += impl->memoHits;
  if (impl->memoMs >= 0) {
    s.lastMs = impl->memoMs;
    s.lastSource = "memory";
  }
  return s;
}
const std::string &Compiler::cacheDir() const { return impl->cache.dir(); }
