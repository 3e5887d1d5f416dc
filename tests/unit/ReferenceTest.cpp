//===- ReferenceTest.cpp - The float64 reference on hand-computed cases ---===//
//
// Every expected value here is worked out on paper from DESIGN.md
// "Semantics", never by running the reference, so these tests pin the oracle
// itself down.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "attnc/DSL/Reference.h"

#include "gtest/gtest.h"

#include <cmath>
#include <limits>

using namespace attnc;
using namespace attnc::reference;
using attnc::test::Loaded;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

/// Inputs of one attention problem, zero-filled to the sizes of `s`.
struct Problem {
  Shape s;
  std::vector<double> Q, K, V;
  explicit Problem(Shape shape) : s(shape) {
    Q.assign(s.B * s.Hq * s.Nq * s.D, 0.0);
    K.assign(s.B * s.Hkv * s.Nk * s.D, 0.0);
    V.assign(s.B * s.Hkv * s.Nk * s.Dv, 0.0);
  }
};

Shape shape(int64_t Nq, int64_t Nk, int64_t D = 1, int64_t Dv = 1, int64_t Hq = 1, int64_t Hkv = 1,
            int64_t B = 1) {
  Shape s;
  s.B = B, s.Hq = Hq, s.Hkv = Hkv, s.Nq = Nq, s.Nk = Nk, s.D = D, s.Dv = Dv;
  return s;
}

/// Loads `source`, which must define kernel `k`, and runs it.
llvm::Expected<Output> runKernel(llvm::StringRef source, const Problem &p, const Bindings &b = {},
                                 llvm::StringRef name = "k") {
  Loaded l(source);
  if (!l.ok())
    return llvm::make_error<llvm::StringError>("does not compile:\n" + l.diagnostics,
                                               llvm::inconvertibleErrorCode());
  const dsl::KernelDecl *k = l.kernel(name);
  if (!k)
    return llvm::make_error<llvm::StringError>("no kernel " + name.str(),
                                               llvm::inconvertibleErrorCode());
  return evaluate(*k, p.s, p.Q.data(), p.K.data(), p.V.data(), b);
}

/// Runs and expects success; fails the test (returning empty output) if not.
Output mustRun(llvm::StringRef source, const Problem &p, const Bindings &b = {}) {
  auto out = runKernel(source, p, b);
  if (!out) {
    ADD_FAILURE() << llvm::toString(out.takeError());
    return {};
  }
  return std::move(*out);
}

/// Runs and expects an error; returns its message.
std::string mustFail(llvm::StringRef source, const Problem &p, const Bindings &b = {}) {
  auto out = runKernel(source, p, b);
  if (out) {
    ADD_FAILURE() << "expected an error";
    return "";
  }
  return llvm::toString(out.takeError());
}

const char *const kCausal = "mask causal(b, h, q, k) = k <= q;\n";

//===----------------------------------------------------------------------===//
// Plain softmax attention
//===----------------------------------------------------------------------===//

TEST(Reference, SingleKeyGivesItsValueAndScore) {
  Problem p(shape(1, 1, /*D=*/2, /*Dv=*/3));
  p.Q = {1, 2};
  p.K = {0.5, -1};
  p.V = {3, 4, 5};
  Output o = mustRun("kernel k {}", p);
  ASSERT_EQ(o.O.size(), 3u);
  EXPECT_DOUBLE_EQ(o.O[0], 3);
  EXPECT_DOUBLE_EQ(o.O[1], 4);
  EXPECT_DOUBLE_EQ(o.O[2], 5);
  ASSERT_EQ(o.LSE.size(), 1u);
  EXPECT_DOUBLE_EQ(o.LSE[0], (0.5 - 2) / std::sqrt(2.0)); // default scale 1/sqrt(D)
}

TEST(Reference, EqualScoresAverageTheValues) {
  Problem p(shape(1, 2, 2, 2));
  p.Q = {1, 1};
  p.K = {3, 1, 2, 2}; // both dots are 4
  p.V = {1, 10, 3, -10};
  Output o = mustRun("kernel k {}", p);
  EXPECT_DOUBLE_EQ(o.O[0], 2);
  EXPECT_DOUBLE_EQ(o.O[1], 0);
  EXPECT_NEAR(o.LSE[0], 4 / std::sqrt(2.0) + std::log(2.0), 1e-14);
}

TEST(Reference, CausalTwoByTwo) {
  Problem p(shape(2, 2));
  p.Q = {1, 2};
  p.K = {1, 3};
  p.V = {10, 20};
  Output o = mustRun(std::string(kCausal) + "kernel k { mask = causal; }", p);
  // Row 0 sees key 0 only (s = 1); row 1 sees s = 2 and s = 6.
  EXPECT_DOUBLE_EQ(o.O[0], 10);
  EXPECT_DOUBLE_EQ(o.LSE[0], 1);
  double p1 = 1 / (1 + std::exp(-4.0));
  EXPECT_NEAR(o.O[1], 10 * (1 - p1) + 20 * p1, 1e-12);
  EXPECT_NEAR(o.LSE[1], std::log(std::exp(2.0) + std::exp(6.0)), 1e-12);
}

TEST(Reference, FullyMaskedRowIsZeroWithMinusInfLse) {
  Problem p(shape(2, 2, 1, 2));
  p.Q = {1, 1};
  p.K = {1, 1};
  p.V = {1, 2, 3, 4};
  // Row 0 sees no key (k < q never holds for q = 0); row 1 sees key 0.
  Output o = mustRun("mask m(b, h, q, k) = k < q;\nkernel k { mask = m; }", p);
  EXPECT_EQ(o.O[0], 0);
  EXPECT_EQ(o.O[1], 0);
  EXPECT_EQ(o.LSE[0], -kInf);
  EXPECT_DOUBLE_EQ(o.O[2], 1);
  EXPECT_DOUBLE_EQ(o.O[3], 2);
  EXPECT_DOUBLE_EQ(o.LSE[1], 1);

  Output none = mustRun("kernel k { mask = false; }", p);
  for (double v : none.O)
    EXPECT_EQ(v, 0);
  for (double v : none.LSE)
    EXPECT_EQ(v, -kInf);
}

TEST(Reference, QOffsetShiftsQueryPositions) {
  Problem p(shape(1, 3));
  p.Q = {1};
  p.K = {1, 2, 3};
  p.V = {1, 2, 3};
  std::string src = std::string(kCausal) + "kernel k { mask = causal; }";
  Bindings at0;
  Output o0 = mustRun(src, p, at0);
  EXPECT_DOUBLE_EQ(o0.O[0], 1); // position 0: key 0 only
  EXPECT_DOUBLE_EQ(o0.LSE[0], 1);

  Bindings at1;
  at1.qOffset = 1; // position 1: keys 0 and 1, scores 1 and 2
  Output o1 = mustRun(src, p, at1);
  double w = 1 / (1 + std::exp(-1.0));
  EXPECT_NEAR(o1.O[0], 1 * (1 - w) + 2 * w, 1e-12);
  EXPECT_NEAR(o1.LSE[0], std::log(std::exp(1.0) + std::exp(2.0)), 1e-12);
}

TEST(Reference, HeadMappingGroupedAndInterleaved) {
  // Hq = 4 query heads over Hkv = 2 kv heads; kv head j's value is 100 * (j + 1).
  Problem p(shape(1, 1, 1, 1, /*Hq=*/4, /*Hkv=*/2));
  p.Q = {1, 1, 1, 1};
  p.K = {1, 1};
  p.V = {100, 200};
  Output g = mustRun("kernel k {}", p);
  EXPECT_EQ(g.O, (std::vector<double>{100, 100, 200, 200})); // h / (Hq/Hkv)
  Output i = mustRun("kernel k { heads = interleaved; }", p);
  EXPECT_EQ(i.O, (std::vector<double>{100, 200, 100, 200})); // h % Hkv
}

TEST(Reference, BatchIndexesItsOwnRows) {
  Problem p(shape(1, 1, 1, 1, 1, 1, /*B=*/2));
  p.Q = {1, 2};
  p.K = {3, 4};
  p.V = {5, 6};
  Output o = mustRun("kernel k {}", p);
  EXPECT_EQ(o.O, (std::vector<double>{5, 6}));
  EXPECT_EQ(o.LSE, (std::vector<double>{3, 8}));
}

TEST(Reference, ScaleOverride) {
  Problem p(shape(1, 2, 4));
  p.Q = {1, 1, 1, 1};
  p.K = {1, 0, 0, 0, 1, 1, 0, 0}; // dots 1 and 2
  p.V = {0, 1};
  Output o = mustRun("kernel k { scale = 2.0; }", p);
  EXPECT_NEAR(o.LSE[0], std::log(std::exp(2.0) + std::exp(4.0)), 1e-12);
  EXPECT_NEAR(o.O[0], 1 / (1 + std::exp(-2.0)), 1e-12);

  // A scale computed from a const parameter, default and bound.
  const char *src = "kernel k(const T: f32 = 4.0) { scale = 1.0 / T; }";
  EXPECT_NEAR(mustRun(src, p).LSE[0], std::log(std::exp(0.25) + std::exp(0.5)), 1e-12);
  Bindings b;
  b.scalars["T"] = 0.5;
  EXPECT_NEAR(mustRun(src, p, b).LSE[0], std::log(std::exp(2.0) + std::exp(4.0)), 1e-12);
}

//===----------------------------------------------------------------------===//
// Scores and normalizers
//===----------------------------------------------------------------------===//

TEST(Reference, ShiftedScoreKeepsSoftmaxAndShiftsLse) {
  Problem p(shape(3, 4, 2, 2));
  for (size_t i = 0; i < p.Q.size(); ++i)
    p.Q[i] = 0.3 * i - 0.7;
  for (size_t i = 0; i < p.K.size(); ++i)
    p.K[i] = 0.5 - 0.2 * i;
  for (size_t i = 0; i < p.V.size(); ++i)
    p.V[i] = i * i * 0.1;
  Output base = mustRun("kernel k {}", p);
  Output shifted = mustRun("kernel k { score = s + 1; }", p);
  ASSERT_EQ(base.O.size(), shifted.O.size());
  for (size_t i = 0; i < base.O.size(); ++i)
    EXPECT_NEAR(shifted.O[i], base.O[i], 1e-12);
  for (size_t i = 0; i < base.LSE.size(); ++i)
    EXPECT_NEAR(shifted.LSE[i], base.LSE[i] + 1, 1e-12);
}

TEST(Reference, SoftcapMatchesHandFormula) {
  const char *src = "score softcap(s, b, h, q, k; cap: f32 = 30.0) = cap * tanh(s / cap);\n"
                    "kernel k { score = softcap; scale = 1.0; }";
  Problem p(shape(1, 2));
  p.Q = {10};
  p.K = {5, -1}; // s = 50 and -10
  p.V = {1, -1};
  auto expect = [&](double cap, const Output &o) {
    double a = cap * std::tanh(50 / cap), c = cap * std::tanh(-10 / cap);
    double pa = std::exp(a) / (std::exp(a) + std::exp(c));
    EXPECT_NEAR(o.O[0], pa - (1 - pa), 1e-12);
    EXPECT_NEAR(o.LSE[0], std::log(std::exp(a) + std::exp(c)), 1e-12);
  };
  expect(30, mustRun(src, p));
  Bindings b;
  b.scalars["cap"] = 5;
  expect(5, mustRun(src, p, b));
}

TEST(Reference, SigmoidNormalizer) {
  Problem p(shape(1, 2, 1, 2));
  p.Q = {1};
  p.K = {1, -2};
  p.V = {1, 2, 3, 4};
  Output o = mustRun("kernel k { normalizer = sigmoid; }", p);
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  EXPECT_NEAR(o.O[0], sig(1) * 1 + sig(-2) * 3, 1e-14);
  EXPECT_NEAR(o.O[1], sig(1) * 2 + sig(-2) * 4, 1e-14);
  EXPECT_NEAR(o.LSE[0], std::log(std::exp(1.0) + std::exp(-2.0)), 1e-14);

  Output masked = mustRun("kernel k { normalizer = sigmoid; mask = false; }", p);
  EXPECT_EQ(masked.O, (std::vector<double>{0, 0}));
  EXPECT_EQ(masked.LSE[0], -kInf);
}

TEST(Reference, ScoreOfMinusInfinityActsLikeMask) {
  Problem p(shape(2, 2));
  p.Q = {1, 1};
  p.K = {1, 1};
  p.V = {3, 5};
  // Every key of row 0 scores -inf: treated as fully masked, not NaN.
  Output o = mustRun("kernel k { score = q == 0 ? -1.0 / 0.0 : s; }", p);
  EXPECT_EQ(o.O[0], 0);
  EXPECT_EQ(o.LSE[0], -kInf);
  EXPECT_DOUBLE_EQ(o.O[1], 4);
}

TEST(Reference, LargeLogitsDoNotOverflow) {
  Problem p(shape(1, 2, 1, 1));
  p.Q = {1};
  p.K = {1, 0.9999}; // s = 10000 and 9999
  p.V = {0, 1};
  Output o = mustRun("kernel k { scale = 10000.0; }", p);
  double w1 = 1 / (1 + std::exp(1.0));
  EXPECT_TRUE(std::isfinite(o.O[0]));
  EXPECT_NEAR(o.O[0], w1, 1e-9);
  EXPECT_NEAR(o.LSE[0], 10000 + std::log(1 + std::exp(-1.0)), 1e-8);
}

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

const char *const kDocSource = "mask causal(b, h, q, k) = k <= q;\n"
                               "mask doc_mask(b, h, q, k; doc: i32[N]) = doc[q] == doc[k];\n"
                               "kernel k { mask = doc_mask; }\n"
                               "kernel kc { mask = causal && doc_mask; }\n";

Problem docProblem() {
  Problem p(shape(4, 4));
  p.Q = {1, 1, 1, 1};
  p.K = {1, 2, 3, 4};
  p.V = {1, 2, 3, 4};
  return p;
}

Bindings docBindings() {
  Bindings b;
  b.tensors["doc"] = ParamTensor{{4}, {0, 0, 1, 1}};
  return b;
}

TEST(Reference, DocumentMask) {
  Problem p = docProblem();
  Output o = mustRun(kDocSource, p, docBindings());
  auto avg = [](double a, double c) {
    return (a * std::exp(a) + c * std::exp(c)) / (std::exp(a) + std::exp(c));
  };
  EXPECT_NEAR(o.O[0], avg(1, 2), 1e-12); // document 0: keys 0, 1
  EXPECT_NEAR(o.O[1], avg(1, 2), 1e-12);
  EXPECT_NEAR(o.O[2], avg(3, 4), 1e-12); // document 1: keys 2, 3
  EXPECT_NEAR(o.O[3], avg(3, 4), 1e-12);

  auto causal = runKernel(kDocSource, p, docBindings(), "kc");
  ASSERT_TRUE(!!causal) << llvm::toString(causal.takeError());
  EXPECT_DOUBLE_EQ(causal->O[0], 1);
  EXPECT_NEAR(causal->O[1], avg(1, 2), 1e-12);
  EXPECT_DOUBLE_EQ(causal->O[2], 3);
  EXPECT_NEAR(causal->O[3], avg(3, 4), 1e-12);
}

TEST(Reference, TensorBoundByRenameInCall) {
  const char *src = "mask doc_mask(b, h, q, k; doc: i32[N]) = doc[q] == doc[k];\n"
                    "kernel k(ids: i32[N]) { mask = doc_mask(doc: ids); }";
  Problem p = docProblem();
  Bindings b;
  b.tensors["ids"] = ParamTensor{{4}, {0, 1, 1, 1}};
  Output o = mustRun(src, p, b);
  EXPECT_DOUBLE_EQ(o.O[0], 1); // alone in its document
  EXPECT_DOUBLE_EQ(o.LSE[0], 1);
  EXPECT_NEAR(o.LSE[1], std::log(std::exp(2.0) + std::exp(3.0) + std::exp(4.0)), 1e-12);
}

TEST(Reference, RuntimeScalarDefaultAndBinding) {
  const char *src = "mask window(b, h, q, k; W: i32 = 1) = k <= q && q - k < W;\n"
                    "kernel k { mask = window; }";
  Problem p(shape(3, 3));
  p.Q = {1, 1, 1};
  p.K = {1, 2, 3};
  p.V = {10, 20, 30};
  Output diag = mustRun(src, p); // W = 1: each row sees only itself
  EXPECT_EQ(diag.O, (std::vector<double>{10, 20, 30}));
  Bindings b;
  b.scalars["W"] = 2;
  Output two = mustRun(src, p, b);
  double w = 1 / (1 + std::exp(-1.0)); // rows 1, 2 weigh the later key by w
  EXPECT_DOUBLE_EQ(two.O[0], 10);
  EXPECT_NEAR(two.O[1], 10 * (1 - w) + 20 * w, 1e-12);
  EXPECT_NEAR(two.O[2], 20 * (1 - w) + 30 * w, 1e-12);
}

TEST(Reference, ConstParamsFromCallDefaultAndBinding) {
  const char *defs = "mask window(b, h, q, k; const W: i32 = 1) = k <= q && q - k < W;\n";
  Problem p(shape(3, 3));
  p.Q = {0, 0, 0}; // all scores 0: the output is the mean of the visible values
  p.V = {3, 6, 12};
  Output byDefault = mustRun(std::string(defs) + "kernel k { mask = window; }", p);
  EXPECT_EQ(byDefault.O, (std::vector<double>{3, 6, 12}));
  Output inCall = mustRun(std::string(defs) + "kernel k { mask = window(W: 2); }", p);
  EXPECT_EQ(inCall.O, (std::vector<double>{3, 4.5, 9}));
  Bindings b;
  b.scalars["W"] = 3;
  Output bound = mustRun(std::string(defs) + "kernel k { mask = window; }", p, b);
  EXPECT_EQ(bound.O, (std::vector<double>{3, 4.5, 7}));
}

TEST(Reference, DefaultMayReferToAnotherParam) {
  const char *src = "mask w(b, h, q, k; const W: i32 = 1, const W2: i32 = 2 * W) = q - k < W2;\n"
                    "kernel k { mask = w; }";
  Problem p(shape(1, 4));
  p.Q = {0};
  p.V = {1, 2, 3, 4};
  Bindings b;
  b.qOffset = 3; // keys 0..3, q - k < 2 keeps keys 2 and 3
  EXPECT_DOUBLE_EQ(mustRun(src, p, b).O[0], 3.5);
  b.scalars["W"] = 2; // now W2 = 4: all keys
  EXPECT_DOUBLE_EQ(mustRun(src, p, b).O[0], 2.5);
}

TEST(Reference, ErrorConstBoundToIndexDependentLet) {
  // Sema lets this through (a let hides that it reads q); the reference
  // refuses to treat it as a constant when working out the call tree.
  const char *src = "mask w(b, h, q, k; const W: i32 = 1) = q - k < W;\n"
                    "mask m(b, h, q, k) { let x = q; w(W: x) }\n"
                    "kernel k { mask = m; }";
  Problem p(shape(1, 1));
  EXPECT_NE(mustFail(src, p).find("constant"), std::string::npos);
}

TEST(Reference, ErrorDefaultsReferringToEachOther) {
  Problem p(shape(1, 1));
  std::string msg = mustFail("mask m(b, h, q, k; const A: i32 = B, const B: i32 = A) = q - k < A;\n"
                             "kernel k { mask = m; }",
                             p);
  EXPECT_NE(msg.find("declared after"), std::string::npos) << msg;
}

//===----------------------------------------------------------------------===//
// Definitions, lets and builtins
//===----------------------------------------------------------------------===//

TEST(Reference, LetsAndNestedImplicitCalls) {
  const char *src = "mask causal(b, h, q, k) = k <= q;\n"
                    "mask near(b, h, q, k; const W: i32 = 2) { let d = q - k; d < W }\n"
                    "mask both(b, h, q, k) = causal && near;\n"
                    "mask shifted(b, h, q, k) = both(b, h, q - 1, k);\n"
                    "kernel k { mask = shifted; }";
  Problem p(shape(4, 4));
  p.V = {1, 2, 3, 4};
  // Row i sees keys k with k <= i - 1 and i - 1 - k < 2.
  Output o = mustRun(src, p);
  EXPECT_EQ(o.O[0], 0);
  EXPECT_EQ(o.LSE[0], -kInf);
  EXPECT_DOUBLE_EQ(o.O[1], 1);
  EXPECT_DOUBLE_EQ(o.O[2], 1.5);
  EXPECT_DOUBLE_EQ(o.O[3], 2.5);
}

TEST(Reference, ScoreCallingScore) {
  const char *src = "score twice(s, b, h, q, k) = 2 * s;\n"
                    "score f(s, b, h, q, k) = twice(s + 1) - f32(q);\n"
                    "kernel k { score = f; }";
  Problem p(shape(2, 1));
  p.Q = {3, 3};
  p.K = {1};
  p.V = {7};
  Output o = mustRun(src, p); // single key: LSE = s'
  EXPECT_DOUBLE_EQ(o.LSE[0], 2 * (3 + 1) - 0);
  EXPECT_DOUBLE_EQ(o.LSE[1], 2 * (3 + 1) - 1);
  EXPECT_DOUBLE_EQ(o.O[1], 7);
}

/// Runs `score = <expr>` on a single key with s = 0, so LSE is the value of
/// the expression; `x` is an f32 runtime scalar and `n`, `m` i32 ones.
double scoreValue(const std::string &expr, double x = 0, double n = 0, double m = 1) {
  std::string src = "score f(s, b, h, q, k; x: f32 = 0.0, n: i32 = 0, m: i32 = 1) = " + expr +
                    ";\nkernel k { score = f; }";
  Problem p(shape(1, 1));
  Bindings b;
  b.scalars["x"] = x;
  b.scalars["n"] = n;
  b.scalars["m"] = m;
  return mustRun(src, p, b).LSE.at(0);
}

TEST(Reference, FloorDivisionAndModulo) {
  EXPECT_EQ(scoreValue("f32(n / m)", 0, -7, 2), -4);
  EXPECT_EQ(scoreValue("f32(n % m)", 0, -7, 2), 1);
  EXPECT_EQ(scoreValue("f32(n / m)", 0, 7, -2), -4);
  EXPECT_EQ(scoreValue("f32(n % m)", 0, 7, -2), -1);
  EXPECT_EQ(scoreValue("f32(n / m)", 0, -7, -2), 3);
  EXPECT_EQ(scoreValue("f32(n % m)", 0, -7, -2), -1);
  EXPECT_EQ(scoreValue("f32(n / m)", 0, 6, -3), -2);
  EXPECT_EQ(scoreValue("f32(n % m)", 0, -6, 3), 0);
  EXPECT_EQ(scoreValue("f32((q - 7) / 2)"), -4); // index arithmetic too
}

TEST(Reference, I32WrapsAndI64DoesNot) {
  EXPECT_EQ(scoreValue("f32(n + 1)", 0, 2147483647), -2147483648.0);
  EXPECT_EQ(scoreValue("f32(i64(n) + 1)", 0, 2147483647), 2147483648.0);
  EXPECT_EQ(scoreValue("f32(n * 2)", 0, 1610612736), -1073741824.0);
  EXPECT_EQ(scoreValue("f32(-n)", 0, -2147483648.0), -2147483648.0);
  EXPECT_EQ(scoreValue("f32(n / m)", 0, -2147483648.0, -1), -2147483648.0);
  EXPECT_EQ(scoreValue("f32(i32(i64(n) * 4294967296 + 5))", 0, 3), 5); // truncation
}

TEST(Reference, Builtins) {
  EXPECT_EQ(scoreValue("min(x, 2.0)", 3), 2);
  EXPECT_EQ(scoreValue("max(x, 2.0)", 3), 3);
  EXPECT_EQ(scoreValue("f32(min(n, m))", 0, -3, 4), -3);
  EXPECT_EQ(scoreValue("f32(max(n, m))", 0, -3, 4), 4);
  EXPECT_EQ(scoreValue("abs(x)", -2.5), 2.5);
  EXPECT_EQ(scoreValue("f32(abs(n))", 0, -9), 9);
  EXPECT_EQ(scoreValue("clamp(x, -1.0, 1.0)", 5), 1);
  EXPECT_EQ(scoreValue("clamp(x, -1.0, 1.0)", -5), -1);
  EXPECT_EQ(scoreValue("clamp(x, -1.0, 1.0)", 0.25), 0.25);
  EXPECT_EQ(scoreValue("f32(clamp(n, 0, 10))", 0, 12), 10);
  EXPECT_EQ(scoreValue("select(x > 0.0, 1.0, 2.0)", 1), 1);
  EXPECT_EQ(scoreValue("select(x > 0.0, 1.0, 2.0)", -1), 2);
  EXPECT_DOUBLE_EQ(scoreValue("exp(x)", 1.5), std::exp(1.5));
  EXPECT_EQ(scoreValue("exp2(x)", 3), 8);
  EXPECT_DOUBLE_EQ(scoreValue("log(x)", 7), std::log(7.0));
  EXPECT_EQ(scoreValue("log2(x)", 32), 5);
  EXPECT_DOUBLE_EQ(scoreValue("tanh(x)", 0.3), std::tanh(0.3));
  EXPECT_EQ(scoreValue("sqrt(x)", 6.25), 2.5);
  EXPECT_DOUBLE_EQ(scoreValue("sigmoid(x)", 0.7), 1 / (1 + std::exp(-0.7)));
  EXPECT_DOUBLE_EQ(scoreValue("sigmoid(x)", -800), 0); // no overflow warning, no NaN
  EXPECT_EQ(scoreValue("floor(x)", -2.5), -3);
  EXPECT_EQ(scoreValue("f32(i32(x))", -2.7), -2); // truncation toward zero
  EXPECT_EQ(scoreValue("f32(i64(x))", 2.7), 2);
  EXPECT_EQ(scoreValue("f32(i32(x))", 1e12), 2147483647); // saturates
  EXPECT_EQ(scoreValue("f32(bool(x))", 0.5), 1);
  EXPECT_EQ(scoreValue("f32(bool(n))", 0, 0), 0);
  EXPECT_EQ(scoreValue("bool(n) || x > 0.0 ? 1.0 : -1.0", 0, 0), -1);
  EXPECT_EQ(scoreValue("!(x < 1.0) && n != 0 ? 1.0 : -1.0", 2, 4), 1);
  EXPECT_EQ(scoreValue("-x * 2 + 1", 3), -5);
  EXPECT_EQ(scoreValue("x / 4", 3), 0.75);
  EXPECT_EQ(scoreValue("f32(n) - 0.5", 0, 3), 2.5);
}

TEST(Reference, GuardsAreLazy) {
  // The out-of-bounds read sits in the branch not taken.
  const char *src = "mask m(b, h, q, k; t: i32[4]) = k >= 4 ? false : t[k] == 0;\n"
                    "mask n(b, h, q, k; t: i32[4]) = k < 4 && t[k] == 0;\n"
                    "mask o(b, h, q, k; t: i32[4]) = select(k < 4, t[k] == 0, false);\n"
                    "kernel k { mask = m && n && o; }";
  Problem p(shape(1, 6));
  p.V = {1, 2, 3, 4, 5, 6};
  Bindings b;
  b.tensors["t"] = ParamTensor{{4}, {0, 1, 0, 1}};
  EXPECT_DOUBLE_EQ(mustRun(src, p, b).O[0], 2); // keys 0 and 2
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

TEST(Reference, ErrorTensorShapeMismatch) {
  Problem p = docProblem();
  Bindings b;
  b.tensors["doc"] = ParamTensor{{3}, {0, 0, 1}};
  EXPECT_EQ(mustFail(kDocSource, p, b), "tensor 'doc' has shape [3], expected [4]");
  b.tensors["doc"] = ParamTensor{{2, 2}, {0, 0, 1, 1}};
  EXPECT_EQ(mustFail(kDocSource, p, b), "tensor 'doc' has rank 2, expected rank 1 (shape [4])");
  b.tensors["doc"] = ParamTensor{{4}, {0, 0, 1}};
  EXPECT_EQ(mustFail(kDocSource, p, b), "tensor 'doc' has 3 values but its shape [4] holds 4");
  b.tensors["doc"] = ParamTensor{{4}, {0, 0.5, 1, 1}};
  EXPECT_NE(mustFail(kDocSource, p, b).find("element 1 of tensor 'doc'"), std::string::npos);
  EXPECT_EQ(mustFail(kDocSource, p),
            "tensor parameter 'doc' of kernel 'k' is not bound (expected shape [4])");
}

TEST(Reference, ErrorNWithQOffset) {
  // N = max(q_offset + Nq, Nk): a decode step at position 7 needs doc[8].
  Problem p(shape(1, 4));
  Bindings b = docBindings();
  b.qOffset = 7;
  EXPECT_EQ(mustFail(kDocSource, p, b), "tensor 'doc' has shape [4], expected [8]");
}

TEST(Reference, ErrorUnboundScalarWithoutDefault) {
  const char *src = "score bias(s, b, h, q, k; beta: f32) = s + beta;\nkernel k { score = bias; }";
  Problem p(shape(1, 1));
  EXPECT_EQ(mustFail(src, p),
            "runtime parameter 'beta' of kernel 'k' has no value: bind it (it has no default)");
  Bindings b;
  b.scalars["beta"] = 0.5;
  EXPECT_DOUBLE_EQ(mustRun(src, p, b).LSE[0], 0.5);
}

TEST(Reference, ErrorOutOfBoundsIndex) {
  const char *src = "mask m(b, h, q, k; t: i32[4]) = t[q + 3] == 0;\nkernel k { mask = m; }";
  Problem p(shape(2, 2));
  Bindings b;
  b.tensors["t"] = ParamTensor{{4}, {0, 0, 0, 0}};
  EXPECT_EQ(mustFail(src, p, b),
            "test.attn:1:37: index 4 is out of bounds for dimension 0 of tensor 't' (size 4) "
            "(while computing b=0, h=0, q=1, k=0)");
}

TEST(Reference, ErrorIntegerDivisionByZero) {
  Problem p(shape(1, 1));
  std::string msg = mustFail("mask m(b, h, q, k; z: i32 = 0) = q / z == 0;\n"
                             "kernel k { mask = m; }",
                             p);
  EXPECT_EQ(msg, "test.attn:1:36: integer division by zero (while computing b=0, h=0, q=0, k=0)");
  msg = mustFail("kernel k { mask = k % 0 == 1; }", p);
  EXPECT_NE(msg.find("integer modulo by zero"), std::string::npos);
}

TEST(Reference, ErrorUnknownOrMisusedBinding) {
  Problem p = docProblem();
  Bindings b = docBindings();
  b.scalars["nope"] = 1;
  EXPECT_EQ(mustFail(kDocSource, p, b), "kernel 'k' has no parameter 'nope' (parameters: doc)");
  b = docBindings();
  b.tensors["other"] = ParamTensor{{1}, {0}};
  EXPECT_EQ(mustFail(kDocSource, p, b), "kernel 'k' has no parameter 'other' (parameters: doc)");
  b = Bindings();
  b.scalars["doc"] = 1;
  EXPECT_EQ(mustFail(kDocSource, p, b),
            "parameter 'doc' of kernel 'k' is a tensor; bind it as a tensor, not a scalar");
}

TEST(Reference, ErrorScalarValueOutOfType) {
  const char *src = "mask window(b, h, q, k; W: i32 = 1) = q - k < W;\nkernel k { mask = window; }";
  Problem p(shape(1, 1));
  Bindings b;
  b.scalars["W"] = 1.5;
  EXPECT_EQ(mustFail(src, p, b), "parameter 'W' is i32; got 1.5, which is not an i32 value");
  b.scalars["W"] = 4294967296.0;
  EXPECT_NE(mustFail(src, p, b).find("not an i32 value"), std::string::npos);
}

TEST(Reference, ErrorBadProblemShape) {
  Problem p(shape(1, 1, 1, 1, /*Hq=*/3, /*Hkv=*/2));
  EXPECT_EQ(mustFail("kernel k {}", p),
            "invalid problem shape: Hq = 3 is not a multiple of Hkv = 2");
  Problem q(shape(1, 1));
  Bindings b;
  b.qOffset = -1;
  EXPECT_NE(mustFail("kernel k {}", q, b).find("q_offset = -1"), std::string::npos);
}

TEST(Reference, EmptyProblemIsFine) {
  Problem p(shape(0, 0));
  Output o = mustRun("kernel k {}", p);
  EXPECT_TRUE(o.O.empty());
  EXPECT_TRUE(o.LSE.empty());
  Problem noKeys(shape(2, 0, 1, 1));
  noKeys.Q = {1, 1};
  Output none = mustRun("kernel k {}", noKeys);
  EXPECT_EQ(none.O, (std::vector<double>{0, 0}));
  EXPECT_EQ(none.LSE, (std::vector<double>{-kInf, -kInf}));
}

//===----------------------------------------------------------------------===//
// Shapes, bindings from text, relative error
//===----------------------------------------------------------------------===//

TEST(Reference, TensorShapesFollowConstParams) {
  const char *src = "mask m(b, h, q, k; const L: i32 = 4, t: f32[L, H]) = t[0, h] > 0.0;\n"
                    "kernel k { mask = m; }\n"
                    "kernel k3 { mask = m(L: 3); }\n";
  Loaded l(src);
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  Shape s = shape(2, 2, 1, 1, /*Hq=*/2, /*Hkv=*/1);
  auto d = tensorShapes(*l.kernel("k"), s, {});
  ASSERT_TRUE(!!d) << llvm::toString(d.takeError());
  EXPECT_EQ(d->at("t"), (std::vector<int64_t>{4, 2}));
  Bindings b;
  b.scalars["L"] = 5;
  auto d5 = tensorShapes(*l.kernel("k"), s, b);
  ASSERT_TRUE(!!d5) << llvm::toString(d5.takeError());
  EXPECT_EQ(d5->at("t"), (std::vector<int64_t>{5, 2}));
  // L is bound in the call, so it is not a parameter of k3.
  auto d3 = tensorShapes(*l.kernel("k3"), s, {});
  ASSERT_TRUE(!!d3) << llvm::toString(d3.takeError());
  EXPECT_EQ(d3->at("t"), (std::vector<int64_t>{3, 2}));
}

TEST(Reference, ConflictingTensorShapes) {
  const char *src = "mask m(b, h, q, k; const L: i32 = 4, t: f32[L]) = t[0] > 0.0;\n"
                    "kernel k { mask = m(L: 3) || m(L: 5); }\n";
  Loaded l(src);
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  auto d = tensorShapes(*l.kernel("k"), shape(1, 1), {});
  ASSERT_FALSE(!!d);
  EXPECT_EQ(llvm::toString(d.takeError()),
            "test.attn:1:38: tensor 't' must have shape [5] for 'm' but [3] for 'm'");
}

TEST(Reference, ParseBindings) {
  const char *src = "mask doc_mask(b, h, q, k; doc: i32[N]) = doc[q] == doc[k];\n"
                    "score bias(s, b, h, q, k; slope: f32[H], beta: f32 = 0.0, on: bool = true) "
                    "= on ? s + slope[h] * beta : s;\n"
                    "kernel k { mask = doc_mask; score = bias; }";
  Loaded l(src);
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  const dsl::KernelDecl &k = *l.kernel("k");
  Shape s = shape(6, 8, 1, 1, /*Hq=*/3, /*Hkv=*/1);

  auto b = parseBindings(k, s, {"beta=0.25", "on=false"}, 7);
  ASSERT_TRUE(!!b) << llvm::toString(b.takeError());
  EXPECT_EQ(b->scalars.at("beta"), 0.25);
  EXPECT_EQ(b->scalars.at("on"), 0);
  // Sorted segment ids: 4 equal documents over N = 8.
  EXPECT_EQ(b->tensors.at("doc").dims, (std::vector<int64_t>{8}));
  EXPECT_EQ(b->tensors.at("doc").data, (std::vector<double>{0, 0, 1, 1, 2, 2, 3, 3}));
  const ParamTensor &slope = b->tensors.at("slope");
  EXPECT_EQ(slope.dims, (std::vector<int64_t>{3}));
  for (double v : slope.data) {
    EXPECT_GE(v, -1);
    EXPECT_LT(v, 1);
  }
  EXPECT_NE(slope.data[0], slope.data[1]);
  auto again = parseBindings(k, s, {}, 7);
  ASSERT_TRUE(!!again);
  EXPECT_EQ(again->tensors.at("slope").data, slope.data); // deterministic in the seed
  auto other = parseBindings(k, s, {}, 8);
  ASSERT_TRUE(!!other);
  EXPECT_NE(other->tensors.at("slope").data, slope.data);

  // q_offset grows N.
  auto decode = parseBindings(k, s, {}, 7, /*qOffset=*/10);
  ASSERT_TRUE(!!decode);
  EXPECT_EQ(decode->qOffset, 10);
  EXPECT_EQ(decode->tensors.at("doc").dims, (std::vector<int64_t>{16}));

  // Explicit tensor values, and one value filling the tensor.
  auto given = parseBindings(k, s, {"doc=0,0,0,1,1,1,2,2", "slope=0.5"}, 0);
  ASSERT_TRUE(!!given) << llvm::toString(given.takeError());
  EXPECT_EQ(given->tensors.at("doc").data, (std::vector<double>{0, 0, 0, 1, 1, 1, 2, 2}));
  EXPECT_EQ(given->tensors.at("slope").data, (std::vector<double>{0.5, 0.5, 0.5}));

  // The bindings run.
  std::vector<double> Q(s.B * s.Hq * s.Nq * s.D, 0.5), K(s.B * s.Hkv * s.Nk * s.D, 0.25),
      V(s.B * s.Hkv * s.Nk * s.Dv, 1.0);
  auto out = evaluate(k, s, Q.data(), K.data(), V.data(), *given);
  ASSERT_TRUE(!!out) << llvm::toString(out.takeError());
  EXPECT_DOUBLE_EQ(out->O[0], 1);

  auto err = [&](std::vector<std::string> params) {
    auto r = parseBindings(k, s, params, 0);
    return r ? std::string("no error") : llvm::toString(r.takeError());
  };
  EXPECT_EQ(err({"gamma=1"}), "kernel 'k' has no parameter 'gamma' (parameters: doc, slope, "
                              "beta, on)");
  EXPECT_EQ(err({"beta"}), "expected name=value or name=v1,v2,..., got 'beta'");
  EXPECT_EQ(err({"beta=1", "beta=2"}), "parameter 'beta' is given twice");
  EXPECT_EQ(err({"beta=x"}), "parameter 'beta': 'x' is not a valid f32 value");
  EXPECT_EQ(err({"beta=1,2"}), "parameter 'beta' is a scalar but 2 values were given");
  EXPECT_EQ(err({"on=maybe"}), "parameter 'on': 'maybe' is not a valid bool value");
  EXPECT_EQ(err({"doc=1,2"}), "tensor 'doc' has shape [8] (8 values) but 2 values were given");
  EXPECT_EQ(err({"doc=0,0,0,0,0,0,0,0.5"}), "parameter 'doc': '0.5' is not a valid i32 value");
}

TEST(Reference, RelativeError) {
  EXPECT_EQ(relativeError({1, 2}, {1, 2}), 0);
  EXPECT_DOUBLE_EQ(relativeError({3, 4}, {0, 0}), 5); // ref norm 0: absolute
  EXPECT_DOUBLE_EQ(relativeError({1, 1}, {1, 0}), 1);
  EXPECT_DOUBLE_EQ(relativeError({3, 0}, {0, 4}), 1.25);
  EXPECT_EQ(relativeError({-kInf, 2}, {-kInf, 2}), 0); // fully masked LSE rows
  EXPECT_EQ(relativeError({0, 2}, {-kInf, 2}), kInf);
  EXPECT_TRUE(std::isnan(relativeError({std::nan(""), 2}, {1, 2})));
  EXPECT_EQ(relativeError({1}, {1, 2}), kInf);
}

} // namespace
