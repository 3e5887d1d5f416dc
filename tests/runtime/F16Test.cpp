//===- F16Test.cpp - f16 kernels through the JIT API ----------------------===//
//
// An f16 kernel built with attnc::Compiler and launched on kDLFloat/16
// DLTensors, against the float64 reference (and the f32 kernel on the same
// values), through the memory and the disk cache; and the errors for dtypes
// that do not match the specialization.
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/Reference.h"
#include "attnc/JIT.h"

#include "LaunchBindings.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace attnc;

namespace {

// ALiBi (a tensor parameter) under a causal mask: GQA 2:1, lengths that are
// not multiples of the tiles, q_offset != 0.
const int64_t B = 2, Hq = 4, Hkv = 2, Nq = 37, Nk = 50, D = 64, QOffset = 13;
const char *const kFile = ATTNC_LIB_DIR "/alibi.attn";
const char *const kKernel = "alibi_causal";

/// Inputs drawn in double and rounded to f16, the float64 reference on
/// them, and f32 outputs poisoned with NaN.
struct Problem {
  mlir::MLIRContext ctx;
  llvm::SourceMgr sm;
  std::unique_ptr<dsl::Program> prog;
  const dsl::KernelDecl *decl = nullptr;
  reference::Shape shape{B, Hq, Hkv, Nq, Nk, D, D};
  reference::Bindings bindings;
  std::vector<double> Q, K, V;
  std::vector<char> q16, k16, v16, q32, k32, v32;
  std::vector<int64_t> sq{B, Hq, Nq, D}, sk{B, Hkv, Nk, D}, so{B, Hq, Nq, D}, sl{B, Hq, Nq};
  std::vector<float> O, LSE;
  driver::LaunchBindings params;

  Problem() {
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, llvm::errs());
    prog = dsl::loadProgram(sm, ctx, kFile, dsl::FrontendOptions{});
    if (!prog)
      return;
    decl = prog->lookupKernel(kKernel);
    if (auto b = reference::parseBindings(*decl, shape, {}, /*seed=*/3, QOffset))
      bindings = std::move(*b);
    else
      llvm::consumeError(b.takeError());
    bindings.qOffset = QOffset;
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(0.0, 1.0);
    auto random = [&](size_t n) {
      std::vector<double> v(n);
      for (auto &x : v)
        x = driver::roundToInputType(normal(rng), "f16");
      return v;
    };
    Q = random(B * Hq * Nq * D);
    K = random(B * Hkv * Nk * D);
    V = random(B * Hkv * Nk * D);
    q16 = driver::packInputs(Q, "f16"), k16 = driver::packInputs(K, "f16");
    v16 = driver::packInputs(V, "f16");
    q32 = driver::packInputs(Q, "f32"), k32 = driver::packInputs(K, "f32");
    v32 = driver::packInputs(V, "f32");
  }

  /// Launches `kernel` with Q, K, V viewed as `in` (f16 or f32 data chosen
  /// by the width, the type code as given) and O as `out`.
  rt::Status launch(const rt::CpuKernel &kernel, DLDataType in, DLDataType qType,
                    DLDataType out = {kDLFloat, 32, 1}) {
    O.assign(B * Hq * Nq * D, std::nanf(""));
    LSE.assign(B * Hq * Nq, std::nanf(""));
    bool half = in.bits == 16;
    DLTensor tq = driver::dlView((qType.bits == 16 ? q16 : q32).data(), qType, sq),
             tk = driver::dlView((half ? k16 : k32).data(), in, sk),
             tv = driver::dlView((half ? v16 : v32).data(), in, sk),
             to = driver::dlView(O.data(), out, so),
             tl = driver::dlView(LSE.data(), {kDLFloat, 32, 1}, sl);
    rt::LaunchArgs args;
    args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.lse = &tl;
    args.qOffset = QOffset;
    if (std::string err = params.bind(kernel.info(), bindings, args); !err.empty())
      return rt::Status::error(err);
    return kernel.launch(args);
  }
  rt::Status launch(const rt::CpuKernel &kernel, DLDataType in) { return launch(kernel, in, in); }
};

const DLDataType kF16{kDLFloat, 16, 1}, kBF16{kDLBfloat, 16, 1}, kF32{kDLFloat, 32, 1};

std::shared_ptr<rt::CpuKernel> getKernel(Compiler &c, const std::string &dtype) {
  KernelSpec spec;
  spec.dtype = dtype;
  spec.headDim = D;
  auto k = c.getKernel(kKernel, spec);
  EXPECT_TRUE(bool(k)) << k.message();
  return k ? *k : nullptr;
}

TEST(F16Test, MatchesReference) {
  Problem p;
  ASSERT_TRUE(p.decl);
  auto ref = reference::evaluate(*p.decl, p.shape, p.Q.data(), p.K.data(), p.V.data(), p.bindings);
  ASSERT_TRUE(bool(ref)) << llvm::toString(ref.takeError());

  llvm::SmallString<128> dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("attnc-f16-test", dir));
  llvm::scope_exit removeDir([&] { llvm::sys::fs::remove_directories(dir); });
  CompilerOptions options;
  options.cacheDir = dir.str().str();
  auto c = Compiler::create(options);
  ASSERT_TRUE(c->loadSource(kFile));
  auto f16 = getKernel(*c, "f16");
  ASSERT_TRUE(f16);
  EXPECT_EQ(f16->info().dtype, "f16");
  rt::Status s = p.launch(*f16, kF16);
  ASSERT_TRUE(s) << s.message();
  // Every element written (no NaN left), and within the f32 bound: the
  // reference sees the same f16 values, the kernel computes in f32.
  EXPECT_EQ(llvm::count_if(p.O, [](float x) { return std::isnan(x); }), 0);
  EXPECT_EQ(llvm::count_if(p.LSE, [](float x) { return std::isnan(x); }), 0);
  std::vector<double> O(p.O.begin(), p.O.end()), LSE(p.LSE.begin(), p.LSE.end());
  EXPECT_LE(reference::relativeError(O, ref->O), 1e-5);
  EXPECT_LE(reference::relativeError(LSE, ref->LSE), 1e-5);
  std::vector<float> O16 = p.O, LSE16 = p.LSE;

  // The f32 kernel on the same values computes the same thing.
  auto f32 = getKernel(*c, "f32");
  ASSERT_TRUE(f32);
  s = p.launch(*f32, kF32);
  ASSERT_TRUE(s) << s.message();
  std::vector<double> O32(p.O.begin(), p.O.end()), O16d(O16.begin(), O16.end());
  EXPECT_LE(reference::relativeError(O16d, O32), 1e-6);

  // A second compiler finds the f16 kernel on disk; it computes the same
  // bits.
  auto c2 = Compiler::create(options);
  ASSERT_TRUE(c2->loadSource(kFile));
  auto again = getKernel(*c2, "f16");
  ASSERT_TRUE(again);
  EXPECT_EQ(c2->stats().lastSource, "disk");
  s = p.launch(*again, kF16);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(std::memcmp(p.O.data(), O16.data(), O16.size() * 4), 0);
  EXPECT_EQ(std::memcmp(p.LSE.data(), LSE16.data(), LSE16.size() * 4), 0);
}

void expectError(const rt::Status &s, const std::string &substring) {
  EXPECT_FALSE(s) << "expected an error containing '" << substring << "'";
  EXPECT_NE(s.message().find(substring), std::string::npos) << s.message();
}

TEST(F16Test, DtypeMismatch) {
  Problem p;
  ASSERT_TRUE(p.decl);
  CompilerOptions options;
  options.diskCache = false;
  auto c = Compiler::create(options);
  ASSERT_TRUE(c->loadSource(kFile));
  auto f16 = getKernel(*c, "f16");
  auto f32 = getKernel(*c, "f32");
  ASSERT_TRUE(f16 && f32);

  // Tensors of another dtype than the specialization, caught before the
  // kernel runs (the poison stays).
  expectError(p.launch(*f16, kF16, kBF16), "q: expected dtype f16, got bfloat16");
  EXPECT_TRUE(std::isnan(p.O[0]));
  expectError(p.launch(*f16, kF32, kF16), "k: expected dtype f16, got float32");
  expectError(p.launch(*f16, kF16, kF16, kF16), "o: expected dtype f32, got float16");
  expectError(p.launch(*f32, kF16), "q: expected dtype f32, got float16");
  expectError(p.launch(*f16, kBF16), "q: expected dtype f16, got bfloat16");

  // Specializations the kernel or the compiler does not have.
  KernelSpec spec;
  spec.headDim = 128;
  spec.dtype = "f16";
  ASSERT_TRUE(c->loadSource(ATTNC_LIB_DIR "/gemma2.attn"));
  auto gemma = c->getKernel("gemma2_local", spec); // declared [bf16, f32]
  EXPECT_FALSE(bool(gemma));
  EXPECT_NE(gemma.message().find("is not declared for dtype f16"), std::string::npos)
      << gemma.message();
  ASSERT_TRUE(c->loadSource(kFile));
  spec.dtype = "f8";
  auto f8 = c->getKernel(kKernel, spec);
  EXPECT_FALSE(bool(f8));
  EXPECT_NE(f8.message().find("dtype f8"), std::string::npos) << f8.message();
}

} // namespace
