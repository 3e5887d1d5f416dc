//===- LibKernelTests.h - Shared driver of the numerics suites --*- C++ -*-===//
//
// Every numerics suite runs each kernel of each lib/*.attn file on one target
// and compares it with the float64 reference. This header holds what the
// suites share: registering tests per kernel at startup, and the output
// comparison.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TESTS_NUMERICS_LIBKERNELTESTS_H
#define ATTNC_TESTS_NUMERICS_LIBKERNELTESTS_H

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/Reference.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace attnc::numerics {

/// Checks a target's O and LSE against the reference: relative error within
/// `tol`, and fully masked rows exactly O = 0, LSE = -inf on both sides.
inline void expectMatchesReference(const std::vector<double> &O, const std::vector<double> &LSE,
                                   const reference::Output &ref, int64_t Dv, double tol) {
  EXPECT_LE(reference::relativeError(O, ref.O), tol);
  EXPECT_LE(reference::relativeError(LSE, ref.LSE), tol);
  for (size_t r = 0; r < ref.LSE.size(); ++r) {
    bool refMasked = std::isinf(ref.LSE[r]) && ref.LSE[r] < 0;
    bool outMasked = std::isinf(LSE[r]) && LSE[r] < 0;
    ASSERT_EQ(refMasked, outMasked) << "row " << r;
    if (refMasked) {
      for (int64_t d = 0; d < Dv; ++d)
        ASSERT_EQ(O[r * Dv + d], 0.0) << "fully masked row " << r << " must be 0";
    }
  }
}

/// One test of a kernel: a name suffix (empty: the test is named after the
/// kernel alone) and how to make it.
struct KernelTest {
  std::string suffix;
  std::function<::testing::Test *()> make;
};

/// The tests of kernel `k` of `file`; `index` counts the kernels of all lib
/// files in registration order (sorted files, kernels in source order), so
/// suites can rotate parameters over kernels deterministically.
using TestPlanner = std::function<std::vector<KernelTest>(
    const std::string &file, const dsl::KernelDecl &k, unsigned index)>;

/// The lib/*.attn files, sorted.
inline std::vector<std::string> libFiles() { return dsl::stdlibFiles(); }

/// Registers `suite.<file>.<kernel>[.<suffix>]` for every test the planner
/// gives for every kernel of every lib file (a file that does not load
/// becomes a failing test) and runs them.
inline int runLibKernelTests(int argc, char **argv, const char *suite, TestPlanner planner) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string libDir = dsl::stdlibDir().str();
  std::vector<std::string> files = libFiles();
  if (files.empty()) {
    fprintf(stderr, "no .attn files in %s\n", libDir.c_str());
    return 1;
  }
  unsigned index = 0;
  for (const std::string &file : files) {
    mlir::MLIRContext ctx;
    llvm::SourceMgr sm;
    std::string diag;
    llvm::raw_string_ostream os(diag);
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, os);
    auto prog = dsl::loadProgram(sm, ctx, file, dsl::FrontendOptions{});
    std::string stem = llvm::sys::path::stem(file).str();
    if (!prog) {
      struct Fail : ::testing::Test {
        std::string msg;
        void TestBody() override { FAIL() << msg; }
      };
      ::testing::RegisterTest("Lib", (stem + "_loads").c_str(), nullptr, nullptr, __FILE__,
                              __LINE__, [diag]() -> ::testing::Test * {
                                auto *t = new Fail;
                                t->msg = diag;
                                return t;
                              });
      continue;
    }
    for (auto &k : prog->main->kernels) {
      for (KernelTest &t : planner(file, *k, index)) {
        std::string name = stem + "." + k->name + (t.suffix.empty() ? "" : "." + t.suffix);
        ::testing::RegisterTest(suite, name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
                                std::move(t.make));
      }
      ++index;
    }
  }
  return RUN_ALL_TESTS();
}

using TestFactory = std::function<::testing::Test *(std::string file, std::string kernel)>;

/// One test per kernel, named `suite.<file>.<kernel>`.
inline int runLibKernelTests(int argc, char **argv, const char *suite, TestFactory factory) {
  return runLibKernelTests(
      argc, argv, suite,
      TestPlanner([factory](const std::string &file, const dsl::KernelDecl &k, unsigned) {
        std::string name = k.name;
        return std::vector<KernelTest>{{"", [file, name, factory] { return factory(file, name); }}};
      }));
}

} // namespace attnc::numerics

#endif // ATTNC_TESTS_NUMERICS_LIBKERNELTESTS_H
