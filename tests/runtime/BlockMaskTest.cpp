//===- BlockMaskTest.cpp - block lists -> block_sparse.attn's block tensor ===//
//
// rt::blockMaskFromLists turns FlexAttention-style block lists (per query
// block: a count and key-block indices) into the dense `blocks` tensor of
// lib/block_sparse.attn; the kernel then attends exactly to the selected
// blocks (checked against float64 attention with the same selection).
//
//===----------------------------------------------------------------------===//

#include "TempDir.h"

#include "attnc/JIT.h"
#include "attnc/Runtime/BlockMask.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

using namespace attnc;
using attnc::test::TempDir;

namespace {

template <typename T> struct Host {
  std::vector<T> v;
  std::vector<int64_t> shape;
  DLTensor t{};
  Host(std::vector<int64_t> s, DLDataType dt) : shape(std::move(s)) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    v.assign(size_t(n), T(0));
    t.data = v.data();
    t.device = {kDLCPU, 0};
    t.ndim = int(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
  }
};
const DLDataType kI32{kDLInt, 32, 1}, kF32{kDLFloat, 32, 1};

TEST(BlockMask, ListsGiveTheBlockTensorAndAttentionFollowsIt) {
  const int64_t B = 2, H = 2, N = 70, D = 32, BS = 16, QB = (N + BS - 1) / BS, L = 3;
  std::mt19937 rng(4);
  Host<int32_t> num({B, H, QB}, kI32), idx({B, H, QB, L}, kI32), blocks({B, H, QB, QB}, kI32);
  std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> chosen;
  for (int64_t r = 0; r < B * H * QB; ++r) {
    int64_t qb = r % QB;
    // The diagonal block and up to L - 1 random earlier ones (duplicates allowed).
    num.v[r] = int32_t(1 + std::uniform_int_distribution<int>(0, L - 1)(rng));
    idx.v[r * L] = int32_t(qb);
    for (int32_t j = 1; j < num.v[r]; ++j)
      idx.v[r * L + j] = int32_t(std::uniform_int_distribution<int64_t>(0, qb)(rng));
    for (int32_t j = 0; j < num.v[r]; ++j)
      chosen.insert({r / (H * QB), (r / QB) % H, qb, idx.v[r * L + j]});
  }
  ASSERT_TRUE(rt::blockMaskFromLists(&num.t, &idx.t, &blocks.t));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < QB; ++i)
        for (int64_t j = 0; j < QB; ++j)
          ASSERT_EQ(blocks.v[((b * H + h) * QB + i) * QB + j], chosen.count({b, h, i, j}) ? 1 : 0);

  // The kernel over that selection (causal inside), against float64.
  TempDir dir;
  CompilerOptions o;
  o.cacheDir = dir.path;
  auto c = Compiler::create(o);
  ASSERT_TRUE(c->loadSource(std::string(ATTNC_LIB_DIR) + "/block_sparse.attn"));
  KernelSpec spec;
  spec.headDim = D;
  spec.consts = {{"BQ", std::to_string(BS)}, {"BK", std::to_string(BS)}};
  auto k = c->getKernel("block_sparse_causal_attention", spec);
  ASSERT_TRUE(bool(k)) << k.message();
  Host<float> q({B, H, N, D}, kF32), kk({B, H, N, D}, kF32), v({B, H, N, D}, kF32),
      out({B, H, N, D}, kF32), lse({B, H, N}, kF32);
  std::normal_distribution<float> normal;
  for (auto *t : {&q, &kk, &v})
    for (float &x : t->v)
      x = normal(rng);
  rt::LaunchArgs a;
  a.q = &q.t, a.k = &kk.t, a.v = &v.t, a.o = &out.t, a.lse = &lse.t;
  a.params["blocks"] = rt::Arg::ofTensor(&blocks.t);
  rt::Status s = (*k)->launch(a);
  ASSERT_TRUE(s) << s.message();
  double worst = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> sc, ref(D, 0.0);
        std::vector<int64_t> keys;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          if (!chosen.count({b, h, i / BS, j / BS}))
            continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += double(q.v[((b * H + h) * N + i) * D + d]) * kk.v[((b * H + h) * N + j) * D + d];
          sc.push_back(dot / std::sqrt(double(D)));
          keys.push_back(j);
          m = std::max(m, sc.back());
        }
        for (size_t j = 0; j < sc.size(); ++j) {
          double p = std::exp(sc[j] - m);
          sum += p;
          for (int64_t d = 0; d < D; ++d)
            ref[d] += p * v.v[((b * H + h) * N + keys[j]) * D + d];
        }
        for (int64_t d = 0; d < D; ++d)
          worst = std::max(worst, std::abs(out.v[((b * H + h) * N + i) * D + d] - ref[d] / sum));
      }
  EXPECT_LT(worst, 1e-4);
}

TEST(BlockMask, BadListsAreRejectedAndNothingIsWritten) {
  Host<int32_t> num({1, 1, 2}, kI32), idx({1, 1, 2, 2}, kI32), blocks({1, 1, 2, 3}, kI32);
  std::fill(blocks.v.begin(), blocks.v.end(), 7);
  num.v = {1, 3};
  EXPECT_NE(rt::blockMaskFromLists(&num.t, &idx.t, &blocks.t).message().find("3 blocks"),
            std::string::npos);
  num.v = {1, 1};
  idx.v = {0, 0, 3, 0};
  EXPECT_NE(rt::blockMaskFromLists(&num.t, &idx.t, &blocks.t).message().find("key block 3"),
            std::string::npos);
  for (int32_t x : blocks.v)
    EXPECT_EQ(x, 7);
  Host<int32_t> wrong({1, 2, 2, 3}, kI32);
  EXPECT_NE(rt::blockMaskFromLists(&num.t, &idx.t, &wrong.t).message().find("disagree"),
            std::string::npos);
  Host<float> f({1, 1, 2}, kF32);
  EXPECT_NE(rt::blockMaskFromLists(&f.t, &idx.t, &blocks.t).message().find("must be i32"),
            std::string::npos);
}

} // namespace
