//===- JIT.cpp - attnc's JIT: compiler + light runtime --------------------===//

#include "attnc/JIT.h"

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Pipeline/CpuArtifact.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
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

static std::string sha256Hex(llvm::StringRef data) {
  auto digest = llvm::SHA256::hash(
      llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(data.data()), data.size()));
  return llvm::toHex(digest, /*LowerCase=*/true);
}

/// One line per cache event, appended with O_APPEND (atomic for short
/// writes), so concurrent processes never lose or garble each other's counts.
static void recordEvent(const std::string &dir, const char *event) {
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
static bool writeAtomically(const std::string &path, llvm::StringRef data) {
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

DiskCacheInfo attnc::diskCacheInfo(const std::string &dir) {
  DiskCacheInfo info;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec; it.increment(ec)) {
    llvm::sys::fs::file_status st;
    if (llvm::sys::fs::status(it->path(), st))
      continue;
    info.bytes += st.getSize();
    if (llvm::StringRef(it->path()).ends_with(".so"))
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
    if (p.ends_with(".so") || p.ends_with(".sum") || file == "stats.log" || file.contains(".tmp-"))
      victims.push_back(p.str());
  }
  for (auto &v : victims)
    if (llvm::sys::fs::remove(v))
      return rt::Status::error("cannot remove " + v);
  return rt::Status::ok();
}

KernelCache::KernelCache(CompilerOptions opts) : options(std::move(opts)) {
  cacheDir = options.cacheDir.empty() ? defaultCacheDir() : options.cacheDir;
}

CacheStats KernelCache::stats() const {
  std::lock_guard<std::mutex> l(mutex);
  return counters;
}

rt::Expected<std::shared_ptr<rt::CpuKernel>>
KernelCache::get(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &name,
                 const KernelSpec &spec, std::string *diagnostics) {
  using rt::Status;
  auto start = std::chrono::steady_clock::now();
  auto finish = [&](const char *source) {
    counters.lastMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count();
    counters.lastSource = source;
  };
  if (spec.target != "cpu")
    return Status::error("unknown target '" + spec.target + "' (available: cpu)");
  if (spec.dtype != "f32" && spec.dtype != "bf16" && spec.dtype != "f16")
    return Status::error("dtype must be f32, bf16 or f16, got '" + spec.dtype + "'");
  if (spec.headDim <= 0 || spec.headDimV < 0 || spec.tileQ < 0 || spec.tileK < 0)
    return Status::error("head dims must be positive and tiles non-negative");
  pipeline::CpuOptions defaults;
  int64_t tileQ = spec.tileQ ? spec.tileQ : defaults.tileQ;
  int64_t tileK = spec.tileK ? spec.tileK : defaults.tileK;
  const dsl::KernelDecl *k = prog.lookupKernel(name);
  if (!k)
    return Status::error("no kernel named '" + name + "'");
  if (!k->headDims.empty() && !llvm::is_contained(k->headDims, spec.headDim))
    return Status::error("kernel '" + name + "' is not declared for head_dim " +
                         std::to_string(spec.headDim));

  // The front end and passes report through the diagnostic engine; collect
  // what they say so the caller gets it in the error.
  std::string diagText;
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
    llvm::raw_string_ostream os(diagText);
    os << d.getLocation() << ": " << d << "\n";
    return mlir::success();
  });
  auto fail = [&](const std::string &msg) {
    if (diagnostics)
      *diagnostics = diagText;
    return Status::error(msg + (diagText.empty() ? "" : ":\n" + diagText));
  };

  dsl::MLIRGenOptions genOptions;
  genOptions.kernel = name;
  genOptions.constValues = spec.consts;
  auto module = dsl::mlirGen(ctx, prog, genOptions);
  if (!module || mlir::failed(pipeline::runInlineAndSimplify(*module)))
    return fail("kernel '" + name + "' failed to compile");

  // Key: canonical IR (after inlining + canonicalization, so formatting and
  // unrelated definitions in the source do not matter) + specialization +
  // target + host CPU + compiler version.
  std::string ir;
  {
    llvm::raw_string_ostream os(ir);
    module->print(os);
  }
  int64_t dv = spec.headDimV > 0 ? spec.headDimV : spec.headDim;
  std::string keyText = ir + "\n--\ntarget=cpu dtype=" + spec.dtype +
                        " D=" + std::to_string(spec.headDim) + " Dv=" + std::to_string(dv) +
                        " tq=" + std::to_string(tileQ) + " tk=" + std::to_string(tileK) +
                        "\ncpu=" + pipeline::hostCpuDescription() + "\nversion=" ATTNC_VERSION;
  std::string key = name + "-" + sha256Hex(keyText).substr(0, 32);

  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = memory.find(key); it != memory.end()) {
    ++counters.memoryHits;
    finish("memory");
    return it->second;
  }

  bool disk = options.diskCache;
  if (disk && llvm::sys::fs::create_directories(cacheDir))
    disk = false; // an unwritable cache directory degrades to compiling
  std::string soPath = cacheDir + "/" + key + ".so", sumPath = cacheDir + "/" + key + ".sum";
  if (disk && llvm::sys::fs::exists(soPath)) {
    auto so = llvm::MemoryBuffer::getFile(soPath, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    auto sum = llvm::MemoryBuffer::getFile(sumPath);
    if (so && sum && sha256Hex((*so)->getBuffer()) == (*sum)->getBuffer().trim()) {
      auto kernel = rt::CpuKernel::load(soPath, name);
      if (kernel) {
        ++counters.diskHits;
        recordEvent(cacheDir, "hit");
        memory[key] = *kernel;
        finish("disk");
        return *kernel;
      }
    }
    if (so && sum) {
      // Truncated, flipped, or written by something else: drop it and
      // rebuild. (A .so without its .sum is a writer between its two
      // renames; leave it, the rebuild below overwrites it.)
      ++counters.corrupt;
      recordEvent(cacheDir, "corrupt");
      llvm::sys::fs::remove(soPath);
      llvm::sys::fs::remove(sumPath);
    }
  }

  ++counters.misses;
  if (disk)
    recordEvent(cacheDir, "miss");
  pipeline::CpuOptions cpu;
  cpu.headDim = spec.headDim;
  cpu.headDimV = dv;
  cpu.dtype = spec.dtype;
  cpu.tileQ = tileQ;
  cpu.tileK = tileK;
  auto art = pipeline::compileCpuArtifact(*module, cpu);
  if (!art)
    return fail("kernel '" + name + "': " + llvm::toString(art.takeError()));

  // Link in a private temporary directory, then publish with rename.
  llvm::SmallString<128> tmpDir;
  if (llvm::sys::fs::createUniqueDirectory("attnc-jit", tmpDir))
    return fail("cannot create a temporary directory");
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
      return cleanup(), fail("cannot write " + objPath + ": " + ec.message());
    os << art->object;
  }
  if (auto err = pipeline::linkSharedObject(objPath, tmpSo)) {
    cleanup();
    return fail(llvm::toString(std::move(err)));
  }
  std::string loadPath = tmpSo;
  if (disk) {
    auto so = llvm::MemoryBuffer::getFile(tmpSo, false, false);
    if (so && writeAtomically(soPath, (*so)->getBuffer()) &&
        writeAtomically(sumPath, sha256Hex((*so)->getBuffer()) + "\n"))
      loadPath = soPath;
  }
  auto kernel = rt::CpuKernel::load(loadPath, name);
  cleanup(); // a dlopened file may be unlinked
  if (!kernel)
    return kernel.error();
  memory[key] = *kernel;
  finish("compiled");
  return *kernel;
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
  /// (kernel, specialization) -> kernel for the loaded program: a repeated
  /// getKernel skips MLIRGen and hashing. Cleared when the source changes.
  std::map<std::string, std::shared_ptr<rt::CpuKernel>> memo;
  uint64_t memoHits = 0;
  double memoMs = -1;
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

static rt::Status loadInto(Compiler *, std::unique_ptr<llvm::SourceMgr> &sm,
                           std::unique_ptr<dsl::Program> &program, mlir::MLIRContext &ctx,
                           const CompilerOptions &options, const std::string &path,
                           std::optional<llvm::StringRef> text,
                           std::map<std::string, std::shared_ptr<rt::CpuKernel>> *memo) {
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
  if (memo)
    memo->clear();
  return rt::Status::ok();
}

rt::Status Compiler::loadSource(const std::string &path) {
  std::lock_guard<std::mutex> l(impl->mutex);
  return loadInto(this, impl->sm, impl->program, impl->ctx, impl->options, path, std::nullopt,
                  &impl->memo);
}

rt::Status Compiler::loadString(const std::string &text, const std::string &name) {
  std::lock_guard<std::mutex> l(impl->mutex);
  impl->sourceTexts.push_back(text);
  return loadInto(this, impl->sm, impl->program, impl->ctx, impl->options, name,
                  llvm::StringRef(impl->sourceTexts.back()), &impl->memo);
}

rt::Expected<std::shared_ptr<rt::CpuKernel>> Compiler::getKernel(const std::string &name,
                                                                 const KernelSpec &spec) {
  std::lock_guard<std::mutex> l(impl->mutex);
  if (!impl->program)
    return rt::Status::error("no source loaded (call loadSource or loadString first)");
  // The declared dtypes are the kernel's contract with API users. (KernelCache
  // itself does not check: `attnc run` computes bf16/f16-rounded inputs in f32.)
  if (const dsl::KernelDecl *k = impl->program->lookupKernel(name);
      k && !k->dtypes.empty() &&
      llvm::none_of(k->dtypes, [&](dsl::ElemType t) { return dsl::toString(t) == spec.dtype; }))
    return rt::Status::error("kernel '" + name + "' is not declared for dtype " + spec.dtype);
  auto start = std::chrono::steady_clock::now();
  std::string memoKey = name + "|" + spec.target + "|" + spec.dtype + "|" +
                        std::to_string(spec.headDim) + "|" + std::to_string(spec.headDimV) + "|" +
                        std::to_string(spec.tileQ) + "|" + std::to_string(spec.tileK);
  for (auto &[k, v] : spec.consts)
    memoKey += "|" + k + "=" + v;
  if (auto it = impl->memo.find(memoKey); it != impl->memo.end()) {
    ++impl->memoHits;
    impl->memoMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return it->second;
  }
  impl->memoMs = -1;
  auto kernel = impl->cache.get(impl->ctx, *impl->program, name, spec);
  if (kernel)
    impl->memo[memoKey] = *kernel;
  return kernel;
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
