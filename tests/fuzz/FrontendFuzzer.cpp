//===- FrontendFuzzer.cpp - libFuzzer target for the DSL front end --------===//
//
// Feeds arbitrary bytes through the whole front end: parse, imports (only of
// files that do not exist: no -I paths, no standard library), Sema, the AST
// and format printers, and MLIRGen. Diagnostics go to a null stream; only
// crashes, hangs, sanitizer reports and broken invariants are findings.
//
// Invariant checked beyond "does not crash": a program that loads formats
// to text that loads again and formats to the same text (--emit=format is a
// fixed point).
//
// Built as a libFuzzer binary with -DATTNC_BUILD_FUZZER=ON (clang), and as a
// plain corpus replay driver (ReplayMain.cpp) in every build.
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/DSL/Printer.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace attnc;

namespace {

/// A directory that does not exist, so relative imports never find a file.
constexpr const char *kInputName = "/nonexistent-attnc-fuzz/input.attn";

mlir::MLIRContext &context() {
  static mlir::MLIRContext *ctx = [] {
    mlir::DialectRegistry registry;
    mlir::attn::registerAttnDialect(registry);
    auto *c = new mlir::MLIRContext(registry, mlir::MLIRContext::Threading::DISABLED);
    c->loadAllAvailableDialects();
    return c;
  }();
  return *ctx;
}

/// Loads `text`; on success returns its canonical format (and runs the other
/// printers and MLIRGen on it).
std::optional<std::string> compile(llvm::StringRef text, bool gen) {
  mlir::MLIRContext &ctx = context();
  llvm::SourceMgr sm;
  mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, llvm::nulls());
  dsl::FrontendOptions options{{}, false};
  auto prog = dsl::loadProgram(sm, ctx, kInputName, options, text);
  if (!prog)
    return std::nullopt;
  std::string ast, format;
  llvm::raw_string_ostream astOS(ast), formatOS(format);
  dsl::dumpAST(*prog->main, astOS);
  dsl::formatModule(*prog->main, formatOS);
  if (gen) {
    dsl::MLIRGenOptions genOptions;
    auto module = dsl::mlirGen(ctx, *prog, genOptions);
    (void)module;
    // One kernel at a time too: that path reaches imported definitions and
    // per-kernel parameter checks.
    for (auto &kernel : prog->main->kernels) {
      genOptions.kernel = kernel->name;
      auto one = dsl::mlirGen(ctx, *prog, genOptions);
      (void)one;
    }
  }
  return format;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  std::optional<std::string> first = compile(text, /*gen=*/true);
  if (!first)
    return 0;
  std::optional<std::string> second = compile(*first, /*gen=*/false);
  if (!second) {
    std::fprintf(stderr, "--emit=format output does not load again:\n%s\n", first->c_str());
    std::abort();
  }
  std::optional<std::string> third = compile(*second, /*gen=*/false);
  if (!third || *third != *second) {
    std::fprintf(stderr, "--emit=format is not a fixed point:\n%s\n---\n%s\n", second->c_str(),
                 third ? third->c_str() : "<does not load>");
    std::abort();
  }
  return 0;
}
