//===- TestUtil.h - Helpers shared by the unit tests ------------*- C++ -*-===//

#ifndef ATTNC_TESTS_UNIT_TESTUTIL_H
#define ATTNC_TESTS_UNIT_TESTUTIL_H

#include "attnc/DSL/Frontend.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <string>

namespace attnc::test {

/// A DSL program loaded from a string, with every diagnostic printed to
/// `diagnostics` (as `test.attn:L:C: error: ...` plus the source line).
struct Loaded {
  mlir::MLIRContext ctx;
  llvm::SourceMgr sm;
  std::string diagnostics;
  std::unique_ptr<dsl::Program> program;

  explicit Loaded(llvm::StringRef source) {
    llvm::raw_string_ostream os(diagnostics);
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, os);
    program = dsl::loadProgram(sm, ctx, "test.attn", dsl::FrontendOptions{{}, false}, source);
  }

  bool ok() const { return program != nullptr; }
  const dsl::KernelDecl *kernel(llvm::StringRef name) const {
    return program ? program->lookupKernel(name) : nullptr;
  }
  const dsl::DefDecl *def(llvm::StringRef name) const {
    return program ? program->lookupDef(name) : nullptr;
  }
};

} // namespace attnc::test

#endif // ATTNC_TESTS_UNIT_TESTUTIL_H
