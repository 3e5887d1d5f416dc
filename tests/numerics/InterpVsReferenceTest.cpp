//===- InterpVsReferenceTest.cpp - lib/ kernels on the interp target ------===//
//
// Every kernel of every lib/*.attn file, run on the `interp` target (MLIRGen
// -> attn passes -> IR interpreter in f32) and compared with the float64
// reference at awkward shapes: lengths that are not multiples of any tile,
// Nq != Nk, GQA, q_offset != 0, rows with no visible key. One test per
// kernel, registered at startup from the files found in the lib directory.
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/DSL/Reference.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Interp/Interpreter.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

#include "LibKernelTests.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace attnc;

namespace {

struct Case {
  int64_t B, Hq, Hkv, Nq, Nk, qOffset;
};

// Lengths 1, 17, 33, 40 are not multiples of any tile size; Hq/Hkv covers
// MHA and GQA 4:1; q_offset covers chunked prefill and decode positions.
const Case kCases[] = {
    {1, 1, 1, 1, 1, 0},   {1, 2, 1, 17, 17, 0}, {2, 4, 1, 17, 33, 16},
    {1, 4, 4, 33, 17, 0}, {1, 2, 2, 5, 40, 35}, {1, 4, 2, 1, 33, 32},
};

double bf16Round(double x) {
  float f = float(x);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7fff + ((bits >> 16) & 1);
  bits &= 0xffff0000u;
  std::memcpy(&f, &bits, 4);
  return f;
}

class KernelNumerics : public ::testing::Test {
public:
  KernelNumerics(std::string file, std::string kernel)
      : file(std::move(file)), kernel(std::move(kernel)) {}

  void TestBody() override {
    mlir::MLIRContext ctx;
    mlir::DialectRegistry registry;
    mlir::attn::registerAttnDialect(registry);
    ctx.appendDialectRegistry(registry);
    ctx.loadAllAvailableDialects();
    llvm::SourceMgr sm;
    std::string diagText;
    llvm::raw_string_ostream diagOS(diagText);
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, diagOS);
    auto prog = dsl::loadProgram(sm, ctx, file, dsl::FrontendOptions{});
    ASSERT_TRUE(prog) << diagText;
    const dsl::KernelDecl *k = prog->lookupKernel(kernel);
    ASSERT_TRUE(k);

    dsl::MLIRGenOptions options;
    options.kernel = kernel;
    auto module = dsl::mlirGen(ctx, *prog, options);
    ASSERT_TRUE(module) << diagText;
    ASSERT_TRUE(mlir::succeeded(pipeline::runInlineAndSimplify(*module))) << diagText;
    mlir::attn::KernelOp op;
    module->walk([&](mlir::attn::KernelOp x) { op = x; });
    ASSERT_TRUE(op);

    int64_t D = k->headDims.empty() ? 32 : k->headDims.front();
    bool bf16 = llvm::is_contained(k->dtypes, dsl::ElemType::BF16);
    bool f32 = llvm::is_contained(k->dtypes, dsl::ElemType::F32);
    unsigned ran = 0;
    for (const Case &c : kCases) {
      for (bool useBF16 : {false, true}) {
        if ((useBF16 && !bf16) || (!useBF16 && !f32))
          continue;
        SCOPED_TRACE(testing::Message()
                     << "B=" << c.B << " Hq=" << c.Hq << " Hkv=" << c.Hkv << " Nq=" << c.Nq
                     << " Nk=" << c.Nk << " D=" << D << " q_offset=" << c.qOffset
                     << (useBF16 ? " bf16" : " f32"));
        reference::Shape shape{c.B, c.Hq, c.Hkv, c.Nq, c.Nk, D, D};
        auto bindings = reference::parseBindings(*k, shape, {}, /*seed=*/7, c.qOffset);
        ASSERT_TRUE(bool(bindings)) << llvm::toString(bindings.takeError());
        bindings->qOffset = c.qOffset;

        std::mt19937_64 rng(c.Nq * 131 + c.Nk);
        std::normal_distribution<double> normal(0.0, 1.0);
        auto random = [&](size_t n) {
          std::vector<double> v(n);
          for (auto &x : v)
            x = useBF16 ? bf16Round(normal(rng)) : double(float(normal(rng)));
          return v;
        };
        auto Q = random(c.B * c.Hq * c.Nq * D);
        auto K = random(c.B * c.Hkv * c.Nk * D);
        auto V = random(c.B * c.Hkv * c.Nk * D);

        auto ref = reference::evaluate(*k, shape, Q.data(), K.data(), V.data(), *bindings);
        ASSERT_TRUE(bool(ref)) << llvm::toString(ref.takeError());

        std::vector<float> q(Q.begin(), Q.end()), kk(K.begin(), K.end()), v(V.begin(), V.end());
        interp::Inputs in;
        in.Q = q.data();
        in.K = kk.data();
        in.V = v.data();
        in.qOffset = c.qOffset;
        for (auto &[name, t] : bindings->tensors)
          in.tensors[name] = interp::Tensor{t.dims, t.data};
        in.scalars = bindings->scalars;
        auto out = interp::run(op, {c.B, c.Hq, c.Hkv, c.Nq, c.Nk, D, D}, in);
        ASSERT_TRUE(bool(out)) << llvm::toString(out.takeError());

        std::vector<double> O(out->O.begin(), out->O.end()), LSE(out->LSE.begin(), out->LSE.end());
        // The inputs are identical; only f32 vs f64 arithmetic differs.
        numerics::expectMatchesReference(O, LSE, *ref, D, 1e-5);
        ++ran;
      }
    }
    EXPECT_GT(ran, 0u) << "kernel declares neither f32 nor bf16";
  }

private:
  std::string file, kernel;
};

} // namespace

int main(int argc, char **argv) {
  return numerics::runLibKernelTests(argc, argv, "InterpVsReference",
                                     [](std::string file, std::string kernel) -> ::testing::Test * {
                                       return new KernelNumerics(std::move(file), std::move(kernel));
                                     });
}
