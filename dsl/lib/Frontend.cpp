//===- Frontend.cpp - Loading a program and its imports -------------------===//

#include "attnc/DSL/Frontend.h"
#include "Sema.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <set>

using namespace attnc::dsl;

#ifndef ATTNC_LIB_DIR
#define ATTNC_LIB_DIR "lib"
#endif

llvm::StringRef attnc::dsl::stdlibDir() {
  if (const char *env = std::getenv("ATTNC_LIB_DIR"))
    return env;
  return ATTNC_LIB_DIR;
}

std::vector<std::string> attnc::dsl::stdlibFiles() {
  std::error_code ec;
  std::vector<std::string> files;
  for (llvm::sys::fs::directory_iterator it(stdlibDir(), ec), end; it != end && !ec;
       it.increment(ec))
    if (llvm::sys::path::extension(it->path()) == ".attn")
      files.push_back(it->path());
  std::sort(files.begin(), files.end());
  return files;
}

mlir::Location attnc::dsl::toMLIRLoc(mlir::MLIRContext &ctx, const Location &loc) {
  return mlir::FileLineColLoc::get(&ctx, loc.file, loc.line, loc.col);
}

const DefDecl *Program::lookupDef(llvm::StringRef name) const {
  auto it = defs.find(name.str());
  return it == defs.end() ? nullptr : it->second;
}
const KernelDecl *Program::lookupKernel(llvm::StringRef name) const {
  auto it = kernels.find(name.str());
  return it == kernels.end() ? nullptr : it->second;
}
const CacheDecl *Program::lookupCache(llvm::StringRef name) const {
  auto it = caches.find(name.str());
  return it == caches.end() ? nullptr : it->second;
}

namespace {

/// Loads modules depth-first, so an import cycle is a file already on the
/// stack; a file reached twice through different paths is loaded once.
class Loader {
public:
  Loader(llvm::SourceMgr &sm, mlir::MLIRContext &ctx, const FrontendOptions &options,
         Program &prog)
      : sm(sm), ctx(ctx), options(options), prog(prog) {}

  bool load(const std::string &path, std::optional<llvm::StringRef> source,
            const Location *importedAt) {
    std::unique_ptr<llvm::MemoryBuffer> buffer;
    if (source) {
      buffer = llvm::MemoryBuffer::getMemBufferCopy(*source, path);
    } else {
      auto orErr = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
      if (!orErr) {
        auto loc = importedAt ? toMLIRLoc(ctx, *importedAt)
                              : mlir::FileLineColLoc::get(&ctx, path, 0, 0);
        mlir::emitError(loc) << "cannot open '" << path << "': " << orErr.getError().message();
        return false;
      }
      buffer = std::move(*orErr);
    }
    unsigned id = sm.AddNewSourceBuffer(std::move(buffer), llvm::SMLoc());
    std::unique_ptr<Module> mod = parseModule(sm, id, ctx);
    if (!mod)
      return false;
    Module *raw = mod.get();
    prog.modules.push_back(std::move(mod));
    if (!prog.main)
      prog.main = raw;

    bool ok = true;
    stack.push_back(canonical(path));
    for (const ImportDecl &imp : raw->imports) {
      std::string resolved = resolve(imp.path, path);
      if (resolved.empty()) {
        auto diag = mlir::emitError(toMLIRLoc(ctx, imp.loc));
        diag << "cannot find import '" << imp.path << "'";
        if (llvm::sys::path::is_absolute(imp.path))
          diag << " (no such regular file)";
        else
          diag << " (searched next to the importing file"
               << (options.importPaths.empty() ? "" : ", the -I paths")
               << (options.useStdlib ? ", and the standard library" : "") << ")";
        ok = false;
        continue;
      }
      std::string key = canonical(resolved);
      if (llvm::is_contained(stack, key)) {
        auto diag = mlir::emitError(toMLIRLoc(ctx, imp.loc));
        diag << "import cycle: ";
        auto it = llvm::find(stack, key);
        for (; it != stack.end(); ++it)
          diag << llvm::sys::path::filename(*it) << " -> ";
        diag << llvm::sys::path::filename(key);
        ok = false;
        continue;
      }
      if (loaded.count(key))
        continue;
      loaded.insert(key);
      ok &= load(resolved, std::nullopt, &imp.loc);
    }
    stack.pop_back();
    return ok;
  }

  static std::string canonical(const std::string &path) {
    llvm::SmallString<256> real;
    if (!llvm::sys::fs::real_path(path, real))
      return std::string(real);
    return path;
  }

  void markLoaded(const std::string &path) { loaded.insert(canonical(path)); }

private:
  std::string resolve(const std::string &import, const std::string &from) {
    std::vector<std::string> dirs;
    dirs.push_back(std::string(llvm::sys::path::parent_path(from)));
    for (auto &d : options.importPaths)
      dirs.push_back(d);
    if (options.useStdlib)
      dirs.push_back(stdlibDir().str());
    // Only regular files: a device such as /dev/zero or /dev/stdin would
    // never reach end of file, and a directory cannot be read.
    if (llvm::sys::path::is_absolute(import))
      return llvm::sys::fs::is_regular_file(import) ? import : "";
    for (auto &d : dirs) {
      llvm::SmallString<256> candidate(d);
      llvm::sys::path::append(candidate, import);
      if (llvm::sys::fs::is_regular_file(candidate))
        return std::string(candidate);
    }
    return "";
  }

  llvm::SourceMgr &sm;
  mlir::MLIRContext &ctx;
  const FrontendOptions &options;
  Program &prog;
  std::vector<std::string> stack;
  std::set<std::string> loaded;
};

} // namespace

std::unique_ptr<Program> attnc::dsl::loadProgram(llvm::SourceMgr &sm, mlir::MLIRContext &ctx,
                                                 llvm::StringRef path,
                                                 const FrontendOptions &options,
                                                 std::optional<llvm::StringRef> source) {
  auto prog = std::make_unique<Program>();
  Loader loader(sm, ctx, options, *prog);
  loader.markLoaded(path.str());
  if (!loader.load(path.str(), source, nullptr))
    return nullptr;
  if (!runSema(*prog, ctx))
    return nullptr;
  return prog;
}
