//===- LoadedProgram.h - A DSL program and its context for tests -*- C++ -*-===//

#ifndef ATTNC_TESTS_ANALYSIS_LOADEDPROGRAM_H
#define ATTNC_TESTS_ANALYSIS_LOADEDPROGRAM_H

#include "attnc/DSL/Frontend.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <optional>
#include <string>

namespace attnc::test {

/// A DSL program loaded from a file (or from `source` when given) in a
/// context with the attn dialects, its diagnostics collected as text.
struct LoadedProgram {
  mlir::MLIRContext ctx;
  llvm::SourceMgr sm;
  std::string diagnostics;
  std::unique_ptr<dsl::Program> program;

  LoadedProgram(const std::string &file, std::optional<llvm::StringRef> source,
                dsl::FrontendOptions options) {
    mlir::DialectRegistry registry;
    mlir::attn::registerAttnDialect(registry);
    ctx.appendDialectRegistry(registry);
    ctx.loadAllAvailableDialects();
    llvm::raw_string_ostream os(diagnostics);
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, os);
    program = dsl::loadProgram(sm, ctx, file, options, source);
  }
};

} // namespace attnc::test

#endif // ATTNC_TESTS_ANALYSIS_LOADEDPROGRAM_H
