//===- Frontend.h - Parse, import and check DSL programs --------*- C++ -*-===//
//
// The front end's entry points. Errors are reported through the MLIR
// diagnostic engine at FileLineColLoc locations; with a
// SourceMgrDiagnosticHandler installed they print as `file:line:col: error:`
// with the source line and a caret.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DSL_FRONTEND_H
#define ATTNC_DSL_FRONTEND_H

#include "attnc/DSL/AST.h"

#include "mlir/IR/Location.h"
#include "llvm/Support/SourceMgr.h"

#include <map>
#include <string>
#include <vector>

namespace mlir {
class MLIRContext;
} // namespace mlir

namespace attnc::dsl {

/// Parses one buffer of `sm` into an AST. Returns null after reporting syntax
/// errors. Never throws.
std::unique_ptr<Module> parseModule(llvm::SourceMgr &sm, unsigned bufferId, mlir::MLIRContext &ctx);

/// All modules of one compilation: the main file and its transitive imports,
/// sharing one namespace of definitions, kernels and cache policies.
class Program {
public:
  std::vector<std::unique_ptr<Module>> modules;
  Module *main = nullptr;
  std::map<std::string, DefDecl *> defs;
  std::map<std::string, KernelDecl *> kernels;
  std::map<std::string, CacheDecl *> caches;

  const DefDecl *lookupDef(llvm::StringRef name) const;
  const KernelDecl *lookupKernel(llvm::StringRef name) const;
  const CacheDecl *lookupCache(llvm::StringRef name) const;
};

struct FrontendOptions {
  /// Searched, in order, after the importing file's own directory.
  std::vector<std::string> importPaths;
  /// Also search the installed standard library (lib/).
  bool useStdlib = true;
};

/// Loads `path` (or, with `source`, the given text under that name), resolves
/// imports and runs Sema. Returns null if any error was reported.
std::unique_ptr<Program> loadProgram(llvm::SourceMgr &sm, mlir::MLIRContext &ctx,
                                     llvm::StringRef path, const FrontendOptions &options,
                                     std::optional<llvm::StringRef> source = std::nullopt);

/// Converts an AST location to an MLIR location.
mlir::Location toMLIRLoc(mlir::MLIRContext &ctx, const Location &loc);

/// Directory of the standard library compiled into the tools.
llvm::StringRef stdlibDir();

/// The standard library's *.attn files, sorted.
std::vector<std::string> stdlibFiles();

} // namespace attnc::dsl

#endif // ATTNC_DSL_FRONTEND_H
