//===- KvCacheTest.cpp - attention over KV caches (runtime KvCache) ------===//
//
// Kernels compiled with KernelSpec::kvCache read K/V through a KvCache;
// decode and prefill sequences driven through the runtime must equal a
// float64 attention over exactly the positions the cache retains (on the
// stored bf16 values), with the mask at logical positions, step by step,
// for several sequences of different lengths. Plus the cache's own
// contract: retention, constant memory under sink + window, paging across
// page boundaries, accounting, and errors that change nothing.
//
//===----------------------------------------------------------------------===//

#include "TempDir.h"

#include "attnc/JIT.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Runtime/Half.h"
#include "attnc/Runtime/KvCache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <type_traits>

using namespace attnc;
using attnc::test::TempDir;

namespace {

const int64_t D = 16, Hq = 4, Hkv = 2;

const char *kSource = R"(
import "causal.attn";
cache all_kv { layout = paged(4); retention = all; storage = bf16; }
cache stream_kv { layout = paged(4); retention = sink(2) + window(7); storage = bf16; }
cache flat_kv { layout = contiguous; retention = sink(2) + window(7); storage = bf16; }
cache other_kv { layout = paged(8); retention = all; storage = bf16; }
kernel over_all { mask = causal; cache = all_kv; }
kernel over_stream { mask = causal; cache = stream_kv; }
kernel over_flat { mask = causal; cache = flat_kv; }
// A mask at logical positions: keys whose position is even, or the query's own.
kernel even_keys { mask = causal && (k % 2 == 0 || k == q); cache = all_kv; }
kernel even_stream { mask = causal && (k % 2 == 0 || k == q); cache = stream_kv; }
// Per-head masks over packed heads (a KV head's query heads share its rows),
// grouped and interleaved.
kernel head_mask { mask = causal && (h % 2 == 0 || q - k < 3); cache = stream_kv; }
kernel head_mask_il { mask = causal && (h % 2 == 0 || q - k < 3); cache = stream_kv; heads = interleaved; }
kernel plain { mask = causal; }
cache q8_token_kv { layout = paged(4); retention = all; storage = int8(per_token); }
cache q8_group_kv { layout = paged(4); retention = sink(2) + window(7); storage = int8(per_group(8)); }
kernel over_q8_token { mask = causal; cache = q8_token_kv; }
kernel over_q8_group { mask = causal; cache = q8_group_kv; }
cache q4_group_kv { layout = paged(4); retention = all; storage = int4(per_group(8)); }
kernel over_q4_group { mask = causal; cache = q4_group_kv; }
cache f8_token_kv { layout = paged(4); retention = all; storage = fp8(per_token); }
cache f8_group_kv { layout = paged(4); retention = sink(2) + window(7); storage = fp8(per_group(8)); }
kernel over_f8_token { mask = causal; cache = f8_token_kv; }
kernel over_f8_group { mask = causal; cache = f8_group_kv; }
// DuoAttention: retrieval heads keep everything, streaming heads sink + window.
cache duo_kv = per_head(all_kv, stream_kv) by head_kind;
kernel duo { mask = causal; cache = duo_kv; }
// Budget retention: H2O (accumulated attention mass) and SnapKV
// (observation window), 12 slots per head in 4-token pages.
cache h2o_kv { layout = paged(4); retention = budget(12, h2o); storage = bf16; }
cache snap_kv { layout = paged(4); retention = budget(12, snapkv); storage = bf16; }
cache h2o_flat_kv { layout = contiguous; retention = budget(12, h2o); storage = bf16; }
kernel over_h2o { mask = causal; cache = h2o_kv; }
kernel over_snap { mask = causal; cache = snap_kv; }
kernel over_h2o_flat { mask = causal; cache = h2o_flat_kv; }
cache duo_h2o_kv = per_head(all_kv, h2o_kv) by head_kind;
kernel duo_h2o { mask = causal; cache = duo_h2o_kv; }
// H2O under a local mask: old heavy hitters fall outside every query's
// reach, so whole tiles of the cache are masked for a launch.
cache h2o_wide_kv { layout = paged(4); retention = budget(48, h2o); storage = bf16; }
kernel h2o_local { mask = causal && q - k < 6; cache = h2o_wide_kv; }
// Heads scored differently: H2O and SnapKV budgets in one cache.
cache mixed_scores_kv = per_head(h2o_kv, snap_kv) by head_kind;
kernel mixed_scores { mask = causal; cache = mixed_scores_kv; }
// Budgets over quantized storage: evictions compact quantized rows and
// their scales.
cache h2o_q8_kv { layout = paged(4); retention = budget(12, h2o); storage = int8(per_token); }
cache h2o_q4_kv { layout = paged(4); retention = budget(12, h2o); storage = int4(per_group(8)); }
cache h2o_f8_kv { layout = paged(4); retention = budget(12, h2o); storage = fp8(per_token); }
kernel over_h2o_q8 { mask = causal; cache = h2o_q8_kv; }
kernel over_h2o_q4 { mask = causal; cache = h2o_q4_kv; }
kernel over_h2o_f8 { mask = causal; cache = h2o_f8_kv; }
// f16 scales (per group): stored rounded, quantizing by the stored value;
// moved with their rows by windows and evictions.
cache q4_group_h_kv { layout = paged(4); retention = all; storage = int4(per_group(8), f16); }
cache q8_group_h_kv { layout = paged(4); retention = sink(2) + window(7); storage = int8(per_group(8), f16); }
cache h2o_q4h_kv { layout = paged(4); retention = budget(12, h2o); storage = int4(per_group(8), f16); }
kernel over_q4_group_h { mask = causal; cache = q4_group_h_kv; }
kernel over_q8_group_h { mask = causal; cache = q8_group_h_kv; }
kernel over_h2o_q4h { mask = causal; cache = h2o_q4h_kv; }
)";

/// A dense host tensor of T (uint16_t: bf16 bits, float: f32).
template <typename T> struct HostTensor {
  std::vector<T> data;
  std::vector<int64_t> shape;
  DLTensor t{};
  explicit HostTensor(std::vector<int64_t> s) : shape(std::move(s)) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    data.assign(size_t(n), std::is_same_v<T, float> ? T(NAN) : T(0));
    t.data = data.data();
    t.device = {kDLCPU, 0};
    t.ndim = int(shape.size());
    t.dtype = std::is_same_v<T, float> ? DLDataType{kDLFloat, 32, 1} : DLDataType{kDLBfloat, 16, 1};
    t.shape = shape.data();
  }
};
using BfTensor = HostTensor<uint16_t>;
using F32Tensor = HostTensor<float>;

/// The test's side of a sequence: every token's K/V as stored (bf16).
struct History {
  std::vector<std::vector<std::vector<float>>> k, v; // [h][pos][d]
  History() : k(Hkv), v(Hkv) {}
};

class KvCacheTest : public ::testing::Test {
protected:
  /// The head dim of the kernels and caches a test makes (the file's 16
  /// unless a test sets another first).
  int64_t D = ::D;
  TempDir dir;
  std::unique_ptr<Compiler> compiler;
  std::mt19937 rng{7};
  /// Packed rows per work item (0: the CPU default, 32). At most 8 the
  /// kernel takes Q.K^T along the head dim (the decode form).
  int64_t tileQ = 0;
  /// Threads of each launch (0: the pool's).
  int threads = 0;
  /// CacheLaunchArgs::splits of each launch (0: automatic).
  int64_t splits = 0;
  /// When refMassRows >= 0, runAndCompare adds to refMass[{sequence, KV
  /// head}][position] the float64 attention mass the last refMassRows
  /// queries of each query head put on each retained position.
  int64_t refMassRows = -1;
  /// Options of a 64-page cache of `k`'s per-head policy whose two KV
  /// heads take its policies 0 and 1.
  rt::KvCacheOptions perHeadOptions(const rt::CpuKernel &k) {
    rt::KvCacheOptions o;
    o.policy = *k.info().cache;
    o.numKvHeads = Hkv, o.headDim = D, o.numPages = 64, o.headKinds = {0, 1};
    return o;
  }
  /// Per KV head, when given: refMassRows of each (a cache whose heads
  /// score differently).
  std::vector<int64_t> refMassRowsByHead;
  std::map<std::pair<int64_t, int64_t>, std::map<int32_t, double>> refMass;
  std::normal_distribution<float> normal;

  void SetUp() override {
    CompilerOptions o;
    o.cacheDir = dir.path;
    compiler = Compiler::create(o);
    ASSERT_TRUE(compiler->loadString(kSource, "kv.attn"));
  }

  std::shared_ptr<rt::CpuKernel> kernel(const std::string &name) {
    KernelSpec spec;
    spec.dtype = "bf16";
    spec.headDim = D;
    spec.kvCache = true;
    spec.tileQ = tileQ;
    auto k = compiler->getKernel(name, spec);
    EXPECT_TRUE(bool(k)) << k.message();
    return k ? *k : nullptr;
  }

  /// A cache for kernel `k`'s policy (bf16 input: int8 policies quantize).
  std::unique_ptr<rt::KvCache> makeCache(const rt::CpuKernel &k, int64_t pages,
                                         int64_t maxTokens = 0) {
    rt::KvCacheOptions o;
    o.policy = *k.info().cache;
    o.numKvHeads = Hkv;
    o.headDim = D;
    o.numPages = pages;
    o.maxTokens = maxTokens;
    o.inputDtype = "bf16";
    auto c = rt::KvCache::create(o);
    EXPECT_TRUE(bool(c)) << c.message();
    return c ? std::move(*c) : nullptr;
  }

  /// Draws n random bf16 tokens per KV head into k / v rows [Hkv, n, D]
  /// (from row `first` on), and their values into `added`.
  void drawTokens(BfTensor &k, BfTensor &v, int64_t first, int64_t n, History &added) {
    for (int64_t hh = 0; hh < Hkv; ++hh)
      for (int64_t t = 0; t < n; ++t) {
        std::vector<float> kr(D), vr(D);
        const int64_t row = first + hh * n + t;
        for (int64_t d = 0; d < D; ++d) {
          uint16_t kb = rt::floatToBf16(normal(rng)), vb = rt::floatToBf16(normal(rng));
          k.data[row * D + d] = kb;
          v.data[row * D + d] = vb;
          kr[d] = rt::bf16ToFloat(kb);
          vr[d] = rt::bf16ToFloat(vb);
        }
        added.k[hh].push_back(kr);
        added.v[hh].push_back(vr);
      }
  }
  /// The tokens of `added` appended to `h`.
  static void record(History &h, const History &added) {
    for (int64_t hh = 0; hh < Hkv; ++hh) {
      h.k[hh].insert(h.k[hh].end(), added.k[hh].begin(), added.k[hh].end());
      h.v[hh].insert(h.v[hh].end(), added.v[hh].begin(), added.v[hh].end());
    }
  }

  /// Appends n random tokens to `seq`, recording them in `h`.
  rt::Status append(rt::KvCache &c, int64_t seq, int64_t n, History &h) {
    BfTensor k({Hkv, n, D}), v({Hkv, n, D});
    History added;
    drawTokens(k, v, 0, n, added);
    rt::Status s = c.append(seq, &k.t, &v.t);
    if (s)
      record(h, added);
    return s;
  }

  /// Appends n random tokens to each of `seqs` in one batch append (the
  /// tokens append() would draw for them one by one, in order), recording
  /// them in `hist` when it succeeds.
  rt::Status appendBatch(rt::KvCache &c, const std::vector<int64_t> &seqs, int64_t n,
                         std::vector<History> &hist) {
    const int64_t B = int64_t(seqs.size());
    BfTensor k({B, Hkv, n, D}), v({B, Hkv, n, D});
    std::vector<History> added(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      drawTokens(k, v, b * Hkv * n, n, added[size_t(b)]);
    rt::Status s = c.append(seqs, &k.t, &v.t);
    if (s)
      for (int64_t b = 0; b < B; ++b)
        record(hist[size_t(b)], added[size_t(b)]);
    return s;
  }

  /// Runs `k` for the last nq tokens of every sequence and compares O and
  /// LSE with float64 attention over the retained positions; returns the
  /// largest relative error of O.
  /// Runs `k` for the last nq tokens of every sequence and compares O and
  /// LSE with float64 attention over the retained positions of `hist`;
  /// returns the largest relative error of O. With `other`, the same
  /// outputs against `other`'s values too: `otherErr` gets ||O - ref|| /
  /// ||ref|| over all rows (DESIGN.md's measure), for the unquantized K/V
  /// of an int8 cache.
  double runAndCompare(const rt::CpuKernel &k, rt::KvCache &c, const std::vector<int64_t> &seqs,
                       const std::vector<History> &hist, int64_t nq,
                       const std::function<bool(int64_t, int64_t, int64_t)> &mask,
                       bool interleaved = false, const std::vector<History> *other = nullptr,
                       double *otherErr = nullptr) {
    const int64_t B = int64_t(seqs.size());
    BfTensor q({B, Hq, nq, D});
    std::vector<float> qf(q.data.size());
    for (size_t i = 0; i < q.data.size(); ++i) {
      q.data[i] = rt::floatToBf16(normal(rng));
      qf[i] = rt::bf16ToFloat(q.data[i]);
    }
    F32Tensor o({B, Hq, nq, D}), lse({B, Hq, nq});
    rt::CacheLaunchArgs a;
    a.q = &q.t, a.o = &o.t, a.lse = &lse.t, a.cache = &c, a.sequences = seqs;
    a.numThreads = threads;
    a.splits = splits;
    rt::Status s = k.launch(a);
    EXPECT_TRUE(s) << s.message();
    double worst = 0, otherDiff = 0, otherNorm = 0;
    for (int64_t b = 0; b < B; ++b) {
      int64_t L = c.length(seqs[b]);
      for (int64_t h = 0; h < Hq; ++h) {
        int64_t kh = interleaved ? h % Hkv : h / (Hq / Hkv);
        std::vector<int32_t> kept = c.retainedPositions(seqs[b], kh);
        for (int64_t i = 0; i < nq; ++i) {
          int64_t qp = L - nq + i;
          const float *qr = &qf[((b * Hq + h) * nq + i) * D];
          const float *out = &o.data[((b * Hq + h) * nq + i) * D];
          // Relative error of `out` against attention over `hs`'s values;
          // the reference LSE in `refLse`.
          auto compare = [&](const History &hs, double &refLse, double *diffSum = nullptr,
                             double *normSum = nullptr) {
            std::vector<double> sc;
            std::vector<int32_t> keys;
            double m = -INFINITY;
            for (int32_t kp : kept) {
              if (!mask(h, qp, kp))
                continue;
              double dot = 0;
              for (int64_t d = 0; d < D; ++d)
                dot += double(qr[d]) * hs.k[kh][kp][d];
              sc.push_back(dot / std::sqrt(double(D)));
              keys.push_back(kp);
              m = std::max(m, sc.back());
            }
            std::vector<double> ref(D, 0.0);
            double sum = 0;
            for (size_t j = 0; j < sc.size(); ++j) {
              double p = std::exp(sc[j] - m);
              sum += p;
              for (int64_t d = 0; d < D; ++d)
                ref[d] += p * hs.v[kh][keys[j]][d];
            }
            double diff = 0, norm = 0;
            for (int64_t d = 0; d < D; ++d) {
              double r = sum > 0 ? ref[d] / sum : 0.0;
              diff += (out[d] - r) * (out[d] - r);
              norm += r * r;
            }
            refLse = sum > 0 ? m + std::log(sum) : -INFINITY;
            if (diffSum) {
              *diffSum += diff;
              *normSum += norm;
            }
            return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
          };
          double refLse, ignored;
          worst = std::max(worst, compare(hist[b], refLse));
          const int64_t massRows =
              refMassRowsByHead.empty() ? refMassRows : refMassRowsByHead[size_t(kh)];
          if (massRows >= 0 && i >= nq - massRows && !std::isinf(refLse))
            for (int32_t kp : kept) {
              if (!mask(h, qp, kp))
                continue;
              double dot = 0;
              for (int64_t d = 0; d < D; ++d)
                dot += double(qr[d]) * hist[b].k[kh][kp][d];
              refMass[{seqs[b], kh}][kp] += std::exp(dot / std::sqrt(double(D)) - refLse);
            }
          if (other)
            compare((*other)[b], ignored, &otherDiff, &otherNorm);
          float gotLse = lse.data[(b * Hq + h) * nq + i];
          if (std::isinf(refLse))
            EXPECT_TRUE(std::isinf(gotLse) && gotLse < 0) << "seq " << seqs[b] << " q " << qp;
          else
            EXPECT_NEAR(gotLse, refLse, 1e-3 * std::max(1.0, std::abs(refLse)));
        }
      }
    }
    if (otherErr)
      *otherErr = otherNorm > 0 ? std::sqrt(otherDiff / otherNorm) : 0.0;
    return worst;
  }

  /// `hist` with every position `c` retains replaced by what it stores
  /// (dequantized int8).
  std::vector<History> stored(const rt::KvCache &c, const std::vector<int64_t> &seqs,
                              std::vector<History> hist) {
    for (size_t b = 0; b < seqs.size(); ++b)
      for (int64_t h = 0; h < Hkv; ++h)
        for (int32_t p : c.retainedPositions(seqs[b], h)) {
          rt::Status s = c.readToken(seqs[b], p, h, hist[b].k[h][p].data(), hist[b].v[h][p].data());
          EXPECT_TRUE(s) << s.message();
        }
    return hist;
  }
};

bool causal(int64_t, int64_t q, int64_t k) { return k <= q; }

/// Retention all, 4-token pages: prefill chunks and decode steps of three
/// sequences of different lengths, crossing page boundaries, GQA 4/2.
TEST_F(KvCacheTest, AllRetentionMatchesReference) {
  auto k = kernel("over_all");
  ASSERT_TRUE(k);
  auto c = makeCache(*k, 128);
  ASSERT_TRUE(c);
  std::vector<int64_t> seqs;
  std::vector<History> hist(3);
  for (int i = 0; i < 3; ++i)
    seqs.push_back(*c->addSequence());
  std::uniform_int_distribution<int> chunk(1, 9);
  for (int step = 0; step < 12; ++step) {
    // Every sequence gets the same number of new tokens this step (the
    // queries), after different prefixes.
    int64_t n = step < 3 ? chunk(rng) + 3 * step : 1 + step % 3;
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(append(*c, seqs[i], n + (step == 0 ? i * 5 : 0), hist[i]));
    double err = runAndCompare(*k, *c, seqs, hist, n, causal);
    EXPECT_LT(err, 1e-2) << "step " << step;
  }
  for (int i = 0; i < 3; ++i) {
    for (int64_t h = 0; h < Hkv; ++h) {
      std::vector<int32_t> kept = c->retainedPositions(seqs[i], h);
      ASSERT_EQ(int64_t(kept.size()), c->length(seqs[i]));
      for (size_t p = 0; p < kept.size(); ++p)
        EXPECT_EQ(kept[p], int32_t(p));
    }
  }
}

/// The mask is evaluated at logical positions, not slots: with sink +
/// window the slots shift (pages are released), the positions do not.
TEST_F(KvCacheTest, MaskSeesLogicalPositions) {
  auto even = [](int64_t, int64_t q, int64_t kk) { return kk <= q && (kk % 2 == 0 || kk == q); };
  for (const char *name : {"even_keys", "even_stream"}) {
    SCOPED_TRACE(name);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    auto c = makeCache(*k, 32);
    std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
    std::vector<History> hist(2);
    ASSERT_TRUE(append(*c, seqs[0], 13, hist[0]));
    ASSERT_TRUE(append(*c, seqs[1], 6, hist[1]));
    EXPECT_LT(runAndCompare(*k, *c, seqs, hist, 5, even), 1e-2);
    for (int step = 0; step < 9; ++step) {
      for (int i = 0; i < 2; ++i)
        ASSERT_TRUE(append(*c, seqs[i], 1 + step % 2, hist[i]));
      EXPECT_LT(runAndCompare(*k, *c, seqs, hist, 1 + step % 2, even), 1e-2) << step;
    }
  }
}

/// Query heads packed into one item's rows keep their own head index in
/// the mask (h per lane), for grouped and interleaved head mappings.
TEST_F(KvCacheTest, PackedHeadsKeepTheirHead) {
  auto perHead = [](int64_t h, int64_t q, int64_t kk) {
    return kk <= q && (h % 2 == 0 || q - kk < 3);
  };
  for (bool il : {false, true}) {
    auto k = kernel(il ? "head_mask_il" : "head_mask");
    ASSERT_TRUE(k);
    auto c = makeCache(*k, 32);
    std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
    std::vector<History> hist(2);
    ASSERT_TRUE(append(*c, seqs[0], 11, hist[0]));
    ASSERT_TRUE(append(*c, seqs[1], 8, hist[1]));
    for (int64_t nq : {1, 3, 8}) {
      for (int i = 0; i < 2; ++i)
        ASSERT_TRUE(append(*c, seqs[i], nq, hist[i]));
      EXPECT_LT(runAndCompare(*k, *c, seqs, hist, nq, perHead, il), 1e-2) << nq;
    }
  }
}

/// StreamingLLM: sink 2 + window 7 on 4-token pages. Step by step the cache
/// retains exactly {0, 1} and the last 7 positions, its pages stay bounded
/// (constant memory), and decode equals the reference over those positions.
TEST_F(KvCacheTest, SinkWindowDecodeIsExactAndBounded) {
  for (const char *name : {"over_stream", "over_flat"}) {
    SCOPED_TRACE(name);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    bool flat = std::string(name) == "over_flat";
    auto c = makeCache(*k, flat ? 3 * Hkv : 32, flat ? 12 : 0);
    ASSERT_TRUE(c);
    std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence(), *c->addSequence()};
    std::vector<History> hist(3);
    // Different prompt lengths, then 60 decode steps.
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(append(*c, seqs[i], 1 + 3 * i, hist[i]));
    int64_t maxPages = 0;
    for (int step = 0; step < 60; ++step) {
      for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(append(*c, seqs[i], 1, hist[i])) << "step " << step;
      double err = runAndCompare(*k, *c, seqs, hist, 1, causal);
      ASSERT_LT(err, 1e-2) << "step " << step;
      for (int i = 0; i < 3; ++i) {
        int64_t L = c->length(seqs[i]);
        std::vector<int32_t> want;
        for (int64_t p = 0; p < L; ++p)
          if (p < 2 || p >= L - 7)
            want.push_back(int32_t(p));
        for (int64_t h = 0; h < Hkv; ++h)
          ASSERT_EQ(c->retainedPositions(seqs[i], h), want) << "step " << step;
      }
      maxPages = std::max(maxPages, c->pagesInUse());
    }
    // ceil(2/4) + ceil(7/4) + 1 pages per sequence and head, however long
    // it grows (contiguous: one page each).
    if (flat)
      EXPECT_EQ(maxPages, 3 * Hkv);
    else
      EXPECT_LE(maxPages, 3 * Hkv * 4);
    EXPECT_EQ(c->bytesPerTokenPerHead(), 2 * D * 2);
    EXPECT_EQ(c->bytesInUse(), c->pagesInUse() * c->pageSize() * 2 * D * 2);
    // A prefill chunk longer than the window: its early tokens are dropped
    // on the way in, and its queries see exactly what is retained.
    ASSERT_TRUE(append(*c, seqs[0], 10, hist[0]));
    EXPECT_LT(runAndCompare(*k, *c, {seqs[0]}, {hist[0]}, 10, causal), 1e-2);
  }
}

/// int8 storage (QServe-style KV8), per token and per group of 8, and int4
/// (KV4, two per byte) per group of 8: the cache quantizes on append, the
/// kernel dequantizes while it reads. Against the stored (dequantized)
/// values the kernel is exact up to f32 rounding; against the unquantized
/// K/V the error is the quantization's (printed), bounded by 1e-2 for int8
/// and 1.25e-1 for int4: symmetric 4-bit rounding (max|x| / 7 per group of
/// 8) leaves 9-11% on random normal data (8.8e-2 and 1.1e-1 with two
/// seeds), above the issue's 5e-2 target (stated in docs/kv-cache.md).
/// Every storage sees the same K/V, so f16 scales are compared with f32
/// ones on the same data: their rounding (2^-11 relative) is lost in the
/// int4 / int8 steps.
TEST_F(KvCacheTest, QuantizedStorageIsDequantizedInTheKernel) {
  std::map<std::string, double> worst;
  for (const char *name : {"over_q8_token", "over_q8_group", "over_q4_group", "over_f8_token",
                           "over_f8_group", "over_q4_group_h", "over_q8_group_h"}) {
    SCOPED_TRACE(name);
    rng.seed(7); // the same K/V for every storage: errors side by side
    auto k = kernel(name);
    ASSERT_TRUE(k);
    auto cc = makeCache(*k, 64);
    ASSERT_TRUE(cc);
    rt::KvCache &c = *cc;
    EXPECT_TRUE(c.quantized());
    // int8 values (int4: half a byte) plus f32 scales (1 per token and
    // head, or D / 8; f16 scales: 2 bytes each).
    bool int4 = std::string(name).find("q4") != std::string::npos;
    bool f16Scales = std::string(name).back() == 'h';
    EXPECT_EQ(c.scaleBytes(), f16Scales ? 2 : 4);
    bool fp8 = std::string(name).find("f8") != std::string::npos;
    EXPECT_EQ(c.storesFp8(), fp8);
    int64_t groups =
        std::string(name) == "over_q8_token" || std::string(name) == "over_f8_token" ? 1 : D / 8;
    EXPECT_EQ(c.bytesPerTokenPerHead(), (int4 ? D : 2 * D) + 2 * c.scaleBytes() * groups);
    std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
    std::vector<History> hist(2);
    double worstQ = 0;
    for (int step = 0; step < 8; ++step) {
      int64_t n = step == 0 ? 6 : 1 + step % 3;
      for (int i = 0; i < 2; ++i)
        ASSERT_TRUE(append(c, seqs[i], n + (step == 0 ? 3 * i : 0), hist[i]));
      double quantErr = 0;
      double err =
          runAndCompare(*k, c, seqs, stored(c, seqs, hist), n, causal, false, &hist, &quantErr);
      EXPECT_LT(err, 1e-4) << "step " << step;
      worstQ = std::max(worstQ, quantErr);
    }
    std::printf("[quantization] %s: O rel. error vs unquantized bf16 K/V %.2e\n", name, worstQ);
    // fp8 e4m3 keeps 3 mantissa bits (a relative step of 1/8 .. 1/16):
    // a few percent, between int8 and int4.
    EXPECT_LT(worstQ, int4 ? 1.25e-1 : fp8 ? 5e-2 : 1e-2);
    EXPECT_GT(worstQ, 0.0); // it is quantized
    worst[name] = worstQ;
  }
  for (const char *name : {"over_q4_group", "over_q8_group"})
    EXPECT_LT(worst[std::string(name) + "_h"], 1.1 * worst[name])
        << name << ": f16 scales against f32 ones";
}

/// Split-KV on the CPU: a step's slots in ranges of whole pages, each its
/// own work items, merged by their LSEs, equal the reference over the
/// retained positions: all retention, sink + window (ring slots, released
/// pages), a contiguous cache (one page: never split), a data-dependent
/// mask, quantized pages; Nq 1 and 3; sequences shorter than a split
/// (empty ranges) and more splits than pages.
TEST_F(KvCacheTest, SplitKvMatchesReference) {
  auto even = [](int64_t, int64_t q, int64_t kk) { return kk <= q && (kk % 2 == 0 || kk == q); };
  for (const char *name : {"over_all", "over_stream", "over_flat", "even_keys", "over_q8_group",
                           "over_q4_group", "over_f8_token", "over_q4_group_h"}) {
    SCOPED_TRACE(name);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    // The contiguous cache is one page of 16 slots a sequence: no split.
    const bool flat = std::string(name) == "over_flat";
    auto cc = makeCache(*k, 256, flat ? 16 : 0);
    ASSERT_TRUE(cc);
    rt::KvCache &c = *cc;
    std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence(), *c.addSequence()};
    std::vector<History> hist(3);
    const int64_t prompts[3] = {150, 5, 61};
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(append(c, seqs[i], prompts[i], hist[i]));
    std::function<bool(int64_t, int64_t, int64_t)> mask = causal;
    if (std::string(name) == "even_keys")
      mask = even;
    for (int64_t s : {2, 3, 7, 1000}) {
      splits = s;
      for (int64_t nq : {1, 3}) {
        SCOPED_TRACE(s * 10 + nq);
        for (int i = 0; i < 3; ++i)
          ASSERT_TRUE(append(c, seqs[i], nq, hist[i]));
        double err = runAndCompare(*k, c, seqs, stored(c, seqs, hist), nq, mask);
        EXPECT_LT(err, 1e-4);
      }
    }
    splits = 0;
  }
}

/// The automatic split (CacheLaunchArgs::splits 0) depends on the step's
/// work items and length only, keeps whole pages and at least 4096 slots a
/// split, and never makes an empty one; a long sequence at B = 1 takes it
/// and matches the reference; budget caches refuse splits.
TEST_F(KvCacheTest, AutomaticSplitKv) {
  using rt::cpuDecodeSplits;
  EXPECT_EQ(cpuDecodeSplits(0, 8, 65536, 16), std::make_pair(int64_t(8), int64_t(8192)));
  EXPECT_EQ(cpuDecodeSplits(0, 64, 65536, 16).first, 1) << "64 items fill 64 units";
  EXPECT_EQ(cpuDecodeSplits(0, 2, 9000, 4), std::make_pair(int64_t(2), int64_t(4500)));
  EXPECT_EQ(cpuDecodeSplits(0, 1, 8191, 16).first, 1) << "two splits need 2 x 4096 slots";
  EXPECT_EQ(cpuDecodeSplits(0, 1, 1 << 20, 16).first, 64);
  EXPECT_EQ(cpuDecodeSplits(5, 1, 100, 16), std::make_pair(int64_t(4), int64_t(32)))
      << "7 pages in splits of 2 pages: 4 splits";
  EXPECT_EQ(cpuDecodeSplits(1000, 1, 10, 4).first, 3) << "at most one split per page";
  EXPECT_EQ(cpuDecodeSplits(3, 1, 0, 4).first, 1);

  auto k = kernel("over_all");
  ASSERT_TRUE(k);
  auto cc = makeCache(*k, 4600); // pages hold one KV head's 4 slots
  ASSERT_TRUE(cc);
  std::vector<int64_t> seqs = {*cc->addSequence()};
  std::vector<History> hist(1);
  ASSERT_TRUE(append(*cc, seqs[0], 9000, hist[0]));
  ASSERT_EQ(cpuDecodeSplits(0, Hkv, cc->length(seqs[0]), cc->pageSize()).first, 2);
  EXPECT_LT(runAndCompare(*k, *cc, seqs, hist, 1, causal), 1e-2);
  ASSERT_TRUE(append(*cc, seqs[0], 2, hist[0]));
  EXPECT_LT(runAndCompare(*k, *cc, seqs, hist, 2, causal), 1e-2);

  auto h = kernel("over_h2o");
  ASSERT_TRUE(h);
  auto hc = makeCache(*h, 64);
  ASSERT_TRUE(hc);
  std::vector<int64_t> one = {*hc->addSequence()};
  std::vector<History> hh(1);
  ASSERT_TRUE(append(*hc, one[0], 20, hh[0]));
  BfTensor q({1, Hq, 1, D});
  F32Tensor o({1, Hq, 1, D});
  rt::CacheLaunchArgs a;
  a.q = &q.t, a.o = &o.t, a.cache = hc.get(), a.sequences = one, a.splits = 2;
  rt::Status s = h->launch(a);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("eviction scores need each row's whole softmax"), std::string::npos)
      << s.message();
  a.splits = -1;
  s = h->launch(a);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("splits must be >= 0"), std::string::npos) << s.message();
  a.splits = 1;
  EXPECT_TRUE(h->launch(a));
}

/// fp8 e4m3 subnormals (exponent bits 0: m 2^-9 of the scale) reach the
/// kernel exactly: tokens whose elements lie from 2^-12 to 2^-17 of their
/// largest (which stores 448), against the values the cache stores (read
/// back through the host's conversions).
TEST_F(KvCacheTest, Fp8SubnormalsDecodeExactly) {
  auto k = kernel("over_f8_token");
  ASSERT_TRUE(k);
  auto cc = makeCache(*k, 64);
  ASSERT_TRUE(cc);
  rt::KvCache &c = *cc;
  std::vector<int64_t> seqs = {*c.addSequence()};
  std::vector<History> hist(1);
  const int64_t n = 12;
  BfTensor kt({Hkv, n, D}), vt({Hkv, n, D});
  for (int64_t h = 0; h < Hkv; ++h)
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> kr(D), vr(D);
      for (int64_t d = 0; d < D; ++d) {
        // The first element sets the scale (it stores 448); the others lie
        // 2^-12 .. 2^-17 below it, where e4m3 turns subnormal (2^-15).
        float mag =
            d == 0 ? 1.0f : std::ldexp(1.0f + 0.125f * float((t + d) % 8), -12 - int(d % 6));
        float sign = (t + d + h) % 3 ? 1.0f : -1.0f;
        uint16_t kb = rt::floatToBf16(sign * mag), vb = rt::floatToBf16(-sign * mag);
        kt.data[size_t((h * n + t) * D + d)] = kb, vt.data[size_t((h * n + t) * D + d)] = vb;
        kr[size_t(d)] = rt::bf16ToFloat(kb), vr[size_t(d)] = rt::bf16ToFloat(vb);
      }
      hist[0].k[size_t(h)].push_back(kr);
      hist[0].v[size_t(h)].push_back(vr);
    }
  ASSERT_TRUE(c.append(seqs[0], &kt.t, &vt.t));
  // Some stored elements are subnormal e4m3 (|x| / scale < 2^-6).
  std::vector<History> st = stored(c, seqs, hist);
  int subnormals = 0;
  for (int64_t h = 0; h < Hkv; ++h)
    for (int64_t t = 0; t < n; ++t) {
      float scale = 0;
      for (float x : st[0].v[size_t(h)][size_t(t)])
        scale = std::max(scale, std::abs(x) / 448.0f);
      for (float x : st[0].v[size_t(h)][size_t(t)])
        subnormals += x != 0 && std::abs(x) < scale * 0.015625f;
    }
  EXPECT_GT(subnormals, 20);
  EXPECT_LT(runAndCompare(*k, c, seqs, st, 4, causal), 1e-4);
}

/// The host's fp8 e4m3 conversions (the bytes an fp8 cache stores; the GPU's
/// append kernel must produce the same): every finite code round-trips,
/// ties go to the even code, values saturate at 448, subnormals are
/// multiples of 2^-9.
TEST(E4M3, ConversionsAreExactAndNearestEven) {
  for (int code = 0; code < 256; ++code) {
    float f = rt::e4m3ToFloat(uint8_t(code));
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(f)) << code;
      continue;
    }
    EXPECT_EQ(rt::floatToE4M3(f), code == 0x80 ? 0x80 : code) << code << " = " << f;
  }
  EXPECT_EQ(rt::e4m3ToFloat(0x7e), 448.f);
  EXPECT_EQ(rt::e4m3ToFloat(0x08), std::ldexp(1.f, -6)); // smallest normal
  EXPECT_EQ(rt::e4m3ToFloat(0x01), std::ldexp(1.f, -9)); // smallest subnormal
  EXPECT_EQ(rt::floatToE4M3(1000.f), 0x7e);              // saturates
  EXPECT_EQ(rt::floatToE4M3(-1e9f), 0xfe);
  // 1.0625 is halfway between 1 (0x38) and 1.125 (0x39): to the even 0x38;
  // 1.1875 between 1.125 and 1.25 (0x3a): to 0x3a.
  EXPECT_EQ(rt::floatToE4M3(1.0625f), 0x38);
  EXPECT_EQ(rt::floatToE4M3(1.1875f), 0x3a);
  EXPECT_EQ(rt::floatToE4M3(1.07f), 0x39);
  EXPECT_EQ(rt::floatToE4M3(std::ldexp(1.5f, -9)), 0x02); // subnormal tie to even
}

/// Per-head policies (DuoAttention): head_kind = {0, 1} gives KV head 0
/// retention all and KV head 1 sink(2) + window(7). Each head retains its
/// own positions (and its query heads attend over exactly those), the
/// streaming head's pages stay bounded while the retrieval head's grow.
TEST_F(KvCacheTest, PerHeadPoliciesDuoAttention) {
  auto k = kernel("duo");
  ASSERT_TRUE(k);
  const rt::CachePolicyInfo &policy = *k->info().cache;
  ASSERT_EQ(policy.layout, "per_head");
  ASSERT_EQ(policy.headPolicies.size(), 2u);
  EXPECT_EQ(policy.headPolicies[1].name, "stream_kv");
  rt::KvCacheOptions o;
  o.policy = policy;
  o.numKvHeads = Hkv, o.headDim = D, o.numPages = 64;
  o.headKinds = {0, 1};
  auto cc = rt::KvCache::create(o);
  ASSERT_TRUE(bool(cc)) << cc.message();
  rt::KvCache &c = **cc;
  EXPECT_EQ(c.headPolicy(1).retention, "sink_window");
  std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
  std::vector<History> hist(2);
  ASSERT_TRUE(append(c, seqs[0], 5, hist[0]));
  ASSERT_TRUE(append(c, seqs[1], 9, hist[1]));
  for (int step = 0; step < 40; ++step) {
    int64_t n = 1 + (step % 5 == 0);
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE(append(c, seqs[i], n, hist[i]));
    ASSERT_LT(runAndCompare(*k, c, seqs, hist, n, causal), 1e-2) << "step " << step;
    for (int i = 0; i < 2; ++i) {
      int64_t L = c.length(seqs[i]);
      ASSERT_EQ(int64_t(c.retainedPositions(seqs[i], 0).size()), L);
      std::vector<int32_t> want;
      for (int64_t p = 0; p < L; ++p)
        if (p < 2 || p >= L - 7)
          want.push_back(int32_t(p));
      ASSERT_EQ(c.retainedPositions(seqs[i], 1), want) << "step " << step;
      EXPECT_LE(c.pagesOf(seqs[i], 1), 4);
    }
  }
  EXPECT_GE(c.pagesOf(seqs[0], 0), 12); // 5 + 48 tokens in 4-token pages
  // The table must cover every KV head with a known policy.
  o.headKinds = {0, 2};
  EXPECT_NE(rt::KvCache::create(o).message().find("head kind 2"), std::string::npos);
  o.headKinds = {0};
  EXPECT_NE(rt::KvCache::create(o).message().find("headKinds must give 2 entries"),
            std::string::npos);
}

/// What a budget head keeps when it evicts down to `budget` before
/// position `length` is appended: the positions >= length - recent, and of
/// the others those of highest score, ties to the later position.
std::vector<int32_t> budgetSurvivors(const std::vector<int32_t> &kept,
                                     const std::vector<float> &score, int64_t length,
                                     int64_t budget, int64_t recent) {
  if (int64_t(kept.size()) <= budget)
    return kept;
  std::vector<size_t> older;
  std::vector<int32_t> out;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (kept[i] >= length - recent)
      out.push_back(kept[i]);
    else
      older.push_back(i);
  }
  std::sort(older.begin(), older.end(), [&](size_t a, size_t b) {
    return score[a] != score[b] ? score[a] > score[b] : kept[a] > kept[b];
  });
  for (size_t i = 0; i < older.size() && int64_t(out.size()) < budget; ++i)
    out.push_back(kept[older[i]]);
  std::sort(out.begin(), out.end());
  return out;
}

/// The cache's eviction scores of (seq, head) against the float64 mass in
/// refMass.
void expectScores(const rt::KvCache &c, int64_t seq, int64_t head,
                  const std::map<int32_t, double> &want) {
  std::vector<int32_t> kept = c.retainedPositions(seq, head);
  std::vector<float> got = c.scores(seq, head);
  ASSERT_EQ(got.size(), kept.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    auto it = want.find(kept[i]);
    double w = it == want.end() ? 0.0 : it->second;
    EXPECT_NEAR(got[i], w, 1e-4 * std::max(1.0, w))
        << "position " << kept[i] << " seq " << seq << " head " << head;
  }
}

/// H2O: budget(12, h2o), 6 recent positions. Prompts of different lengths
/// (attended whole), then decode: before every append the expected
/// survivors follow from the cache's own scores by the rule; after it the
/// cache holds exactly those plus the new token, its pages stay bounded,
/// the scores equal the float64 accumulated attention mass, and decode
/// equals float64 attention over the retained positions. Paged (slots
/// compacted by moves) and contiguous.
TEST_F(KvCacheTest, BudgetH2OKeepsHeavyHittersAndRecent) {
  for (const char *name : {"over_h2o", "over_h2o_flat"}) {
    SCOPED_TRACE(name);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    EXPECT_EQ(k->info().cache->retention, "budget");
    EXPECT_EQ(k->info().cache->budget, 12);
    EXPECT_EQ(k->info().cache->evict, "h2o");
    bool flat = std::string(name) == "over_h2o_flat";
    auto c = makeCache(*k, flat ? 3 * Hkv : 64, flat ? 24 : 0);
    ASSERT_TRUE(c);
    refMass.clear();
    refMassRows = 1 << 30; // every query counts
    std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence(), *c->addSequence()};
    std::vector<History> hist(3);
    const int64_t prompt[3] = {5, 20, 9};
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(append(*c, seqs[i], prompt[i], hist[i]));
      // The whole prompt is kept for its own queries.
      EXPECT_EQ(int64_t(c->retainedPositions(seqs[i]).size()), prompt[i]);
      EXPECT_LT(runAndCompare(*k, *c, {seqs[i]}, {hist[i]}, prompt[i], causal), 1e-2);
    }
    for (int step = 0; step < 40; ++step) {
      std::vector<std::vector<std::vector<int32_t>>> want(3);
      for (int i = 0; i < 3; ++i)
        for (int64_t h = 0; h < Hkv; ++h) {
          int64_t L = c->length(seqs[i]);
          want[i].push_back(
              budgetSurvivors(c->retainedPositions(seqs[i], h), c->scores(seqs[i], h), L, 12, 6));
          want[i].back().push_back(int32_t(L));
        }
      for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(append(*c, seqs[i], 1, hist[i])) << "step " << step;
      for (int i = 0; i < 3; ++i)
        for (int64_t h = 0; h < Hkv; ++h) {
          ASSERT_EQ(c->retainedPositions(seqs[i], h), want[i][h]) << "step " << step;
          EXPECT_LE(c->pagesOf(seqs[i], h), flat ? 1 : 4); // ceil(13 / 4)
        }
      ASSERT_LT(runAndCompare(*k, *c, seqs, hist, 1, causal), 1e-2) << "step " << step;
      for (int i = 0; i < 3; ++i)
        for (int64_t h = 0; h < Hkv; ++h)
          expectScores(*c, seqs[i], h, refMass[{seqs[i], h}]);
    }
    // Old heavy hitters survive next to the recent positions.
    std::vector<int32_t> kept = c->retainedPositions(seqs[1], 0);
    EXPECT_EQ(kept.size(), 13u);
    EXPECT_LT(kept.front(), c->length(seqs[1]) - 7);
    // evict() alone brings a head to its budget; a second call changes nothing.
    ASSERT_TRUE(c->evict(seqs[1]));
    EXPECT_EQ(c->retainedPositions(seqs[1], 0).size(), 12u);
    std::vector<int32_t> after = c->retainedPositions(seqs[1], 1);
    ASSERT_TRUE(c->evict(seqs[1]));
    EXPECT_EQ(c->retainedPositions(seqs[1], 1), after);
  }
  refMassRows = -1;
  // An append the pool cannot take evicts nothing: 13 tokens fill 8 pages
  // (4 per head); 5 more would need 5 pages per head after evicting one.
  auto k = kernel("over_h2o");
  auto c = makeCache(*k, 8);
  int64_t seq = *c->addSequence();
  History h;
  ASSERT_TRUE(append(*c, seq, 13, h));
  EXPECT_EQ(c->freePages(), 0);
  rt::Status s = append(*c, seq, 5, h);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("exhausted"), std::string::npos) << s.message();
  EXPECT_EQ(c->retainedPositions(seq, 0).size(), 13u);
  EXPECT_EQ(c->length(seq), 13);
  ASSERT_TRUE(append(*c, seq, 4, h)); // evicts one, then fits
  EXPECT_EQ(c->retainedPositions(seq, 1).size(), 16u);
}

/// Eviction is deterministic: the same appends and queries give the same
/// retained positions and bit-identical scores whatever the thread count
/// and the number of q-tiles a launch has (prefill of 20 queries x 2 heads
/// = 40 packed rows: two tiles that add into the same slots).
TEST_F(KvCacheTest, BudgetEvictionIsDeterministic) {
  auto k = kernel("over_h2o");
  ASSERT_TRUE(k);
  auto scenario = [&](int nThreads) {
    threads = nThreads;
    rng.seed(11);
    auto c = makeCache(*k, 64);
    std::vector<std::pair<std::vector<int32_t>, std::vector<float>>> log;
    if (!c)
      return log;
    std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
    std::vector<History> hist(2);
    for (int i = 0; i < 2; ++i)
      EXPECT_TRUE(append(*c, seqs[i], 20, hist[i]));
    runAndCompare(*k, *c, seqs, hist, 20, causal);
    for (int step = 0; step < 25; ++step) {
      int64_t n = 1 + step % 3;
      for (int i = 0; i < 2; ++i)
        EXPECT_TRUE(append(*c, seqs[i], n, hist[i]));
      runAndCompare(*k, *c, seqs, hist, n, causal);
      for (int i = 0; i < 2; ++i)
        for (int64_t h = 0; h < Hkv; ++h)
          log.emplace_back(c->retainedPositions(seqs[i], h), c->scores(seqs[i], h));
    }
    return log;
  };
  auto one = scenario(1), three = scenario(3);
  threads = 0;
  ASSERT_EQ(one.size(), 100u);
  ASSERT_EQ(one.size(), three.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].first, three[i].first) << i;
    ASSERT_EQ(one[i].second.size(), three[i].second.size());
    for (size_t j = 0; j < one[i].second.size(); ++j)
      EXPECT_EQ(one[i].second[j], three[i].second[j]) << i << " " << j;
  }
}

/// SnapKV: the scores are the mass the last observationWindow (4) queries of
/// the latest launch put on each slot, replacing the previous ones; the
/// first append after the prompt keeps the recent positions and the
/// window's favourites.
TEST_F(KvCacheTest, BudgetSnapKVScoresFromTheObservationWindow) {
  auto k = kernel("over_snap");
  ASSERT_TRUE(k);
  rt::KvCacheOptions o;
  o.policy = *k->info().cache;
  o.numKvHeads = Hkv, o.headDim = D, o.numPages = 64, o.observationWindow = 4;
  o.snapkvPooling = 1; // the window's mass as is; pooling below
  auto cc = rt::KvCache::create(o);
  ASSERT_TRUE(bool(cc)) << cc.message();
  rt::KvCache &c = **cc;
  rt::KvCacheOptions o3 = o;
  o3.snapkvPooling = 3;
  auto pooled = rt::KvCache::create(o3);
  ASSERT_TRUE(bool(pooled)) << pooled.message();
  int64_t seq = *c.addSequence(), seq3 = *(*pooled)->addSequence();
  std::vector<History> hist(1), hist3(1);
  std::mt19937 saved = rng;
  ASSERT_TRUE(append(c, seq, 30, hist[0]));
  rng = saved;
  ASSERT_TRUE(append(**pooled, seq3, 30, hist3[0]));
  refMass.clear();
  refMassRows = 4;
  saved = rng;
  EXPECT_LT(runAndCompare(*k, c, {seq}, hist, 30, causal), 1e-2);
  for (int64_t h = 0; h < Hkv; ++h)
    expectScores(c, seq, h, refMass[{seq, h}]);
  // Pooled over 3 neighbouring positions: the same launch's window mass,
  // each score the largest of itself and its neighbours.
  auto window = refMass;
  rng = saved;
  EXPECT_LT(runAndCompare(*k, **pooled, {seq3}, hist3, 30, causal), 1e-2);
  for (int64_t h = 0; h < Hkv; ++h) {
    std::map<int32_t, double> want;
    for (int32_t p = 0; p < 30; ++p)
      for (int32_t q = std::max(0, p - 1); q <= std::min(29, p + 1); ++q)
        want[p] = std::max(want[p], window[{seq, h}][q]);
    expectScores(**pooled, seq3, h, want);
  }
  for (int step = 0; step < 12; ++step) {
    std::vector<std::vector<int32_t>> want;
    for (int64_t h = 0; h < Hkv; ++h) {
      want.push_back(
          budgetSurvivors(c.retainedPositions(seq, h), c.scores(seq, h), c.length(seq), 12, 6));
      want.back().push_back(int32_t(c.length(seq)));
    }
    ASSERT_TRUE(append(c, seq, 1, hist[0]));
    for (int64_t h = 0; h < Hkv; ++h)
      ASSERT_EQ(c.retainedPositions(seq, h), want[h]) << "step " << step;
    refMass.clear(); // snapkv replaces: only this launch's window (Nq = 1) counts
    refMassRows = 1;
    ASSERT_LT(runAndCompare(*k, c, {seq}, hist, 1, causal), 1e-2) << "step " << step;
    for (int64_t h = 0; h < Hkv; ++h)
      expectScores(c, seq, h, refMass[{seq, h}]);
  }
  refMassRows = -1;
  // Options a budget cache refuses.
  o.observationWindow = 0;
  EXPECT_NE(rt::KvCache::create(o).message().find("observationWindow"), std::string::npos);
  o.observationWindow = 4;
  o.snapkvPooling = 2;
  EXPECT_NE(rt::KvCache::create(o).message().find("snapkvPooling"), std::string::npos);
  o.snapkvPooling = 7;
  o.recentTokens = 13;
  EXPECT_NE(rt::KvCache::create(o).message().find("exceeds the budget"), std::string::npos);
}

/// A per-head mix: head 0 keeps everything, head 1 a budget of 12 (H2O).
TEST_F(KvCacheTest, BudgetPerHead) {
  auto k = kernel("duo_h2o");
  ASSERT_TRUE(k);
  rt::KvCacheOptions o = perHeadOptions(*k);
  auto cc = rt::KvCache::create(o);
  ASSERT_TRUE(bool(cc)) << cc.message();
  rt::KvCache &c = **cc;
  std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
  std::vector<History> hist(2);
  ASSERT_TRUE(append(c, seqs[0], 3, hist[0]));
  ASSERT_TRUE(append(c, seqs[1], 17, hist[1]));
  for (int step = 0; step < 30; ++step) {
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE(append(c, seqs[i], 1, hist[i]));
    ASSERT_LT(runAndCompare(*k, c, seqs, hist, 1, causal), 1e-2) << "step " << step;
    for (int i = 0; i < 2; ++i) {
      int64_t L = c.length(seqs[i]);
      EXPECT_EQ(int64_t(c.retainedPositions(seqs[i], 0).size()), L);
      EXPECT_EQ(int64_t(c.retainedPositions(seqs[i], 1).size()), std::min<int64_t>(L, 13));
    }
  }
  // A head table that picks no budget policy: the kernel still takes (and
  // fills) its mass table.
  o.headKinds = {0, 0};
  auto all = rt::KvCache::create(o);
  ASSERT_TRUE(bool(all)) << all.message();
  EXPECT_TRUE((*all)->scoresSlots());
  std::vector<History> h2(1);
  int64_t s0 = *(*all)->addSequence();
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE(append(**all, s0, 5, h2[0]));
    ASSERT_LT(runAndCompare(*k, **all, {s0}, h2, 5, causal), 1e-2) << "step " << step;
  }
  EXPECT_EQ((*all)->retainedPositions(s0, 1).size(), 15u);
}

/// H2O under a local mask (a query sees the 5 positions before it): the
/// retained heavy hitters behind the window get no mass, whole tiles of
/// them masked for every row of a launch, and the scores still follow the
/// float64 mass exactly (a skipped tile's stale scores once added
/// garbage).
TEST_F(KvCacheTest, BudgetScoresUnderALocalMask) {
  auto k = kernel("h2o_local");
  ASSERT_TRUE(k);
  auto c = makeCache(*k, 64);
  ASSERT_TRUE(c);
  auto local = [](int64_t, int64_t q, int64_t kp) { return kp <= q && q - kp < 6; };
  refMass.clear();
  refMassRows = 1 << 30;
  std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
  std::vector<History> hist(2);
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(append(*c, seqs[i], 40 + 5 * i, hist[i]));
  for (int step = 0; step < 30; ++step) {
    const int64_t n = step % 6 == 5 ? 3 : 1;
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE(append(*c, seqs[i], n, hist[i])) << "step " << step;
    ASSERT_LT(runAndCompare(*k, *c, seqs, hist, n, local), 1e-2) << "step " << step;
    for (int i = 0; i < 2; ++i)
      for (int64_t h = 0; h < Hkv; ++h)
        expectScores(*c, seqs[i], h, refMass[{seqs[i], h}]);
  }
  EXPECT_EQ(c->retainedPositions(seqs[1], 0).size(), 51u) << "the budget and the last chunk of 3";
  EXPECT_LT(c->retainedPositions(seqs[1], 0).front(), c->length(seqs[1]) - 40)
      << "positions far behind the window";
  refMassRows = -1;
}

/// Head 0 scores by H2O (every query of every launch adds), head 1 by
/// SnapKV (the last observationWindow = 4 queries of the latest launch
/// replace): a prefill of 30 queries runs as two launches (26, then the
/// window's 4) whose outputs are the one launch's; each head keeps its own
/// scores, and evicts by them, step by step.
TEST_F(KvCacheTest, BudgetHeadsScoredDifferently) {
  auto k = kernel("mixed_scores");
  ASSERT_TRUE(k);
  rt::KvCacheOptions o = perHeadOptions(*k);
  o.observationWindow = 4, o.snapkvPooling = 1;
  auto cc = rt::KvCache::create(o);
  ASSERT_TRUE(bool(cc)) << cc.message();
  rt::KvCache &c = **cc;
  EXPECT_EQ(c.scoringSplit(30), 4);
  EXPECT_EQ(c.scoringSplit(4), 0) << "a launch within the window scores every head at once";
  EXPECT_EQ(c.scoringQueries(3), 3);
  std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
  std::vector<History> hist(2);
  ASSERT_TRUE(append(c, seqs[0], 30, hist[0]));
  ASSERT_TRUE(append(c, seqs[1], 9, hist[1]));
  refMass.clear();
  refMassRowsByHead = {1 << 30, 4};
  EXPECT_LT(runAndCompare(*k, c, {seqs[0]}, {hist[0]}, 30, causal), 1e-2);
  for (int64_t h = 0; h < Hkv; ++h)
    expectScores(c, seqs[0], h, refMass[{seqs[0], h}]);
  EXPECT_LT(runAndCompare(*k, c, {seqs[1]}, {hist[1]}, 9, causal), 1e-2);
  for (int64_t h = 0; h < Hkv; ++h)
    expectScores(c, seqs[1], h, refMass[{seqs[1], h}]);
  for (int step = 0; step < 15; ++step) {
    const int64_t n = step % 5 == 4 ? 6 : 1; // a chunk past the window now and then
    std::vector<std::vector<std::vector<int32_t>>> want(2);
    for (int i = 0; i < 2; ++i)
      for (int64_t h = 0; h < Hkv; ++h) {
        int64_t L = c.length(seqs[i]);
        std::vector<int32_t> keep = budgetSurvivors(c.retainedPositions(seqs[i], h),
                                                    c.scores(seqs[i], h), L + n - 1, 12, 6);
        for (int64_t p = L; p < L + n; ++p)
          keep.push_back(int32_t(p));
        want[i].push_back(keep);
      }
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE(append(c, seqs[i], n, hist[i])) << "step " << step;
    for (int i = 0; i < 2; ++i)
      for (int64_t h = 0; h < Hkv; ++h)
        if (n == 1) // (a chunk may drop some of its own tokens)
          ASSERT_EQ(c.retainedPositions(seqs[i], h), want[i][h]) << "step " << step;
    // SnapKV's scores are the latest launch's; H2O's go on adding.
    for (int i = 0; i < 2; ++i)
      refMass.erase({seqs[i], 1});
    ASSERT_LT(runAndCompare(*k, c, seqs, hist, n, causal), 1e-2) << "step " << step;
    for (int i = 0; i < 2; ++i)
      for (int64_t h = 0; h < Hkv; ++h)
        expectScores(c, seqs[i], h, refMass[{seqs[i], h}]);
  }
  refMassRowsByHead.clear();
}

/// Random appends and removals on small pools, for paged / contiguous /
/// per-head caches: after every operation each head retains exactly what
/// its policy says, no page is owned twice or lost, and a refused append
/// (pool exhausted) leaves every sequence as it was.
TEST_F(KvCacheTest, RandomOperationsKeepTheInvariants) {
  struct Setup {
    const char *kernel;
    int64_t pages, maxTokens;
    std::vector<int32_t> kinds;
  };
  const Setup setups[] = {{"over_all", 14, 0, {}},
                          {"over_stream", 20, 0, {}},
                          {"over_flat", 8, 12, {}},
                          {"duo", 24, 0, {1, 0}}};
  std::mt19937 gen(11);
  for (const Setup &st : setups) {
    SCOPED_TRACE(st.kernel);
    auto k = kernel(st.kernel);
    ASSERT_TRUE(k);
    rt::KvCacheOptions o;
    o.policy = *k->info().cache;
    o.numKvHeads = Hkv, o.headDim = D, o.numPages = st.pages, o.maxTokens = st.maxTokens;
    o.headKinds = st.kinds;
    auto cc = rt::KvCache::create(o);
    ASSERT_TRUE(bool(cc)) << cc.message();
    rt::KvCache &c = **cc;
    EXPECT_EQ(c.slotsArePositions(), std::string(st.kernel) == "over_all");
    std::map<int64_t, History> live;
    int refused = 0;
    for (int op = 0; op < 400; ++op) {
      int what = std::uniform_int_distribution<int>(0, 9)(gen);
      if (what == 0 || live.empty()) {
        int64_t s = *c.addSequence();
        ASSERT_EQ(live.count(s), 0u);
        live[s] = History();
      } else if (what == 1) {
        auto it =
            std::next(live.begin(), std::uniform_int_distribution<size_t>(0, live.size() - 1)(gen));
        ASSERT_TRUE(c.removeSequence(it->first));
        live.erase(it);
      } else {
        auto it =
            std::next(live.begin(), std::uniform_int_distribution<size_t>(0, live.size() - 1)(gen));
        int64_t n = std::uniform_int_distribution<int64_t>(1, 6)(gen);
        std::vector<std::vector<int32_t>> before;
        for (int64_t h = 0; h < Hkv; ++h)
          before.push_back(c.retainedPositions(it->first, h));
        int64_t free = c.freePages(), len = c.length(it->first);
        rt::Status s = append(c, it->first, n, it->second);
        if (!s) {
          ++refused;
          ASSERT_TRUE(s.message().find("exhausted") != std::string::npos ||
                      s.message().find("contiguous page holds") != std::string::npos)
              << s.message();
          ASSERT_EQ(c.freePages(), free);
          ASSERT_EQ(c.length(it->first), len);
          for (int64_t h = 0; h < Hkv; ++h)
            ASSERT_EQ(c.retainedPositions(it->first, h), before[h]);
          continue;
        }
      }
      // Invariants: retention per head, and page ownership.
      int64_t owned = 0;
      for (auto &[seq, h] : live) {
        int64_t L = c.length(seq);
        for (int64_t hd = 0; hd < Hkv; ++hd) {
          const rt::CachePolicyInfo &p = c.headPolicy(hd);
          std::vector<int32_t> want;
          for (int64_t pos = 0; pos < L; ++pos)
            if (p.retention != "sink_window" || pos < p.sink || pos >= L - p.window)
              want.push_back(int32_t(pos));
          ASSERT_EQ(c.retainedPositions(seq, hd), want) << "op " << op;
          // What a CUDA launch without positions assumes.
          if (c.slotsArePositions()) {
            auto v = c.view(seq, hd);
            ASSERT_TRUE(bool(v));
            ASSERT_EQ(v->slots, L);
            for (int64_t j = 0; j < L; ++j)
              ASSERT_EQ((*v->pos)[size_t(j)], j) << "op " << op;
          }
          owned += c.pagesOf(seq, hd);
        }
      }
      ASSERT_EQ(owned, c.pagesInUse()) << "op " << op;
    }
    EXPECT_GT(refused, 0) << "the pool never ran out: the test did not reach exhaustion";
    // What is stored is still right after all of that.
    std::vector<int64_t> seqs;
    std::vector<History> hists;
    for (auto &[seq, h] : live)
      if (c.length(seq) >= 1) {
        seqs.push_back(seq);
        hists.push_back(h);
      }
    if (!seqs.empty()) {
      EXPECT_LT(runAndCompare(*k, c, seqs, hists, 1, causal), 1e-2);
    }
  }
}

/// The decode form of the kernel (tile-q <= 8: Q.K^T along the head dim,
/// K rows as vectors, one reduction per row and key) on every storage and
/// retention, decode and short prefill chunks, against the same reference.
TEST_F(KvCacheTest, DecodeFormAlongTheHeadDim) {
  for (int64_t tq : {4, 8}) {
    tileQ = tq;
    for (const char *name :
         {"over_all", "over_stream", "over_q8_token", "over_q8_group", "over_q4_group"}) {
      SCOPED_TRACE(std::string(name) + " tile-q " + std::to_string(tq));
      auto k = kernel(name);
      ASSERT_TRUE(k);
      auto cc = makeCache(*k, 64);
      ASSERT_TRUE(cc);
      rt::KvCache &c = *cc;
      std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
      std::vector<History> hist(2);
      ASSERT_TRUE(append(c, seqs[0], 9, hist[0]));
      ASSERT_TRUE(append(c, seqs[1], 3, hist[1]));
      for (int step = 0; step < 10; ++step) {
        int64_t n = 1 + step % 3;
        for (int i = 0; i < 2; ++i)
          ASSERT_TRUE(append(c, seqs[i], n, hist[i]));
        EXPECT_LT(runAndCompare(*k, c, seqs, stored(c, seqs, hist), n, causal), 1e-4)
            << "step " << step;
      }
    }
  }
}

/// Kernels over a cache with the default (prefill) tile carry decode twins
/// on tiles of 4 and 16 packed rows; launches of G x Nq <= 8 rows take the
/// first (here G = 2: Nq 1 and 2 one tile, Nq 3 two tiles), of 9-16 rows
/// the second (Nq 5, 8), larger ones (Nq 9) the default item, and all match
/// the reference step after step (H2O: the slots' mass too).
TEST_F(KvCacheTest, DecodeTwinTakesDecodeSteps) {
  auto plain = kernel("over_all");
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->info().decodeTiles.size(), 2u);
  EXPECT_EQ(plain->info().decodeTiles[0].tileQ, 4);
  EXPECT_EQ(plain->info().decodeTiles[0].tileK, 16);
  EXPECT_EQ(plain->info().decodeTiles[0].maxItems, 2);
  EXPECT_EQ(plain->info().decodeTiles[1].tileQ, 16);
  EXPECT_EQ(plain->info().decodeTiles[1].tileK, 8);
  EXPECT_EQ(plain->info().decodeTiles[1].maxItems, 1);
  tileQ = 16; // only the 4-row twin is smaller
  auto mid = kernel("over_all");
  ASSERT_TRUE(mid);
  ASSERT_EQ(mid->info().decodeTiles.size(), 1u);
  EXPECT_EQ(mid->info().decodeTiles[0].tileQ, 4);
  tileQ = 4; // already decode-sized: no twin
  auto small = kernel("over_all");
  ASSERT_TRUE(small);
  EXPECT_TRUE(small->info().decodeTiles.empty());
  tileQ = 0;
  for (const char *name : {"over_all", "over_q4_group", "over_h2o"}) {
    SCOPED_TRACE(name);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    ASSERT_EQ(k->info().decodeTiles.size(), 2u);
    auto cc = makeCache(*k, 96);
    ASSERT_TRUE(cc);
    rt::KvCache &c = *cc;
    const bool h2o = std::string(name) == "over_h2o";
    refMass.clear();
    refMassRows = h2o ? 1 << 30 : -1; // H2O: every query's mass counts
    std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
    std::vector<History> hist(2);
    ASSERT_TRUE(append(c, seqs[0], 11, hist[0]));
    ASSERT_TRUE(append(c, seqs[1], 6, hist[1]));
    for (int64_t n : {1, 2, 3, 1, 5, 8, 1, 9, 2}) {
      for (int i = 0; i < 2; ++i)
        ASSERT_TRUE(append(c, seqs[i], n, hist[i]));
      EXPECT_LT(runAndCompare(*k, c, seqs, stored(c, seqs, hist), n, causal), 1e-4) << "Nq " << n;
      for (int i = 0; h2o && i < 2; ++i)
        for (int64_t h = 0; h < Hkv; ++h)
          expectScores(c, seqs[i], h, refMass[{seqs[i], h}]);
    }
  }
}

/// KvCache::tables (what a GPU launch uploads) holds, per (sequence, KV
/// head) row, exactly what view() gives, padded with page 0 and position
/// -1; the query positions are the last Nq tokens'.
TEST_F(KvCacheTest, TablesMirrorTheViews) {
  auto k = kernel("over_stream");
  ASSERT_TRUE(k);
  auto c = makeCache(*k, 64);
  ASSERT_TRUE(c);
  std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
  std::vector<History> hist(2);
  ASSERT_TRUE(append(*c, seqs[0], 90, hist[0])); // past sink + window: slots shift
  ASSERT_TRUE(append(*c, seqs[1], 21, hist[1]));
  auto t = c->tables({seqs[1], seqs[0]}, 3);
  ASSERT_TRUE(bool(t)) << t.message();
  int64_t longest = 0;
  for (int64_t b = 0; b < 2; ++b) {
    int64_t seq = b == 0 ? seqs[1] : seqs[0];
    EXPECT_EQ(t->queryPositions[b], int32_t(c->length(seq) - 3));
    for (int64_t h = 0; h < Hkv; ++h) {
      auto v = c->view(seq, h);
      ASSERT_TRUE(bool(v));
      int64_t r = b * Hkv + h;
      EXPECT_EQ(t->lengths[r], int32_t(v->slots));
      longest = std::max(longest, v->slots);
      for (int64_t p = 0; p < t->maxPages; ++p)
        EXPECT_EQ(t->pages[r * t->maxPages + p],
                  p < int64_t(v->pages->size()) ? (*v->pages)[p] : 0);
      for (int64_t s = 0; s < t->maxSlots; ++s)
        EXPECT_EQ(t->positions[r * t->maxSlots + s], s < v->slots ? (*v->pos)[s] : -1);
    }
  }
  EXPECT_EQ(t->maxLength, longest);
  EXPECT_EQ(t->maxSlots, longest);
  EXPECT_NE(c->tables({seqs[1]}, 22).message().find("fewer than the 22 queries"),
            std::string::npos);
  EXPECT_NE(c->tables({99}, 1).message().find("no sequence 99"), std::string::npos);
}

/// slotsByPosition lists each row's retained slots in position order (what
/// SnapKV pools over on the GPU), also after compactions have put the
/// slots out of order, then -1; too small a pitch is refused.
TEST_F(KvCacheTest, SlotsByPositionFollowThePositions) {
  auto k = kernel("over_h2o");
  ASSERT_TRUE(k);
  auto c = makeCache(*k, 64);
  ASSERT_TRUE(c);
  std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
  std::vector<History> hist(2);
  for (int step = 0; step < 8; ++step) {
    ASSERT_TRUE(appendBatch(*c, seqs, 3, hist));
    // The launch scores the slots, so evictions choose among them.
    EXPECT_LT(runAndCompare(*k, *c, seqs, stored(*c, seqs, hist), 3, causal), 2e-2);
  }
  auto t = c->tables(seqs, 1);
  ASSERT_TRUE(bool(t));
  const int64_t pitch = t->maxSlots + 2;
  std::vector<int32_t> order;
  ASSERT_TRUE(c->slotsByPosition(seqs, pitch, order));
  ASSERT_EQ(order.size(), size_t(2 * Hkv * pitch));
  bool outOfOrder = false;
  for (int64_t r = 0; r < 2 * Hkv; ++r) {
    std::vector<int32_t> kept = c->retainedPositions(seqs[size_t(r / Hkv)], r % Hkv);
    for (int64_t i = 0; i < pitch; ++i) {
      const int32_t slot = order[size_t(r * pitch + i)];
      if (i >= int64_t(kept.size())) {
        EXPECT_EQ(slot, -1) << "row " << r << " rank " << i;
        continue;
      }
      ASSERT_GE(slot, 0);
      EXPECT_EQ(t->positions[size_t(r * t->maxSlots + slot)], kept[size_t(i)]);
      outOfOrder |= slot != i;
    }
  }
  EXPECT_TRUE(outOfOrder) << "compaction should have moved some slots";
  EXPECT_NE(c->slotsByPosition(seqs, 3, order).message().find("more than 3"), std::string::npos);
}

/// A KvStore in host memory that checks what a cache asks of it: pools in
/// the kernels' layout, written by the cache's own quantization (a twin
/// host cache's bytes), no row both read and written by one move call, and
/// a failure on demand.
class RecordingStore : public rt::KvStore {
public:
  RecordingStore(int64_t rows, int64_t kRow, int64_t vRow, int64_t groups)
      : k(size_t(rows * kRow)), v(size_t(rows * vRow)), ks(size_t(rows * groups)),
        vs(size_t(rows * groups)), numRows(rows), kRow(kRow), vRow(vRow), groups(groups) {}
  DLDevice device() const override { return {kDLCPU, 0}; }
  int64_t rows() const override { return numRows; }
  rt::Status move(const std::vector<std::pair<int32_t, int32_t>> &moves) override {
    if (failNext)
      return failNext = false, rt::Status::error("store failed");
    std::set<int32_t> read, written;
    for (auto [from, to] : moves) {
      read.insert(from), written.insert(to);
      EXPECT_TRUE(from >= 0 && from < numRows && to >= 0 && to < numRows);
    }
    for (int32_t r : read)
      EXPECT_FALSE(written.count(r)) << "row " << r << " both read and written";
    for (auto [from, to] : moves) {
      std::copy_n(&k[from * kRow], kRow, &k[to * kRow]);
      std::copy_n(&v[from * vRow], vRow, &v[to * vRow]);
      std::copy_n(&ks[from * groups], groups, &ks[to * groups]);
      std::copy_n(&vs[from * groups], groups, &vs[to * groups]);
    }
    moved += int64_t(moves.size());
    return rt::Status::ok();
  }
  rt::Status write(const DLTensor *kn, const DLTensor *vn,
                   const std::vector<std::pair<int32_t, int32_t>> &rows,
                   const std::vector<int32_t> &positions) override {
    if (failNext || failNextWrite)
      return failNext = failNextWrite = false, rt::Status::error("store failed");
    // The bytes a host cache of the same policy stores for these rows.
    const int64_t n = kn->shape[1];
    EXPECT_EQ(positions.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      auto [src, dst] = rows[i];
      int64_t h = src / n, t = src % n;
      writes.push_back({h, t, dst, i < positions.size() ? positions[i] : -1});
    }
    pendingK = kn, pendingV = vn;
    return rt::Status::ok();
  }
  rt::Status read(int32_t row, void *kd, void *vd, void *kS, void *vS) const override {
    std::copy_n(&k[row * kRow], kRow, static_cast<char *>(kd));
    std::copy_n(&v[row * vRow], vRow, static_cast<char *>(vd));
    if (kS) // f32 scales
      std::memcpy(kS, &ks[row * groups], size_t(groups) * sizeof(float));
    if (vS)
      std::memcpy(vS, &vs[row * groups], size_t(groups) * sizeof(float));
    return rt::Status::ok();
  }
  struct Write {
    int64_t head, token, row, position;
  };
  /// The rows of `writes` get the bytes `host` (a twin that stored the
  /// same tokens at the same rows) holds there, as the device's append
  /// kernel would write them (bf16 rows).
  void copyWrittenRows(const rt::KvCache &host) {
    for (const Write &w : writes) {
      std::copy_n(static_cast<const char *>(host.keyPool()) + w.row * kRow, kRow, &k[w.row * kRow]);
      std::copy_n(static_cast<const char *>(host.valuePool()) + w.row * vRow, vRow,
                  &v[w.row * vRow]);
    }
  }
  std::vector<Write> writes;
  const DLTensor *pendingK = nullptr, *pendingV = nullptr;
  std::vector<char> k, v;
  std::vector<float> ks, vs;
  int64_t numRows, kRow, vRow, groups, moved = 0;
  bool failNext = false;      // the next call fails
  bool failNextWrite = false; // the next write fails (after its moves)
};

/// A RecordingStore of `host`'s pool (bf16 rows, one scale) and a cache of
/// host's options whose pools live in it (null if it cannot be made).
static std::pair<std::shared_ptr<RecordingStore>, std::unique_ptr<rt::KvCache>>
storeTwin(const rt::KvCache &host) {
  rt::KvCacheOptions o = host.options();
  auto store = std::make_shared<RecordingStore>(o.numPages * host.pageSize(), o.headDim * 2,
                                                o.headDim * 2, 1);
  o.store = store;
  auto made = rt::KvCache::create(o);
  EXPECT_TRUE(bool(made)) << made.message();
  return {store, made ? std::move(*made) : nullptr};
}

/// A cache whose pools live in a KvStore takes the same decisions as a
/// host cache: driven side by side through budget evictions (moves) and
/// appends, both retain the same positions and the store receives every
/// token at the pool row the host twin wrote it to (its bytes copied from
/// the twin), moves that never read a row they write; a store failure
/// leaves the cache as it was; CPU kernels refuse a store whose pools are
/// not in host memory.
TEST_F(KvCacheTest, StoreBackedCacheMirrorsTheHostCache) {
  auto k = kernel("over_h2o");
  ASSERT_TRUE(k);
  auto host = makeCache(*k, 40);
  auto [store, made] = storeTwin(*host);
  ASSERT_TRUE(made);
  rt::KvCache &dev = *made;
  EXPECT_EQ(dev.keyPool(), nullptr);
  std::vector<int64_t> hs = {*host->addSequence(), *host->addSequence()};
  std::vector<int64_t> ds = {*dev.addSequence(), *dev.addSequence()};
  std::vector<History> hist(2), twin(2);
  // Same tokens into both (same seed), same scores: random ones per step.
  std::uniform_real_distribution<float> score(0.f, 1.f);
  auto step = [&](int64_t n) {
    std::mt19937 saved = rng;
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE(append(*host, hs[i], n, hist[i]));
    rng = saved;
    store->writes.clear();
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(append(dev, ds[i], n, twin[i]));
      // The store got each retained token at the row the host wrote it to:
      // copy the host's bytes there (as the device kernels would write).
      store->copyWrittenRows(*host);
      store->writes.clear();
    }
    auto t = host->tables(hs, 1);
    ASSERT_TRUE(bool(t));
    std::vector<float> mass(t->positions.size());
    for (float &m : mass)
      m = score(rng);
    ASSERT_TRUE(host->updateScores(hs, mass, t->maxSlots));
    ASSERT_TRUE(dev.updateScores(ds, mass, t->maxSlots));
  };
  step(20);
  for (int s = 0; s < 30; ++s) {
    step(1 + s % 3);
    for (int i = 0; i < 2; ++i)
      for (int64_t h = 0; h < Hkv; ++h) {
        ASSERT_EQ(dev.retainedPositions(ds[i], h), host->retainedPositions(hs[i], h));
        for (int32_t p : host->retainedPositions(hs[i], h)) {
          std::vector<float> a(D), b(D), c(D), d(D);
          ASSERT_TRUE(host->readToken(hs[i], p, h, a.data(), b.data()));
          ASSERT_TRUE(dev.readToken(ds[i], p, h, c.data(), d.data()));
          ASSERT_EQ(a, c) << "position " << p;
          ASSERT_EQ(b, d) << "position " << p;
        }
      }
  }
  EXPECT_GT(store->moved, 0) << "evictions compacted through the store";
  EXPECT_EQ(dev.pagesInUse(), host->pagesInUse());
  // A store failure changes nothing.
  std::vector<int32_t> before = dev.retainedPositions(ds[0], 1);
  int64_t len = dev.length(ds[0]), free = dev.freePages();
  store->failNext = true;
  History scratch;
  rt::Status failed = append(dev, ds[0], 2, scratch);
  EXPECT_FALSE(failed);
  EXPECT_EQ(failed.message(), "store failed");
  EXPECT_EQ(dev.retainedPositions(ds[0], 1), before);
  EXPECT_EQ(dev.length(ds[0]), len);
  EXPECT_EQ(dev.freePages(), free);
  // The CPU kernels do not read a store's pools unless they are in host
  // memory (this one's are not); the store must match the pool.
  F32Tensor q({1, Hq, 1, D}), out({1, Hq, 1, D});
  rt::CacheLaunchArgs a;
  a.q = &q.t, a.o = &out.t, a.cache = &dev, a.sequences = {ds[0]};
  EXPECT_NE(k->launch(a).message().find("live in a KvStore"), std::string::npos);
  rt::KvCacheOptions o = host->options();
  o.store = std::make_shared<RecordingStore>(10, D * 2, D * 2, 1);
  EXPECT_NE(rt::KvCache::create(o).message().find("the store holds 10 pool rows"),
            std::string::npos);
}

/// A store whose write fails after its moves ran (the rows of dropped
/// slots overwritten by compaction) cannot have the append undone; the
/// cache keeps the eviction, as evict() leaves it, and drops the new
/// tokens: it then holds what a host twin holds after evict(), with the
/// same stored values, and goes on appending as the twin does.
TEST_F(KvCacheTest, WriteFailingAfterMovesKeepsTheEviction) {
  auto k = kernel("over_h2o");
  ASSERT_TRUE(k);
  auto host = makeCache(*k, 40);
  auto [store, made] = storeTwin(*host);
  ASSERT_TRUE(made);
  rt::KvCache &dev = *made;
  int64_t hs = *host->addSequence(), ds = *dev.addSequence();
  History a, b;
  std::uniform_real_distribution<float> score(0.f, 1.f);
  auto step = [&](int64_t n, bool fail) {
    std::mt19937 saved = rng;
    if (!fail) {
      ASSERT_TRUE(append(*host, hs, n, a));
    }
    rng = saved;
    store->writes.clear();
    store->failNextWrite = fail;
    int64_t movedBefore = store->moved;
    rt::Status st = append(dev, ds, n, b);
    if (fail) {
      ASSERT_FALSE(st);
      ASSERT_GT(store->moved, movedBefore) << "the failing append compacted first";
      EXPECT_NE(st.message().find("the eviction before the append stays"), std::string::npos);
      ASSERT_TRUE(host->evict(hs));
    } else {
      ASSERT_TRUE(st) << st.message();
    }
    store->copyWrittenRows(*host); // the device would write the host's bytes
    auto t = host->tables({hs}, 1);
    ASSERT_TRUE(bool(t));
    std::vector<float> mass(t->positions.size());
    for (float &m : mass)
      m = score(rng);
    ASSERT_TRUE(host->updateScores({hs}, mass, t->maxSlots));
    ASSERT_TRUE(dev.updateScores({ds}, mass, t->maxSlots));
    ASSERT_EQ(dev.length(ds), host->length(hs));
    ASSERT_EQ(dev.freePages(), host->freePages());
    for (int64_t h = 0; h < Hkv; ++h) {
      ASSERT_EQ(dev.retainedPositions(ds, h), host->retainedPositions(hs, h));
      ASSERT_EQ(dev.scores(ds, h), host->scores(hs, h));
      for (int32_t p : host->retainedPositions(hs, h)) {
        std::vector<float> x(D), y(D), z(D), w(D);
        ASSERT_TRUE(host->readToken(hs, p, h, x.data(), y.data()));
        ASSERT_TRUE(dev.readToken(ds, p, h, z.data(), w.data()));
        ASSERT_EQ(x, z) << "position " << p;
        ASSERT_EQ(y, w) << "position " << p;
      }
    }
  };
  step(20, false);
  for (int s = 0; s < 12; ++s)
    step(1 + s % 3, s == 5 || s == 9);
}

/// A RecordingStore that keeps the eviction scores (KvStore::keepsScores),
/// as CudaKvStore does on the GPU: a score and a position per pool row,
/// set by writes (0, the token's), carried by moves; victims chosen here
/// by sorting each request's candidates (an implementation apart from the
/// cache's partition).
class ScoringStore : public RecordingStore {
public:
  ScoringStore(int64_t rows, int64_t kRow, int64_t vRow, int64_t P)
      : RecordingStore(rows, kRow, vRow, 1), score(size_t(rows), 0.f), pos(size_t(rows), -7), P(P) {
  }
  bool keepsScores() const override { return true; }
  rt::Status move(const std::vector<std::pair<int32_t, int32_t>> &moves) override {
    if (rt::Status s = RecordingStore::move(moves); !s)
      return s;
    for (auto [from, to] : moves)
      score[to] = score[from], pos[to] = pos[from];
    return rt::Status::ok();
  }
  rt::Status write(const DLTensor *kn, const DLTensor *vn,
                   const std::vector<std::pair<int32_t, int32_t>> &rows,
                   const std::vector<int32_t> &positions) override {
    if (rt::Status s = RecordingStore::write(kn, vn, rows, positions); !s)
      return s;
    for (size_t i = 0; i < rows.size(); ++i)
      score[rows[i].second] = 0.f, pos[rows[i].second] = positions[i];
    return rt::Status::ok();
  }
  rt::Status chooseVictims(const std::vector<VictimRequest> &requests,
                           std::vector<std::vector<int32_t>> &victims) override {
    victims.clear();
    ++calls;
    for (const VictimRequest &r : requests) {
      requested.push_back(r);
      std::vector<std::pair<std::pair<float, int32_t>, int32_t>> cand; // ((score, pos), slot)
      for (int64_t sl = 0; sl < r.slots; ++sl) {
        int64_t row = int64_t(r.pages[size_t(sl / P)]) * P + sl % P;
        if (pos[row] >= 0 && pos[row] < r.recentFrom)
          cand.push_back({{score[row], pos[row]}, int32_t(sl)});
      }
      std::sort(cand.begin(), cand.end(), [](auto &a, auto &b) { return a.first > b.first; });
      EXPECT_EQ(int64_t(cand.size()) - r.keep, r.drop);
      std::vector<int32_t> v;
      for (size_t i = size_t(r.keep); i < cand.size(); ++i)
        v.push_back(cand[i].second);
      std::sort(v.begin(), v.end());
      if (chooseRecent && !v.empty())
        v.back() = int32_t(r.slots - 1); // the newest slot: never a candidate
      victims.push_back(v);
    }
    return rt::Status::ok();
  }
  rt::Status readScores(const std::vector<int32_t> &rows, std::vector<float> &out) const override {
    out.clear();
    for (int32_t r : rows)
      out.push_back(score[r]);
    return rt::Status::ok();
  }
  std::vector<float> score;
  std::vector<int32_t> pos;
  std::vector<VictimRequest> requested;
  int64_t calls = 0; // of chooseVictims
  int64_t P;
  bool chooseRecent = false; // a wrong answer, which the cache refuses
};

/// An H2O cache whose store keeps the scores evicts as a host cache does:
/// the same mass added to the host's scores (updateScores) and to the
/// store's pool rows (by the tables, as the GPU's mass kernel does), the
/// same positions retained step by step, through compactions that move
/// the scores with the rows; scores() reads them from the store, and
/// updateScores is refused there (they are the store's). The store-backed
/// cache appends each step as one batch (one victims request for all the
/// sequences' evicting heads), the host cache one sequence at a time.
TEST_F(KvCacheTest, StoreKeptScoresChooseTheHostsVictims) {
  auto k = kernel("over_h2o");
  ASSERT_TRUE(k);
  auto host = makeCache(*k, 40);
  rt::KvCacheOptions o = host->options();
  const int64_t P = host->pageSize();
  auto store = std::make_shared<ScoringStore>(o.numPages * P, D * 2, D * 2, P);
  o.store = store;
  auto made = rt::KvCache::create(o);
  ASSERT_TRUE(bool(made)) << made.message();
  rt::KvCache &dev = **made;
  std::vector<int64_t> hs = {*host->addSequence(), *host->addSequence()};
  std::vector<int64_t> ds = {*dev.addSequence(), *dev.addSequence()};
  std::vector<History> hist(2), twin(2);
  std::uniform_real_distribution<float> score(0.f, 1.f);
  int64_t evicting = 0;
  auto step = [&](int64_t n) {
    std::mt19937 saved = rng;
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE(append(*host, hs[i], n, hist[i]));
    rng = saved;
    size_t asked = store->requested.size();
    const int64_t calls = store->calls;
    ASSERT_TRUE(appendBatch(dev, ds, n, twin));
    evicting += int64_t(store->requested.size() - asked);
    EXPECT_EQ(store->calls - calls, store->requested.size() > asked ? 1 : 0);
    auto t = host->tables(hs, 1);
    auto dt = dev.tables(ds, 1);
    ASSERT_TRUE(t && dt);
    std::vector<float> mass(t->positions.size());
    for (float &m : mass)
      m = score(rng);
    // Some ties, so that the later position decides.
    for (size_t i = 0; i < mass.size(); i += 5)
      mass[i] = 0.5f;
    ASSERT_TRUE(host->updateScores(hs, mass, t->maxSlots));
    // The same mass by position into the store's pool rows.
    for (int64_t r = 0; r < int64_t(ds.size()) * Hkv; ++r)
      for (int64_t sl = 0; sl < t->maxSlots; ++sl) {
        int32_t p = t->positions[size_t(r * t->maxSlots + sl)];
        if (p < 0)
          continue;
        int64_t dsl = -1;
        for (int64_t j = 0; j < dt->maxSlots; ++j)
          if (dt->positions[size_t(r * dt->maxSlots + j)] == p)
            dsl = j;
        ASSERT_GE(dsl, 0);
        int64_t row = int64_t(dt->pages[size_t(r * dt->maxPages + dsl / P)]) * P + dsl % P;
        ASSERT_EQ(store->pos[row], p) << "the store's position of pool row " << row;
        store->score[row] += mass[size_t(r * t->maxSlots + sl)];
      }
  };
  step(20);
  for (int s = 0; s < 30; ++s) {
    step(1 + s % 3);
    for (int i = 0; i < 2; ++i)
      for (int64_t h = 0; h < Hkv; ++h) {
        ASSERT_EQ(dev.retainedPositions(ds[i], h), host->retainedPositions(hs[i], h))
            << "step " << s << " head " << h;
        ASSERT_EQ(dev.scores(ds[i], h), host->scores(hs[i], h));
      }
  }
  EXPECT_GT(evicting, 0) << "evictions chosen by the store";
  EXPECT_GT(store->moved, 0) << "compactions moved scored rows";
  for (const rt::KvStore::VictimRequest &r : store->requested) {
    EXPECT_GT(r.drop, 0);
    EXPECT_EQ(int64_t(r.pages.size()), (r.slots + P - 1) / P);
  }
  auto t = dev.tables(ds, 1);
  ASSERT_TRUE(bool(t));
  std::vector<float> mass(t->positions.size(), 1.f);
  EXPECT_NE(dev.updateScores(ds, mass, t->maxSlots).message().find("store keeps"),
            std::string::npos);
  // A store whose victims are not the candidates is refused, and the
  // append changes nothing.
  store->chooseRecent = true;
  std::vector<int32_t> before = dev.retainedPositions(ds[0], 0);
  const int64_t len = dev.length(ds[0]), free = dev.freePages();
  History scratch;
  rt::Status wrong = append(dev, ds[0], 1, scratch);
  EXPECT_NE(wrong.message().find("head 0 that are not"), std::string::npos) << wrong.message();
  EXPECT_EQ(dev.retainedPositions(ds[0], 0), before);
  EXPECT_EQ(dev.length(ds[0]), len);
  EXPECT_EQ(dev.freePages(), free);
}

/// A failed append of a DuoAttention cache undoes both kinds of head: the
/// streaming head, which drops and releases (saved and restored whole),
/// and the full head, which only appends (cut back in place); the pages
/// go back to the pool as they were, so the next append lands where a
/// twin that never failed puts it.
TEST_F(KvCacheTest, FailedDuoAppendRestoresEveryHead) {
  auto k = kernel("duo");
  ASSERT_TRUE(k);
  rt::KvCacheOptions o;
  o.policy = *k->info().cache;
  o.numKvHeads = Hkv, o.headDim = D, o.numPages = 64, o.inputDtype = "bf16";
  o.headKinds = {0, 1};
  auto host = rt::KvCache::create(o);
  ASSERT_TRUE(bool(host)) << host.message();
  auto store = std::make_shared<RecordingStore>(o.numPages * 4, D * 2, D * 2, 1);
  o.store = store;
  auto made = rt::KvCache::create(o);
  ASSERT_TRUE(bool(made)) << made.message();
  rt::KvCache &dev = **made;
  int64_t hs = *(*host)->addSequence(), ds = *dev.addSequence();
  History a, b;
  for (int step = 0; step < 12; ++step) {
    std::mt19937 saved = rng;
    ASSERT_TRUE(append(**host, hs, 3, a));
    rng = saved;
    if (step == 7) { // the window is full: this append drops and releases
      store->failNext = true;
      std::vector<int32_t> full = dev.retainedPositions(ds, 0),
                           stream = dev.retainedPositions(ds, 1);
      const int64_t len = dev.length(ds), free = dev.freePages();
      const int64_t pages0 = dev.pagesOf(ds, 0), pages1 = dev.pagesOf(ds, 1);
      History scratch;
      ASSERT_FALSE(append(dev, ds, 3, scratch));
      EXPECT_EQ(dev.retainedPositions(ds, 0), full);
      EXPECT_EQ(dev.retainedPositions(ds, 1), stream);
      EXPECT_EQ(dev.length(ds), len);
      EXPECT_EQ(dev.freePages(), free);
      EXPECT_EQ(dev.pagesOf(ds, 0), pages0);
      EXPECT_EQ(dev.pagesOf(ds, 1), pages1);
      rng = saved;
    }
    ASSERT_TRUE(append(dev, ds, 3, b));
    for (int64_t h = 0; h < Hkv; ++h) {
      ASSERT_EQ(dev.retainedPositions(ds, h), (*host)->retainedPositions(hs, h)) << step;
      auto hv = (*host)->view(hs, h), dv = dev.view(ds, h);
      ASSERT_TRUE(hv && dv);
      EXPECT_EQ(*dv->pages, *hv->pages) << "the same pages, step " << step << " head " << h;
    }
  }
  EXPECT_LT(dev.retainedPositions(ds, 1).size(), dev.retainedPositions(ds, 0).size());
}

/// The decode form over bf16 pages at head dims of whole 32-element
/// chunks, where hosts with AVX-512 BF16 take Q.K^T from bf16 pairs
/// (vdpbf16ps, attn-to-cpu's bf16-dot; the JIT asks for it on such hosts):
/// decode and speculative steps equal the reference over the cache, with
/// and without a sink + window, at D = 64 and 128.
TEST_F(KvCacheTest, Bf16DecodeAtWideHeadDims) {
  std::printf("[bf16 dot] host has AVX-512 BF16: %s\n",
              attnc::pipeline::hostHasAvx512Bf16() ? "yes" : "no");
  for (int64_t dim : {64, 128}) {
    D = dim;
    tileQ = 8; // the decode form
    for (const char *name : {"over_all", "over_stream"}) {
      SCOPED_TRACE(std::string(name) + " D=" + std::to_string(D));
      auto k = kernel(name);
      ASSERT_TRUE(k);
      auto c = makeCache(*k, 64);
      ASSERT_TRUE(c);
      std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
      std::vector<History> hist(2);
      for (int step = 0; step < 6; ++step) {
        int64_t n = step == 0 ? 11 : 1 + step % 2;
        for (int i = 0; i < 2; ++i)
          ASSERT_TRUE(append(*c, seqs[size_t(i)], n + (step == 0 ? 5 * i : 0), hist[size_t(i)]));
        EXPECT_LT(runAndCompare(*k, *c, seqs, stored(*c, seqs, hist), n, causal), 1e-4)
            << "step " << step;
      }
    }
  }
}

/// A batch append (a decode step of B sequences) decides what appending
/// the same tokens one sequence at a time decides, for each retention and
/// storage: the same positions retained, the same stored (dequantized)
/// values, the same pages in use, the same eviction scores after the same
/// launches, and attention over it equal to the reference.
TEST_F(KvCacheTest, BatchAppendMatchesAppendingOneByOne) {
  for (const char *name :
       {"over_all", "over_stream", "over_h2o", "over_snap", "over_q8_group", "duo_h2o"}) {
    SCOPED_TRACE(name);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    auto makeOne = [&]() -> std::unique_ptr<rt::KvCache> {
      if (std::string(name) != "duo_h2o")
        return makeCache(*k, 80);
      rt::KvCacheOptions o;
      o.policy = *k->info().cache;
      o.numKvHeads = Hkv, o.headDim = D, o.numPages = 80, o.inputDtype = "bf16";
      o.headKinds = {0, 1};
      auto c = rt::KvCache::create(o);
      EXPECT_TRUE(bool(c)) << c.message();
      return c ? std::move(*c) : nullptr;
    };
    auto one = makeOne(), batch = makeOne();
    ASSERT_TRUE(one && batch);
    std::vector<int64_t> s1, s2;
    for (int i = 0; i < 3; ++i)
      s1.push_back(*one->addSequence()), s2.push_back(*batch->addSequence());
    std::vector<History> h1(3), h2(3);
    for (int i = 0; i < 3; ++i) { // prompts of different lengths, one by one
      std::mt19937 saved = rng;
      ASSERT_TRUE(append(*one, s1[i], 5 + 6 * i, h1[i]));
      rng = saved;
      ASSERT_TRUE(append(*batch, s2[i], 5 + 6 * i, h2[i]));
    }
    for (int step = 0; step < 12; ++step) {
      const int64_t n = 1 + step % 3;
      std::mt19937 saved = rng;
      for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(append(*one, s1[i], n, h1[i]));
      rng = saved;
      ASSERT_TRUE(appendBatch(*batch, s2, n, h2));
      EXPECT_EQ(batch->freePages(), one->freePages()) << "step " << step;
      for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(batch->length(s2[i]), one->length(s1[i]));
        for (int64_t h = 0; h < Hkv; ++h) {
          std::vector<int32_t> kept = one->retainedPositions(s1[i], h);
          ASSERT_EQ(batch->retainedPositions(s2[i], h), kept) << "step " << step << " head " << h;
          ASSERT_EQ(batch->scores(s2[i], h), one->scores(s1[i], h))
              << "step " << step << " head " << h;
          std::vector<float> k1(D), v1(D), k2(D), v2(D);
          for (int32_t p : kept) {
            ASSERT_TRUE(one->readToken(s1[i], p, h, k1.data(), v1.data()));
            ASSERT_TRUE(batch->readToken(s2[i], p, h, k2.data(), v2.data()));
            ASSERT_EQ(k2, k1) << "position " << p;
            ASSERT_EQ(v2, v1) << "position " << p;
          }
        }
      }
      // The launches score the slots (budget policies): the same queries,
      // so the same mass into both.
      saved = rng;
      const double e1 = runAndCompare(*k, *one, s1, stored(*one, s1, h1), n, causal);
      rng = saved;
      const double e2 = runAndCompare(*k, *batch, s2, stored(*batch, s2, h2), n, causal);
      EXPECT_LT(e2, 2e-2) << "step " << step;
      EXPECT_EQ(e2, e1) << "step " << step;
    }
  }
}

/// A batch append is all or nothing: one that the pool cannot hold, or
/// that names a sequence twice or an unknown one, or has the wrong shape,
/// changes no sequence; one sequence's append then still fits.
TEST_F(KvCacheTest, BatchAppendIsAllOrNothing) {
  auto k = kernel("over_all");
  ASSERT_TRUE(k);
  auto c = makeCache(*k, 6 * Hkv); // 24 slots per head
  ASSERT_TRUE(c);
  std::vector<int64_t> seqs = {*c->addSequence(), *c->addSequence()};
  std::vector<History> hist(2);
  ASSERT_TRUE(appendBatch(*c, seqs, 8, hist)); // 2 pages per head each
  const int64_t free = c->freePages();
  std::vector<std::vector<int32_t>> kept;
  for (int64_t s : seqs)
    kept.push_back(c->retainedPositions(s, 1));
  // 2 more pages per head each would fit one sequence (4 free), not both.
  rt::Status st = appendBatch(*c, seqs, 8, hist);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("exhausted: the batch's 2 sequences need 8 more pages, 4 free of 12"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(c->freePages(), free);
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(c->length(seqs[i]), 8);
    EXPECT_EQ(c->retainedPositions(seqs[i], 1), kept[i]);
  }
  EXPECT_LT(runAndCompare(*k, *c, seqs, hist, 3, causal), 1e-2);
  BfTensor kb({2, Hkv, 1, D}), vb({2, Hkv, 1, D});
  EXPECT_NE(c->append({seqs[0], seqs[0]}, &kb.t, &vb.t).message().find("twice in the batch"),
            std::string::npos);
  EXPECT_NE(c->append({seqs[0], 99}, &kb.t, &vb.t).message().find("no sequence 99"),
            std::string::npos);
  EXPECT_NE(c->append(std::vector<int64_t>{seqs[0]}, &kb.t, &vb.t)
                .message()
                .find("must be [B=1, Hkv=2, n, 16]"),
            std::string::npos);
  EXPECT_NE(c->append(std::vector<int64_t>{}, &kb.t, &vb.t).message().find("no sequences"),
            std::string::npos);
  BfTensor k3({Hkv, 1, D});
  EXPECT_NE(c->append(seqs, &k3.t, &k3.t).message().find("must be [B=2"), std::string::npos);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_EQ(c->length(seqs[i]), 8);
  std::vector<History> more(1);
  ASSERT_TRUE(appendBatch(*c, {seqs[1]}, 8, more));
  EXPECT_EQ(c->length(seqs[1]), 16);
  EXPECT_EQ(c->freePages(), 0);
}

/// Decode steps of several sequences allocate pages together; each KV head
/// still gets consecutive pages, in runs of KvCacheOptions::pageRun
/// (PagePool.h), while runs last; pageRun 1 interleaves the heads. The
/// pool runs out only when no page at all is free, and the attention is
/// the same either way.
TEST_F(KvCacheTest, DecodeStepsGetRunsOfPagesPerHead) {
  auto k = kernel("over_all");
  ASSERT_TRUE(k);
  for (int64_t run : {16, 1}) {
    SCOPED_TRACE("pageRun " + std::to_string(run));
    rt::KvCacheOptions o;
    o.policy = *k->info().cache;
    o.numKvHeads = Hkv, o.headDim = D, o.numPages = 70, o.pageRun = run;
    o.inputDtype = "bf16";
    auto made = rt::KvCache::create(o);
    ASSERT_TRUE(bool(made)) << made.message();
    rt::KvCache &c = **made;
    std::vector<int64_t> seqs = {*c.addSequence(), *c.addSequence()};
    std::vector<History> hist(2);
    // 4 rows (2 sequences x 2 heads) a page every 4 tokens: 16 pages each
    // after 64 steps (the pool's 4 whole runs of 16 cover them).
    for (int step = 0; step < 64; ++step)
      for (int i = 0; i < 2; ++i)
        ASSERT_TRUE(append(c, seqs[size_t(i)], 1, hist[size_t(i)]));
    for (int64_t seq : seqs)
      for (int64_t h = 0; h < Hkv; ++h) {
        const std::vector<int32_t> &pages = *c.view(seq, h)->pages;
        ASSERT_EQ(pages.size(), 16u);
        int consecutive = 0;
        for (size_t i = 1; i < pages.size(); ++i)
          consecutive += pages[i] == pages[i - 1] + 1;
        EXPECT_EQ(consecutive, run == 16 ? 15 : 0) << "sequence " << seq << " head " << h;
      }
    EXPECT_LT(runAndCompare(*k, c, seqs, hist, 1, causal), 1e-4);
    // The last 6 pages: taken one by one, then the pool is exhausted.
    std::vector<int64_t> more;
    for (int i = 0; i < 3; ++i) {
      more.push_back(*c.addSequence());
      History hm;
      ASSERT_TRUE(append(c, more.back(), 1, hm)) << "a page per head, " << c.freePages() << " free";
    }
    EXPECT_EQ(c.freePages(), 0);
    History hm;
    rt::Status full = append(c, *c.addSequence(), 1, hm);
    EXPECT_NE(full.message().find("exhausted"), std::string::npos) << full.message();
  }
}

/// A plain append (retention all: nothing dropped or moved) changes the
/// tables in place; when the store fails it undoes itself: positions,
/// length, tables, pages in use and the layout stamps as before, and the
/// next append takes the pages the failed one took, in the same order.
TEST_F(KvCacheTest, AFailedPlainAppendUndoesItself) {
  auto k = kernel("over_all");
  ASSERT_TRUE(k);
  auto host = makeCache(*k, 40);
  auto [store, made] = storeTwin(*host);
  ASSERT_TRUE(made);
  rt::KvCache &dev = *made;
  std::vector<int64_t> seqs = {*dev.addSequence(), *dev.addSequence()};
  History hist;
  ASSERT_TRUE(append(dev, seqs[0], 3, hist)); // 3 of a page's 4 slots
  ASSERT_TRUE(append(dev, seqs[1], 2, hist));
  auto tablesBefore = dev.tables(seqs, 1);
  ASSERT_TRUE(bool(tablesBefore));
  std::vector<uint64_t> stamps;
  for (int64_t h = 0; h < Hkv; ++h)
    stamps.push_back(dev.view(seqs[0], h)->layoutStamp);
  const int64_t free = dev.freePages();
  // 6 tokens: the page's last slot and two new pages per head.
  store->failNext = true;
  rt::Status failed = append(dev, seqs[0], 6, hist);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.message(), "store failed");
  EXPECT_EQ(dev.length(seqs[0]), 3);
  EXPECT_EQ(dev.freePages(), free);
  auto tablesAfter = dev.tables(seqs, 1);
  ASSERT_TRUE(bool(tablesAfter));
  EXPECT_EQ(tablesAfter->pages, tablesBefore->pages);
  EXPECT_EQ(tablesAfter->positions, tablesBefore->positions);
  EXPECT_EQ(tablesAfter->lengths, tablesBefore->lengths);
  for (int64_t h = 0; h < Hkv; ++h) {
    EXPECT_EQ(dev.view(seqs[0], h)->layoutStamp, stamps[size_t(h)]) << "appends keep the stamp";
    EXPECT_EQ(dev.view(seqs[0], h)->pos->size(), size_t(4)) << "one page of slots again";
  }
  // The same append on the host twin and on the cache again: the same
  // pages, so the free list came back in order.
  ASSERT_TRUE(append(*host, *host->addSequence(), 3, hist));
  ASSERT_TRUE(append(*host, *host->addSequence(), 2, hist));
  ASSERT_TRUE(append(*host, 0, 6, hist));
  ASSERT_TRUE(append(dev, seqs[0], 6, hist));
  for (int64_t h = 0; h < Hkv; ++h) {
    EXPECT_EQ(*dev.view(seqs[0], h)->pages, *host->view(0, h)->pages) << "head " << h;
    EXPECT_EQ(dev.retainedPositions(seqs[0], h), host->retainedPositions(0, h));
  }
}

/// Token rows [Hkv, n, dim] of an input type (f32, or bf16 bits), for the
/// CpuKvStore tests. Random normal values, but every fourth token sits on
/// the quantizers' edges: each scale group of `group` values starts with
/// +-qmax (so its scale is exactly 1) and holds values halfway between two
/// codes (int8 / int4: k + 1/2, which round away from zero; fp8: midpoints
/// of neighbouring e4m3 codes, subnormal ones included, which go to the
/// even code) and a -0; every seventh token is all zeros (scale 0).
struct InputRows {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<int64_t> shape;
  DLTensor t{};
  InputRows(const std::string &dtype, int64_t n, int64_t dim, int64_t group, float qmax, bool fp8,
            std::mt19937 &rng) {
    std::normal_distribution<float> normal;
    shape = {Hkv, n, dim};
    for (int64_t h = 0; h < Hkv; ++h)
      for (int64_t tok = 0; tok < n; ++tok) {
        const int kind = int(rng() % 28);
        for (int64_t d = 0; d < dim; ++d) {
          float x = normal(rng) * (1 + kind % 3);
          if (kind % 7 == 0) {
            x = 0.f;
          } else if (kind % 4 == 0) {
            const uint32_t r = rng();
            const float sign = r & 1 ? -1.f : 1.f;
            if (d % group == 0)
              x = sign * qmax;
            else if (d % group == 1)
              x = -0.f;
            else if (fp8) {
              int code = int((r >> 1) % 126); // midpoint of codes c, c + 1 <= 448
              x = sign * 0.5f *
                  (rt::e4m3ToFloat(uint8_t(code)) + rt::e4m3ToFloat(uint8_t(code + 1)));
            } else {
              x = sign * (float((r >> 1) % uint32_t(qmax)) + 0.5f);
            }
          }
          f32.push_back(x);
          bf16.push_back(rt::floatToBf16(x));
        }
      }
    t.device = {kDLCPU, 0};
    t.ndim = 3;
    t.shape = shape.data();
    if (dtype == "f32") {
      t.data = f32.data();
      t.dtype = {kDLFloat, 32, 1};
    } else {
      t.data = bf16.data();
      t.dtype = {kDLBfloat, 16, 1};
    }
  }
};

/// Forwards to a CpuKvStore, counting the rows it moves and writes: a
/// store of the test's own, so the cache sees nothing but the interface.
class CountingStore : public rt::KvStore {
public:
  explicit CountingStore(std::shared_ptr<rt::CpuKvStore> inner) : inner(std::move(inner)) {}
  DLDevice device() const override { return inner->device(); }
  int64_t rows() const override { return inner->rows(); }
  rt::Status move(const std::vector<std::pair<int32_t, int32_t>> &moves) override {
    moved += int64_t(moves.size());
    return inner->move(moves);
  }
  rt::Status write(const DLTensor *k, const DLTensor *v,
                   const std::vector<std::pair<int32_t, int32_t>> &rows,
                   const std::vector<int32_t> &positions) override {
    written += int64_t(rows.size());
    return inner->write(k, v, rows, positions);
  }
  rt::Status read(int32_t row, void *k, void *v, void *kS, void *vS) const override {
    return inner->read(row, k, v, kS, vS);
  }
  const HostPools *hostPools() const override { return inner->hostPools(); }
  std::shared_ptr<rt::CpuKvStore> inner;
  int64_t moved = 0, written = 0;
};

/// Index of the first differing byte of two buffers, or -1.
int64_t firstDifference(const void *a, const void *b, int64_t bytes) {
  auto *x = static_cast<const unsigned char *>(a), *y = static_cast<const unsigned char *>(b);
  for (int64_t i = 0; i < bytes; ++i)
    if (x[i] != y[i])
      return i;
  return -1;
}

/// A cache whose pools only the kernel's generated append and move
/// functions write (CpuKvStore) holds the bytes a host KvCache stores, for
/// every storage and input type: three sequences driven side by side
/// through prefill chunks and decode steps across pages, with budget
/// evictions that compact (moves through the store), pools and scales
/// compared byte for byte after every step; and decode over either cache
/// gives the same O and LSE bit for bit (their eviction scores, from those
/// launches, then stay equal too).
TEST_F(KvCacheTest, CpuKvStoreMatchesTheHostCacheByteForByte) {
  struct Case {
    const char *kernel, *input;
  };
  for (auto [name, input] :
       {Case{"over_h2o", "bf16"}, Case{"over_h2o_q8", "f32"}, Case{"over_h2o_q8", "bf16"},
        Case{"over_h2o_q4", "f32"}, Case{"over_h2o_q4", "bf16"}, Case{"over_h2o_f8", "f32"},
        Case{"over_h2o_f8", "bf16"}, Case{"over_h2o_q4h", "f32"}, Case{"over_h2o_q4h", "bf16"}}) {
    SCOPED_TRACE(std::string(name) + " from " + input);
    auto k = kernel(name);
    ASSERT_TRUE(k);
    const rt::CachePolicyInfo &policy = *k->info().cache;
    const bool fp8 = policy.storage == "f8e4m3";
    const float qmax = policy.storage == "i4" ? 7.f : fp8 ? 448.f : 127.f;
    const int64_t group = policy.scale == "per_group" ? policy.groupSize : D;
    const int64_t pages = 48;
    rt::KvCacheOptions o;
    o.policy = policy;
    o.numKvHeads = Hkv;
    o.headDim = D;
    o.numPages = pages;
    o.inputDtype = input;
    auto hostMade = rt::KvCache::create(o);
    ASSERT_TRUE(bool(hostMade)) << hostMade.message();
    rt::KvCache &host = **hostMade;
    auto cpuStore = rt::CpuKvStore::create(k, pages);
    ASSERT_TRUE(bool(cpuStore)) << cpuStore.message();
    auto store = std::make_shared<CountingStore>(*cpuStore);
    o.store = store;
    auto devMade = rt::KvCache::create(o);
    ASSERT_TRUE(bool(devMade)) << devMade.message();
    rt::KvCache &dev = **devMade;
    ASSERT_NE(dev.keyPool(), nullptr);
    EXPECT_EQ(dev.keyPool(), store->hostPools()->keyPool);
    EXPECT_EQ(dev.quantized(), host.quantized());

    std::vector<int64_t> hs, ds;
    for (int i = 0; i < 3; ++i)
      hs.push_back(*host.addSequence()), ds.push_back(*dev.addSequence());
    const int64_t rows = pages * host.pageSize();
    auto samePools = [&](int step) {
      struct Pool {
        const char *what;
        const void *a, *b;
        int64_t bytes;
      };
      std::vector<Pool> pools = {
          {"K", host.keyPool(), dev.keyPool(), rows * host.keyRowBytes()},
          {"V", host.valuePool(), dev.valuePool(), rows * host.valueRowBytes()}};
      if (host.quantized()) {
        const int64_t sB = host.scaleBytes();
        pools.push_back(
            {"K scales", host.keyScales(), dev.keyScales(), rows * host.keyGroups() * sB});
        pools.push_back(
            {"V scales", host.valueScales(), dev.valueScales(), rows * host.valueGroups() * sB});
      }
      for (const Pool &p : pools) {
        int64_t at = firstDifference(p.a, p.b, p.bytes);
        EXPECT_EQ(at, -1) << p.what << " differ after step " << step << " at byte " << at;
      }
    };
    // Decode (the last Nq tokens of each sequence) over both caches: same
    // O and LSE bits; each launch updates its cache's eviction scores.
    auto sameDecode = [&](int step, int64_t nq) {
      BfTensor q({3, Hq, nq, D});
      for (uint16_t &x : q.data)
        x = rt::floatToBf16(normal(rng));
      F32Tensor oHost({3, Hq, nq, D}), oDev({3, Hq, nq, D}), lHost({3, Hq, nq}), lDev({3, Hq, nq});
      rt::CacheLaunchArgs a;
      a.q = &q.t, a.o = &oHost.t, a.lse = &lHost.t, a.cache = &host, a.sequences = hs;
      rt::Status s = k->launch(a);
      ASSERT_TRUE(s) << s.message();
      a.o = &oDev.t, a.lse = &lDev.t, a.cache = &dev, a.sequences = ds;
      s = k->launch(a);
      ASSERT_TRUE(s) << s.message();
      EXPECT_EQ(
          firstDifference(oHost.data.data(), oDev.data.data(), int64_t(oHost.data.size()) * 4), -1)
          << "O differs after step " << step;
      EXPECT_EQ(
          firstDifference(lHost.data.data(), lDev.data.data(), int64_t(lHost.data.size()) * 4), -1)
          << "LSE differs after step " << step;
    };
    for (int step = 0; step < 24; ++step) {
      // Prefill chunks of 5, 7 and 10 tokens, then decode steps of 1 to 3.
      int64_t fewest = INT64_MAX;
      for (int i = 0; i < 3; ++i) {
        const int64_t n = step == 0 ? 5 + i * (i + 3) / 2 : 1 + (step + i) % 3;
        fewest = std::min(fewest, n);
        InputRows kIn(input, n, D, group, qmax, fp8, rng), vIn(input, n, D, group, qmax, fp8, rng);
        rt::Status s = host.append(hs[i], &kIn.t, &vIn.t);
        ASSERT_TRUE(s) << s.message();
        s = dev.append(ds[i], &kIn.t, &vIn.t);
        ASSERT_TRUE(s) << s.message();
      }
      samePools(step);
      for (int i = 0; i < 3; ++i)
        for (int64_t h = 0; h < Hkv; ++h)
          ASSERT_EQ(dev.retainedPositions(ds[i], h), host.retainedPositions(hs[i], h));
      sameDecode(step, fewest);
      for (int i = 0; i < 3; ++i)
        for (int64_t h = 0; h < Hkv; ++h)
          ASSERT_EQ(dev.scores(ds[i], h), host.scores(hs[i], h)) << "step " << step;
    }
    EXPECT_GT(store->written, 0);
    EXPECT_GT(store->moved, 0) << "budget evictions compacted through the store";
    EXPECT_EQ(dev.pagesInUse(), host.pagesInUse());
    // Tokens read back through the store equal the host's.
    for (int32_t p : host.retainedPositions(hs[0], 1)) {
      std::vector<float> a(D), b(D), c(D), d(D);
      ASSERT_TRUE(host.readToken(hs[0], p, 1, a.data(), b.data()));
      ASSERT_TRUE(dev.readToken(ds[0], p, 1, c.data(), d.data()));
      EXPECT_EQ(a, c);
      EXPECT_EQ(b, d);
    }
  }
}

/// The store and the cache functions check what they are given: a kernel
/// without a cache, a contiguous policy, a store of another policy's rows,
/// input of a type the storage does not take, indices out of range, pools
/// of the wrong shape; and a CPU launch over a store whose pools are not in
/// host memory is refused.
TEST_F(KvCacheTest, CpuKvStoreAndCacheFunctionsRejectBadArguments) {
  auto bf16 = kernel("over_h2o");
  auto q8 = kernel("over_h2o_q8");
  ASSERT_TRUE(bf16 && q8);
  EXPECT_EQ(rt::CpuKvStore::create(nullptr, 4).message(), "CpuKvStore: no kernel");
  KernelSpec spec;
  spec.dtype = "bf16", spec.headDim = D;
  auto plain = compiler->getKernel("plain", spec);
  ASSERT_TRUE(bool(plain)) << plain.message();
  EXPECT_EQ(rt::CpuKvStore::create(*plain, 4).message(),
            "CpuKvStore: the kernel was not compiled for a KV cache");
  auto flat = kernel("over_flat");
  ASSERT_TRUE(flat);
  EXPECT_NE(rt::CpuKvStore::create(flat, 4).message().find("'flat_kv' is not paged"),
            std::string::npos);
  EXPECT_NE(rt::CpuKvStore::create(bf16, 0).message().find("at least one page"), std::string::npos);

  // A store holding int8 rows for a cache of bf16 rows (same row count).
  auto q8Store = rt::CpuKvStore::create(q8, 8);
  ASSERT_TRUE(bool(q8Store)) << q8Store.message();
  rt::KvCacheOptions o;
  o.policy = *bf16->info().cache;
  o.numKvHeads = Hkv, o.headDim = D, o.numPages = 8;
  o.store = *q8Store;
  rt::Status wrong = rt::KvCache::create(o).error();
  EXPECT_NE(wrong.message().find("the store's host pools hold i8 rows of 16/16 bytes with 1/1 "
                                 "scales, policy 'h2o_kv' stores bf16 rows of 32/32 bytes"),
            std::string::npos)
      << wrong.message();

  // The functions themselves.
  auto store = rt::CpuKvStore::create(bf16, 2); // 8 pool rows
  ASSERT_TRUE(bool(store)) << store.message();
  rt::CachePools pools = (*store)->pools();
  F32Tensor f32Rows({Hkv, 1, D});
  BfTensor rowsIn({Hkv, 1, D});
  std::vector<int32_t> pairs = {0, 3, 1, 8};
  std::vector<int64_t> pairShape = {2, 2};
  DLTensor table{};
  table.data = pairs.data();
  table.device = {kDLCPU, 0};
  table.ndim = 2;
  table.dtype = {kDLInt, 32, 1};
  table.shape = pairShape.data();
  auto message = [](const rt::Status &s) { return s.message(); };
  EXPECT_NE(message(bf16->writeCacheRows(pools, &f32Rows.t, &f32Rows.t, &table))
                .find("k must be bf16 (policy 'h2o_kv' stores bf16)"),
            std::string::npos);
  EXPECT_NE(message(bf16->writeCacheRows(pools, &rowsIn.t, &rowsIn.t, &table))
                .find("entry 1 (1, 8) is out of range (2 token rows, 8 pool rows)"),
            std::string::npos)
      << message(bf16->writeCacheRows(pools, &rowsIn.t, &rowsIn.t, &table));
  pairs = {0, 3, 2, 4};
  EXPECT_NE(message(bf16->writeCacheRows(pools, &rowsIn.t, &rowsIn.t, &table))
                .find("entry 1 (2, 4) is out of range"),
            std::string::npos);
  pairs = {7, 0, -1, 2};
  EXPECT_NE(message(bf16->moveCacheRows(pools, &table)).find("entry 1 (-1, 2) is out of range"),
            std::string::npos);
  // Nothing was written by the refused calls.
  auto *kPool = static_cast<const uint16_t *>((*store)->hostPools()->keyPool);
  EXPECT_TRUE(std::all_of(kPool, kPool + 8 * D, [](uint16_t x) { return x == 0; }));
  // A valid call writes the rows where asked.
  pairs = {1, 5, 0, 2};
  for (size_t i = 0; i < rowsIn.data.size(); ++i)
    rowsIn.data[i] = rt::floatToBf16(float(i + 1));
  ASSERT_TRUE(bf16->writeCacheRows(pools, &rowsIn.t, &rowsIn.t, &table));
  EXPECT_EQ(kPool[5 * D], rowsIn.data[D]);
  EXPECT_EQ(kPool[2 * D + D - 1], rowsIn.data[D - 1]);
  pairs = {5, 7, 2, 0};
  ASSERT_TRUE(bf16->moveCacheRows(pools, &table));
  EXPECT_TRUE(std::equal(kPool + 7 * D, kPool + 8 * D, kPool + 5 * D));
  EXPECT_TRUE(std::equal(kPool, kPool + D, kPool + 2 * D));
  // Pools of another shape; scales where the policy has none.
  rt::CachePools bad = pools;
  std::vector<int64_t> shortShape = {2, 4, D / 2};
  DLTensor shortPool = *pools.keyPool;
  shortPool.shape = shortShape.data();
  bad.keyPool = &shortPool;
  EXPECT_NE(
      message(bf16->moveCacheRows(bad, &table)).find("key pool: dimension 2 is 8, expected 16"),
      std::string::npos)
      << message(bf16->moveCacheRows(bad, &table));
  bad = pools;
  bad.keyScales = pools.keyPool;
  EXPECT_NE(message(bf16->moveCacheRows(bad, &table)).find("cache scales given"),
            std::string::npos);
  // A kernel compiled without a cache has no cache functions.
  EXPECT_NE(message((*plain)->moveCacheRows(pools, &table)).find("was not compiled for a KV cache"),
            std::string::npos);

  // A store whose pools are elsewhere (here: a recording stand-in for a
  // GPU's): the CPU kernel cannot read them.
  rt::KvCacheOptions ro;
  ro.policy = *bf16->info().cache;
  ro.numKvHeads = Hkv, ro.headDim = D, ro.numPages = 8;
  ro.store = std::make_shared<RecordingStore>(8 * 4, D * 2, D * 2, 1);
  auto remote = rt::KvCache::create(ro);
  ASSERT_TRUE(bool(remote)) << remote.message();
  int64_t seq = *(*remote)->addSequence();
  BfTensor tok({Hkv, 1, D}), q({1, Hq, 1, D});
  ASSERT_TRUE((*remote)->append(seq, &tok.t, &tok.t));
  F32Tensor out({1, Hq, 1, D});
  rt::CacheLaunchArgs a;
  a.q = &q.t, a.o = &out.t, a.cache = remote->get(), a.sequences = {seq};
  EXPECT_EQ(bf16->launch(a).message(),
            "the cache's pools live in a KvStore (not host memory): launch a kernel for the "
            "store's device over it");
}

TEST_F(KvCacheTest, ErrorsChangeNothing) {
  auto k = kernel("over_all");
  ASSERT_TRUE(k);
  auto c = makeCache(*k, 3 * Hkv); // 12 slots per head
  ASSERT_TRUE(c);
  int64_t s = *c->addSequence();
  History h;
  ASSERT_TRUE(append(*c, s, 10, h));
  // Pool exhausted: clear error, nothing appended, nothing overwritten.
  rt::Status st = append(*c, s, 3, h);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("exhausted"), std::string::npos) << st.message();
  EXPECT_EQ(c->length(s), 10);
  EXPECT_EQ(c->freePages(), 0);
  EXPECT_LT(runAndCompare(*k, *c, {s}, {h}, 2, causal), 1e-2);
  // Freed pages are reused.
  int64_t s2 = *c->addSequence();
  ASSERT_TRUE(c->removeSequence(s));
  EXPECT_EQ(c->freePages(), 3 * Hkv);
  History h2;
  ASSERT_TRUE(append(*c, s2, 12, h2));
  EXPECT_LT(runAndCompare(*k, *c, {s2}, {h2}, 3, causal), 1e-2);

  // Unknown sequence; wrong shapes and types.
  EXPECT_NE(c->append(99, nullptr, nullptr).message().find("no sequence 99"), std::string::npos);
  BfTensor bad({Hkv + 1, 1, D});
  EXPECT_NE(c->append(s2, &bad.t, &bad.t).message().find("must be [Hkv=2"), std::string::npos);

  // Launch errors: fewer tokens than queries, batch mismatch, unknown
  // sequence, a cache of another policy, a plain launch.
  BfTensor q({1, Hq, 20, D});
  F32Tensor o({1, Hq, 20, D});
  rt::CacheLaunchArgs a;
  a.q = &q.t, a.o = &o.t, a.cache = c.get(), a.sequences = {s2};
  EXPECT_NE(k->launch(a).message().find("fewer than the 20 queries"), std::string::npos);
  a.sequences = {s2, s2};
  EXPECT_NE(k->launch(a).message().find("2 sequences"), std::string::npos);
  a.sequences = {s};
  EXPECT_NE(k->launch(a).message().find("no sequence"), std::string::npos);
  rt::KvCacheOptions other;
  other.policy = *k->info().cache;
  other.policy.name = "other_kv";
  other.policy.pageSize = 8;
  other.numKvHeads = Hkv, other.headDim = D, other.numPages = 2;
  auto oc = rt::KvCache::create(other);
  ASSERT_TRUE(bool(oc));
  a.cache = oc->get();
  a.sequences = {};
  EXPECT_NE(k->launch(a).message().find("compiled for cache policy all_kv"), std::string::npos)
      << k->launch(a).message();
  rt::LaunchArgs plainArgs;
  EXPECT_NE(k->launch(plainArgs).message().find("launch it with CacheLaunchArgs"),
            std::string::npos);
  // A kernel without a cache policy cannot be compiled for one.
  KernelSpec spec;
  spec.dtype = "bf16", spec.headDim = D, spec.kvCache = true;
  auto p = compiler->getKernel("plain", spec);
  ASSERT_FALSE(bool(p));
  EXPECT_NE(p.message().find("has no cache policy"), std::string::npos) << p.message();
  // The policy's storage must be the kernel's dtype.
  spec.dtype = "f32";
  auto f = compiler->getKernel("over_all", spec);
  ASSERT_FALSE(bool(f));
  EXPECT_NE(f.message().find("stores 'bf16'"), std::string::npos) << f.message();
}

} // namespace
