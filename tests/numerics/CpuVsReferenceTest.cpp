//===- CpuVsReferenceTest.cpp - lib/ kernels on the cpu target ------------===//
//
// Every kernel of every lib/*.attn file, compiled for the `cpu` target
// through the JIT API (attnc::Compiler: MLIRGen -> attn passes ->
// attn-to-cpu -> LLVM -> shared object, launched by the light runtime on its
// thread pool with DLTensor views of f32, bf16 or f16 inputs) and compared
// with the float64 reference.
//
// A test is one specialization (kernel, dtype, D, const values), compiled
// once and run on several shapes (shapes are dynamic). The full cartesian
// product of kernels x dtypes x D x shapes is too slow for the reference, so
// planTests() covers it by rotation over the kernels (index i in
// registration order):
//   - every declared dtype of f32/bf16/f16 at the kernel's own D (its first
//     head_dim, else kDims[i % 5]) on the small awkward shapes (kSmall);
//   - one of those dtypes (rotating: i % #dtypes) also runs two long shapes
//     (kLong[i % 8], kLong[(i + 4) % 8]) and, at D = 64 or 256, a
//     large-logit shape (kLarge[i % 3]); the others one long shape each;
//   - another legal D (kDims[(i + 1) % 5], or another declared head_dim) in
//     the next dtype: two small shapes, kLong[(i + 2) % 8], and a
//     large-logit shape at D = 64 or 256;
//   - kernels without a head_dim list also at kDims[(i + 3) % 5], in the
//     dtype after that: one small shape and kLong[(i + 5) % 8];
//   - kernels with const parameters once more with small const values
//     (kConstOverrides, so windows and blocks bite at these lengths): all
//     small shapes and kLong[(i + 6) % 8].
// CpuVsReferencePlan.Coverage checks that the plan covers the grid (every
// D, length, dtype, GQA, q_offset, large logits, fully masked rows).
// Outputs are poisoned (NaN) before every launch and must all be written;
// guard zones around O and LSE must stay untouched. The binary runs as
// several ctest entries (gtest shards).
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Frontend.h"
#include "attnc/DSL/Reference.h"
#include "attnc/JIT.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/SourceMgr.h"

#include "LaunchBindings.h"
#include "LibKernelTests.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>

using namespace attnc;

namespace {

struct Case {
  int64_t B, Hq, Hkv, Nq, Nk, qOffset;
  /// Q and K are integers times 32, so that scores reach about +-1e4.
  bool largeLogits = false;
};

// Lengths 1, 5, 9, 17, 33, 40 are not multiples of any tile size; Hq/Hkv
// covers MHA, 2:1 and GQA 4:1; q_offset covers chunked prefill and decode
// positions; the last case puts every query past every key (fully masked
// rows under windows, documents and neighbourhoods).
const Case kSmall[] = {
    {1, 1, 1, 1, 1, 0},   {1, 2, 1, 17, 17, 0}, {2, 4, 1, 17, 33, 16}, {1, 4, 4, 33, 17, 0},
    {1, 2, 2, 5, 40, 35}, {1, 4, 2, 1, 33, 32}, {1, 2, 1, 9, 20, 40},
};

// Lengths 128 and 1000 (Nq != Nk), GQA 4:1, q_offset != 0.
const Case kLong[] = {
    {1, 4, 1, 1, 1000, 999},   // decode: one query at the end, GQA 4:1
    {1, 1, 1, 1000, 17, 0},    // long query block over few keys
    {1, 4, 1, 128, 1000, 872}, // last chunk of a chunked prefill, GQA 4:1
    {1, 2, 2, 1000, 128, 0},   // queries past the keys (rows 128..999)
    {1, 1, 1, 1000, 1000, 0},  // square
    {2, 4, 4, 17, 128, 111},   // B = 2, MHA
    {1, 8, 2, 128, 128, 0},    // GQA 4:1
    {1, 2, 1, 128, 17, 300},   // queries far past the keys
};

// Large logits. Q and K hold integers in [-2, 2] times 32: at D = 64 and
// 256 the scale (1/8, 1/16) is a power of two, so every score is exact in
// f32 and tied keys stay exactly tied; only overflow handling is tested,
// not the eps * |s| conditioning of softmax at |s| = 1e4 (an ulp of 1e4 is
// 1e-3, which alone changes the weights of near-tied keys by 1e-3).
const Case kLarge[] = {
    {1, 4, 1, 17, 128, 40, true},
    {1, 1, 1, 128, 128, 0, true},
    {1, 2, 1, 1, 1000, 999, true},
};

const int64_t kDims[] = {32, 64, 80, 128, 256};

/// Small const values, so that windows, blocks and neighbourhoods cut the
/// short shapes (the defaults mostly span them).
const std::map<std::string, std::map<std::string, std::string>> kConstOverrides = {
    {"alibi_geometric_causal", {{"HEADS", "4"}}},
    {"block_diagonal_attention", {{"BLOCK", "16"}}},
    {"block_causal_attention", {{"BLOCK", "16"}}},
    {"block_sink_causal_attention", {{"BLOCK", "16"}, {"SINK", "3"}}},
    {"block_sparse_attention", {{"BQ", "8"}, {"BK", "16"}}},
    {"block_sparse_causal_attention", {{"BQ", "16"}, {"BK", "8"}}},
    {"dilated_window_attention", {{"W", "8"}, {"DIL", "3"}}},
    {"gemma2_local", {{"W", "16"}}},
    {"longformer_attention", {{"R", "8"}}},
    {"natten1d_attention", {{"K", "5"}, {"DIL", "2"}, {"L", "64"}}},
    {"natten2d_attention", {{"ROWS", "8"}, {"COLS", "8"}, {"KR", "3"}, {"KC", "5"}}},
    {"relative_bias_attention", {{"MAXD", "8"}}},
    {"relative_bias_causal", {{"MAXD", "8"}}},
    {"sliding_window_attention", {{"W", "16"}}},
    {"local_window_attention", {{"R", "8"}}},
    {"streaming_llm", {{"SINK", "2"}, {"W", "8"}}},
};

/// One specialization and the shapes it runs.
struct Spec {
  std::string file, kernel, dtype;
  int64_t D = 0;
  std::map<std::string, std::string> consts;
  std::vector<Case> cases;
  /// Some case must leave rows without any key (checked: the suite is
  /// meant to cover them).
  bool expectMaskedRows = false;
};

/// Kernels whose mask leaves rows empty in the last small case (queries
/// 40..48, keys 0..19), with their default consts and with kConstOverrides.
const std::set<std::string> kMaskedByDefault = {"document_attention", "document_causal_attention",
                                                "natten1d_attention"};
const std::set<std::string> kMaskedWithOverrides = {
    "block_diagonal_attention", "block_causal_attention", "gemma2_local",
    "local_window_attention",   "natten1d_attention",     "natten2d_attention",
    "sliding_window_attention"};

/// Every planned test, for the coverage check (filled at registration).
std::vector<Spec> &plan() {
  static std::vector<Spec> specs;
  return specs;
}
/// Per kernel: the dtypes it declares (of f32, bf16, f16) and how many of
/// kDims its head_dim list allows.
struct Declared {
  std::vector<std::string> dtypes;
  size_t legalDims = 0;
};
std::map<std::string, Declared> &declared() {
  static std::map<std::string, Declared> kernels;
  return kernels;
}

class KernelNumerics : public ::testing::Test {
public:
  explicit KernelNumerics(Spec spec) : spec(std::move(spec)) {}

  void TestBody() override {
    // The reference reads the checked AST, in a context of its own.
    mlir::MLIRContext ctx;
    llvm::SourceMgr sm;
    std::string diagText;
    llvm::raw_string_ostream diagOS(diagText);
    mlir::SourceMgrDiagnosticHandler handler(sm, &ctx, diagOS);
    auto prog = dsl::loadProgram(sm, ctx, spec.file, dsl::FrontendOptions{});
    ASSERT_TRUE(prog) << diagText;
    const dsl::KernelDecl *k = prog->lookupKernel(spec.kernel);
    ASSERT_TRUE(k);
    for (auto &[name, value] : spec.consts)
      ASSERT_TRUE(llvm::any_of(k->constParams, [&](auto &p) { return p.name == name; }))
          << "kConstOverrides names '" << name << "', not a const parameter of " << spec.kernel;

    // The kernel, through the JIT API (no disk cache: every test compiles).
    CompilerOptions options;
    options.diskCache = false;
    auto compiler = Compiler::create(options);
    rt::Status loaded = compiler->loadSource(spec.file);
    ASSERT_TRUE(loaded) << loaded.message();
    KernelSpec ks;
    ks.dtype = spec.dtype;
    ks.headDim = spec.D;
    ks.consts = spec.consts;
    auto kernel = compiler->getKernel(spec.kernel, ks);
    ASSERT_TRUE(bool(kernel)) << kernel.message();
    ASSERT_EQ((*kernel)->info().dtype, spec.dtype);

    size_t maskedRows = 0;
    for (const Case &c : spec.cases) {
      SCOPED_TRACE(testing::Message()
                   << "B=" << c.B << " Hq=" << c.Hq << " Hkv=" << c.Hkv << " Nq=" << c.Nq
                   << " Nk=" << c.Nk << " D=" << spec.D << " q_offset=" << c.qOffset << " "
                   << spec.dtype << (c.largeLogits ? " large logits" : ""));
      runCase(*k, **kernel, c, maskedRows);
      if (HasFatalFailure())
        return;
    }
    if (spec.expectMaskedRows) {
      EXPECT_GT(maskedRows, 0u) << "no case left a row without keys";
    }
  }

private:
  void runCase(const dsl::KernelDecl &k, const rt::CpuKernel &kernel, const Case &c,
               size_t &maskedRows) {
    const int64_t D = spec.D;
    reference::Shape shape{c.B, c.Hq, c.Hkv, c.Nq, c.Nk, D, D};
    std::vector<std::string> constArgs;
    for (auto &[name, value] : spec.consts)
      constArgs.push_back(name + "=" + value);
    auto bindings = reference::parseBindings(k, shape, constArgs, /*seed=*/7, c.qOffset);
    ASSERT_TRUE(bool(bindings)) << llvm::toString(bindings.takeError());
    bindings->qOffset = c.qOffset;
    if (c.largeLogits) {
      // Float tensor parameters (slopes, biases) on a 1/8 grid: added to an
      // exact score of magnitude 1e4 they stay exact in f32.
      for (const rt::ParamInfo &p : kernel.info().params)
        if (p.isTensor && p.type == "f32")
          for (double &x : bindings->tensors[p.name].data)
            x = std::round(x * 8) / 8;
    }

    std::mt19937_64 rng(uint64_t(c.Nq * 131 + c.Nk * 7 + D * 1009 + c.qOffset));
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_int_distribution<int> small(-2, 2);
    auto random = [&](size_t n, bool integer) {
      std::vector<double> v(n);
      for (auto &x : v)
        x = driver::roundToInputType(integer ? 32.0 * small(rng) : normal(rng), spec.dtype);
      return v;
    };
    auto Q = random(c.B * c.Hq * c.Nq * D, c.largeLogits);
    auto K = random(c.B * c.Hkv * c.Nk * D, c.largeLogits);
    auto V = random(c.B * c.Hkv * c.Nk * D, false);
    if (c.largeLogits) {
      // The case is what it says: some score (of any head pair) near 1e4.
      double maxScore = 0;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t h = 0; h < c.Hq; ++h)
          for (int64_t hk = 0; hk < c.Hkv; ++hk)
            for (int64_t i = 0; i < c.Nq; ++i)
              for (int64_t j = 0; j < c.Nk; ++j) {
                const double *q = &Q[((b * c.Hq + h) * c.Nq + i) * D];
                const double *kk = &K[((b * c.Hkv + hk) * c.Nk + j) * D];
                double s = 0;
                for (int64_t d = 0; d < D; ++d)
                  s += q[d] * kk[d];
                maxScore = std::max(maxScore, std::abs(s) / std::sqrt(double(D)));
              }
      ASSERT_GT(maxScore, 5e3);
      ASSERT_LT(maxScore, 2e4);
    }

    auto ref = reference::evaluate(k, shape, Q.data(), K.data(), V.data(), *bindings);
    ASSERT_TRUE(bool(ref)) << llvm::toString(ref.takeError());

    std::vector<char> q = driver::packInputs(Q, spec.dtype), kk = driver::packInputs(K, spec.dtype),
                      v = driver::packInputs(V, spec.dtype);
    // O and LSE between guard zones; poisoned with NaN: every element must
    // be written, nothing around them.
    const size_t guard = 64;
    const float sentinel = 1234.5f;
    size_t nO = size_t(c.B * c.Hq * c.Nq * D), nL = size_t(c.B * c.Hq * c.Nq);
    std::vector<float> oBuf(nO + 2 * guard, sentinel), lBuf(nL + 2 * guard, sentinel);
    std::fill_n(oBuf.begin() + guard, nO, std::nanf(""));
    std::fill_n(lBuf.begin() + guard, nL, std::nanf(""));

    std::vector<int64_t> sq = {c.B, c.Hq, c.Nq, D}, sk = {c.B, c.Hkv, c.Nk, D},
                         so = {c.B, c.Hq, c.Nq, D}, sl = {c.B, c.Hq, c.Nq};
    DLDataType in = driver::dlInputType(spec.dtype), f32{kDLFloat, 32, 1};
    DLTensor tq = driver::dlView(q.data(), in, sq), tk = driver::dlView(kk.data(), in, sk),
             tv = driver::dlView(v.data(), in, sk),
             to = driver::dlView(oBuf.data() + guard, f32, so),
             tl = driver::dlView(lBuf.data() + guard, f32, sl);
    rt::LaunchArgs args;
    args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.lse = &tl;
    args.qOffset = c.qOffset;
    driver::LaunchBindings params;
    std::string bound = params.bind(kernel.info(), *bindings, args);
    ASSERT_TRUE(bound.empty()) << bound;
    rt::Status launched = kernel.launch(args);
    ASSERT_TRUE(launched) << launched.message();

    size_t guardsHit = 0, unwritten = 0;
    for (auto *buf : {&oBuf, &lBuf}) {
      for (size_t i = 0; i < guard; ++i)
        guardsHit += ((*buf)[i] != sentinel) + ((*buf)[buf->size() - 1 - i] != sentinel);
      for (size_t i = guard; i + guard < buf->size(); ++i)
        unwritten += std::isnan((*buf)[i]);
    }
    EXPECT_EQ(guardsHit, 0u) << "elements written outside O / LSE";
    EXPECT_EQ(unwritten, 0u) << "elements of O / LSE left NaN (poison not overwritten)";

    std::vector<double> O(oBuf.begin() + guard, oBuf.end() - guard),
        LSE(lBuf.begin() + guard, lBuf.end() - guard);
    // The inputs are identical (rounded to the dtype before both sides see
    // them) and the kernel computes in f32, so every dtype is held to the
    // f32 bound of DESIGN.md (1e-5), tighter than its 1e-2 for bf16/f16.
    // That bound presumes scores of magnitude up to ~100: f32 holds a score
    // s (here s' = s - slope * (q - k) at distances up to 1000) only to
    // |s| 2^-24, which moves softmax weights by as much relative to each
    // other. So it scales with S / 100, S = max |LSE| over rows with keys
    // (within log Nk of the row's largest score). Large-logit cases have
    // exact scores by construction and keep the plain bound.
    double S = 0;
    for (double x : ref->LSE)
      if (std::isfinite(x))
        S = std::max(S, std::abs(x));
    double tol = c.largeLogits ? 1e-5 : 1e-5 * std::max(1.0, S / 100);
    numerics::expectMatchesReference(O, LSE, *ref, D, tol);
    maskedRows += llvm::count_if(ref->LSE, [](double x) { return std::isinf(x); });
  }

  Spec spec;
};

/// The specializations and shapes of kernel `k` (see the file comment).
std::vector<numerics::KernelTest> planTests(const std::string &file, const dsl::KernelDecl &k,
                                            unsigned i) {
  std::vector<std::string> dtypes;
  for (dsl::ElemType t : {dsl::ElemType::F32, dsl::ElemType::BF16, dsl::ElemType::F16})
    if (llvm::is_contained(k.dtypes, t))
      dtypes.push_back(dsl::toString(t).str());
  std::vector<numerics::KernelTest> tests;
  if (dtypes.empty()) {
    struct NoDtype : ::testing::Test {
      void TestBody() override { FAIL() << "declares none of f32, bf16, f16"; }
    };
    tests.push_back({"dtypes", [] { return static_cast<::testing::Test *>(new NoDtype); }});
    return tests;
  }
  size_t nd = dtypes.size();
  declared()[k.name] = {dtypes, size_t(llvm::count_if(kDims, [&](int64_t d) {
                          return k.headDims.empty() || llvm::is_contained(k.headDims, d);
                        }))};
  int64_t ownD = k.headDims.empty() ? kDims[i % 5] : k.headDims.front();
  int64_t altD = 0;
  if (k.headDims.empty())
    altD = kDims[(i + 1) % 5];
  else if (k.headDims.size() > 1)
    altD = k.headDims[1];
  auto large = [&](int64_t D, std::vector<Case> &cases) {
    if (D == 64 || D == 256)
      cases.push_back(kLarge[i % 3]);
  };
  auto add = [&](Spec s, const std::string &suffix) {
    s.file = file;
    s.kernel = k.name;
    bool lastSmall = llvm::any_of(s.cases, [](const Case &c) {
      return c.Nq == kSmall[6].Nq && c.Nk == kSmall[6].Nk && c.qOffset == kSmall[6].qOffset;
    });
    s.expectMaskedRows =
        lastSmall && (s.consts.empty() ? kMaskedByDefault : kMaskedWithOverrides).count(k.name);
    plan().push_back(s);
    std::string name = s.dtype + ".D" + std::to_string(s.D) + suffix;
    tests.push_back({name, [s]() -> ::testing::Test * { return new KernelNumerics(s); }});
  };

  for (size_t t = 0; t < nd; ++t) {
    Spec s;
    s.dtype = dtypes[t];
    s.D = ownD;
    s.cases.assign(std::begin(kSmall), std::end(kSmall));
    if (t == i % nd) {
      s.cases.push_back(kLong[i % 8]);
      s.cases.push_back(kLong[(i + 4) % 8]);
      large(ownD, s.cases);
    } else {
      s.cases.push_back(kLong[(i + 1 + t) % 8]);
    }
    add(s, "");
  }
  if (altD) {
    Spec s;
    s.dtype = dtypes[(i + 1) % nd];
    s.D = altD;
    s.cases = {kSmall[2], kSmall[6], kLong[(i + 2) % 8]};
    large(altD, s.cases);
    add(s, "");
  }
  if (k.headDims.empty()) {
    Spec s;
    s.dtype = dtypes[(i + 2) % nd];
    s.D = kDims[(i + 3) % 5];
    s.cases = {kSmall[4], kLong[(i + 5) % 8]};
    add(s, "");
  }
  if (auto it = kConstOverrides.find(k.name); it != kConstOverrides.end()) {
    Spec s;
    s.dtype = dtypes[(i + 2) % nd];
    s.D = ownD;
    s.consts = it->second;
    s.cases.assign(std::begin(kSmall), std::end(kSmall));
    s.cases.push_back(kLong[(i + 6) % 8]);
    add(s, ".consts");
  }
  return tests;
}

/// The plan covers the grid of the CPU issue: every kernel in each of its
/// dtypes and at two or more D where it allows them; every D, every length
/// in {1, 17, 128, 1000} as Nq and as Nk, large logits and fully masked
/// rows in several kernels; Nq != Nk, q_offset != 0 and GQA 4:1 and 1:1
/// in every kernel.
class PlanCoverage : public ::testing::Test {
  void TestBody() override {
    ASSERT_FALSE(declared().empty());
    std::map<std::string, std::set<std::string>> kernelsWith;
    std::map<std::string, std::set<int64_t>> dimsOf;
    std::map<std::string, std::set<std::string>> dtypesOf;
    for (const Spec &s : plan()) {
      dimsOf[s.kernel].insert(s.D);
      dtypesOf[s.kernel].insert(s.dtype);
      kernelsWith["D" + std::to_string(s.D)].insert(s.kernel);
      kernelsWith[s.dtype].insert(s.kernel);
      if (s.expectMaskedRows)
        kernelsWith["masked"].insert(s.kernel);
      for (const Case &c : s.cases) {
        kernelsWith["Nq" + std::to_string(c.Nq)].insert(s.kernel);
        kernelsWith["Nk" + std::to_string(c.Nk)].insert(s.kernel);
        if (c.Nq != c.Nk)
          kernelsWith["Nq!=Nk"].insert(s.kernel);
        if (c.qOffset != 0)
          kernelsWith["q_offset"].insert(s.kernel);
        if (c.Hq == 4 * c.Hkv)
          kernelsWith["gqa4"].insert(s.kernel);
        if (c.Hq == c.Hkv)
          kernelsWith["mha"].insert(s.kernel);
        if (c.largeLogits)
          kernelsWith["large"].insert(s.kernel);
      }
    }
    for (auto &[name, d] : declared()) {
      SCOPED_TRACE(name);
      for (const std::string &t : d.dtypes)
        EXPECT_TRUE(dtypesOf[name].count(t)) << t;
      EXPECT_GE(dimsOf[name].size(), std::min<size_t>(2, d.legalDims));
      for (const char *all : {"Nq!=Nk", "q_offset", "gqa4", "mha"})
        EXPECT_TRUE(kernelsWith[all].count(name)) << all;
    }
    std::vector<std::string> several = {"f32", "bf16", "f16", "masked"};
    for (int64_t D : kDims)
      several.push_back("D" + std::to_string(D));
    for (int64_t N : {1, 17, 128, 1000}) {
      several.push_back("Nq" + std::to_string(N));
      several.push_back("Nk" + std::to_string(N));
    }
    for (const std::string &key : several)
      EXPECT_GE(kernelsWith[key].size(), 3u) << key;
    EXPECT_GE(kernelsWith["large"].size(), 10u);
  }
};

} // namespace

int main(int argc, char **argv) {
  ::testing::RegisterTest("CpuVsReferencePlan", "Coverage", nullptr, nullptr, __FILE__, __LINE__,
                          []() -> ::testing::Test * { return new PlanCoverage; });
  return numerics::runLibKernelTests(argc, argv, "CpuVsReference", planTests);
}
