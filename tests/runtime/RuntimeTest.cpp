//===- RuntimeTest.cpp - JIT API, light runtime and kernel cache ----------===//

#include "TempDir.h"

#include "attnc/JIT.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

using namespace attnc;
using attnc::test::TempDir;

namespace {

/// Owns a tensor's storage, shape and strides; views it as a DLTensor.
struct Tensor {
  std::vector<float> data;
  std::vector<int32_t> idata;
  std::vector<int64_t> shape, strides;
  DLTensor t{};
  Tensor(std::vector<int64_t> s, DLDataType dt = {kDLFloat, 32, 1}, uint64_t seed = 0)
      : shape(std::move(s)) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    if (dt.code == kDLInt)
      idata.assign(n, 0);
    else
      data.assign(n, 0.f);
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    if (seed)
      for (auto &x : data)
        x = normal(rng);
    t.data = dt.code == kDLInt ? static_cast<void *>(idata.data()) : data.data();
    t.device = {kDLCPU, 0};
    t.ndim = int(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
  }
  DLTensor *operator&() { return &t; }
};

CompilerOptions opts(const TempDir &dir) {
  CompilerOptions o;
  o.cacheDir = dir.path;
  return o;
}

const int64_t D = 32;

std::shared_ptr<rt::CpuKernel> compile(Compiler &c, const std::string &file,
                                       const std::string &name,
                                       std::map<std::string, std::string> consts = {},
                                       int64_t headDim = D) {
  EXPECT_TRUE(c.loadSource(std::string(ATTNC_LIB_DIR) + "/" + file));
  KernelSpec spec;
  spec.headDim = headDim;
  spec.consts = consts;
  auto k = c.getKernel(name, spec);
  EXPECT_TRUE(bool(k)) << k.message();
  return k ? *k : nullptr;
}

/// q/k/v/o/lse for B=2, Hq=4, Hkv=2, Nq=Nk=40.
struct Problem {
  Tensor q{{2, 4, 40, D}, {kDLFloat, 32, 1}, 1}, k{{2, 2, 40, D}, {kDLFloat, 32, 1}, 2},
      v{{2, 2, 40, D}, {kDLFloat, 32, 1}, 3}, o{{2, 4, 40, D}}, lse{{2, 4, 40}};
  Tensor slopes{{4}, {kDLFloat, 32, 1}, 4};
  rt::LaunchArgs args() {
    rt::LaunchArgs a;
    a.q = &q, a.k = &k, a.v = &v, a.o = &o, a.lse = &lse;
    a.params["slopes"] = rt::Arg::ofTensor(&slopes);
    return a;
  }
};

class RuntimeTest : public ::testing::Test {
protected:
  TempDir dir;
  std::unique_ptr<Compiler> c = Compiler::create(opts(dir));
  std::shared_ptr<rt::CpuKernel> alibi = compile(*c, "alibi.attn", "alibi_causal");
  Problem p;

  void expectError(const rt::LaunchArgs &a, const std::string &substring) {
    ASSERT_TRUE(alibi);
    rt::Status s = alibi->launch(a);
    EXPECT_FALSE(s) << "expected an error containing '" << substring << "'";
    EXPECT_NE(s.message().find(substring), std::string::npos) << s.message();
  }
};

TEST_F(RuntimeTest, LaunchSucceeds) {
  ASSERT_TRUE(alibi);
  EXPECT_EQ(alibi->info().params.size(), 1u);
  ASSERT_TRUE(alibi->launch(p.args()));
  // Row 0 of a causal kernel attends only to key 0: O = V[0], LSE = s(0,0).
  for (int64_t d = 0; d < D; ++d)
    EXPECT_NEAR(p.o.data[d], p.v.data[d], 1e-5);
}

TEST_F(RuntimeTest, NoLseIsFine) {
  auto a = p.args();
  a.lse = nullptr;
  EXPECT_TRUE(alibi->launch(a));
}

TEST_F(RuntimeTest, WrongRank) {
  Tensor q3({2, 4, 40});
  auto a = p.args();
  a.q = &q3;
  expectError(a, "q: expected rank 4, got rank 3");
}

TEST_F(RuntimeTest, WrongDtype) {
  Tensor k16({2, 2, 40, D}, {kDLFloat, 16, 1});
  auto a = p.args();
  a.k = &k16;
  expectError(a, "k: expected dtype f32, got float16");
  Tensor o64({2, 4, 40, D}, {kDLFloat, 64, 1});
  a = p.args();
  a.o = &o64;
  expectError(a, "o: expected dtype f32, got float64");
}

TEST_F(RuntimeTest, MismatchedBatch) {
  Tensor k({3, 2, 40, D});
  auto a = p.args();
  a.k = &k;
  expectError(a, "batch size mismatch");
}

TEST_F(RuntimeTest, MismatchedHeadDim) {
  Tensor q({2, 4, 40, 16}), v({2, 2, 40, 16});
  auto a = p.args();
  a.q = &q;
  expectError(a, "q: head dim 16 but kernel 'alibi_causal' was compiled for 32");
  a = p.args();
  a.v = &v;
  expectError(a, "v: head dim 16");
}

TEST_F(RuntimeTest, MismatchedKV) {
  Tensor v({2, 2, 39, D});
  auto a = p.args();
  a.v = &v;
  expectError(a, "disagree on [B,Hkv,Nk]");
}

TEST_F(RuntimeTest, HeadsNotMultiple) {
  Tensor k({2, 3, 40, D}), v({2, 3, 40, D});
  auto a = p.args();
  a.k = &k, a.v = &v;
  expectError(a, "query heads (4) must be a multiple of kv heads (3)");
}

TEST_F(RuntimeTest, WrongOutputShape) {
  Tensor o({2, 4, 41, D}), lse({2, 4, 39});
  auto a = p.args();
  a.o = &o;
  expectError(a, "o: expected shape [2,4,40,32]");
  a = p.args();
  a.lse = &lse;
  expectError(a, "lse: expected shape [2,4,40]");
}

TEST_F(RuntimeTest, WrongDevice) {
  auto a = p.args();
  p.q.t.device = {kDLCUDA, 0};
  expectError(a, "q: device type 2 is not kDLCPU");
}

TEST_F(RuntimeTest, NullData) {
  auto a = p.args();
  p.v.t.data = nullptr;
  expectError(a, "v: data pointer is null");
  a.v = nullptr;
  expectError(a, "v: tensor is null");
}

TEST_F(RuntimeTest, BadStrides) {
  // [B, N, H, D] storage viewed as [B, H, N, D]: rows are H*D apart.
  std::vector<int64_t> strides = {40 * 4 * D, D, 4 * D, 1};
  p.q.t.strides = strides.data();
  expectError(p.args(), "q: unsupported strides");
  std::vector<int64_t> neg = {-1, 40 * D, D, 1};
  p.q.t.strides = neg.data();
  expectError(p.args(), "negative strides");
}

TEST_F(RuntimeTest, StridedBatchAndHeadViews) {
  // Q as a slice of a buffer with two extra heads: batch stride 6*40*D,
  // head stride 40*D. The kernel reads batch/head strides from the
  // descriptor, so the result equals the dense one.
  ASSERT_TRUE(alibi->launch(p.args()));
  std::vector<float> dense = p.o.data;
  Tensor big({2, 6, 40, D});
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 4; ++h)
      std::memcpy(&big.data[((b * 6 + h + 1) * 40) * D], &p.q.data[((b * 4 + h) * 40) * D],
                  40 * D * sizeof(float));
  DLTensor view = p.q.t;
  std::vector<int64_t> strides = {6 * 40 * D, 40 * D, D, 1};
  view.data = big.data.data();
  view.byte_offset = 40 * D * sizeof(float); // skip head 0
  view.strides = strides.data();
  auto a = p.args();
  a.q = &view;
  std::fill(p.o.data.begin(), p.o.data.end(), 0.f);
  ASSERT_TRUE(alibi->launch(a));
  EXPECT_EQ(0, std::memcmp(dense.data(), p.o.data.data(), dense.size() * sizeof(float)));
}

TEST_F(RuntimeTest, Params) {
  auto a = p.args();
  a.params.clear();
  expectError(a, "tensor parameter 'slopes' is not bound");
  a = p.args();
  a.params["nope"] = rt::Arg::ofScalar(1);
  expectError(a, "unknown parameter 'nope' (kernel 'alibi_causal' takes slopes)");
  a = p.args();
  a.params["slopes"] = rt::Arg::ofScalar(1);
  expectError(a, "parameter 'slopes' is a tensor, but a scalar was given");
  Tensor slopes3({3}), slopesI({4}, {kDLInt, 32, 1}), slopes2d({4, 1});
  a.params["slopes"] = rt::Arg::ofTensor(&slopes3);
  expectError(a, "parameter 'slopes': dimension 0 is 3, expected Hq = 4");
  a.params["slopes"] = rt::Arg::ofTensor(&slopesI);
  expectError(a, "parameter 'slopes': expected dtype f32, got int32");
  a.params["slopes"] = rt::Arg::ofTensor(&slopes2d);
  expectError(a, "parameter 'slopes': expected rank 1");
}

TEST_F(RuntimeTest, ScalarParams) {
  ASSERT_TRUE(c->loadString("score scaled(s, b, h, q, k; t: f32, n: i32 = 2) = s * t * f32(n);\n"
                            "kernel needs_t { score = scaled; }\n"));
  KernelSpec spec;
  spec.headDim = D;
  auto k = c->getKernel("needs_t", spec);
  ASSERT_TRUE(bool(k)) << k.message();
  auto a = p.args();
  a.params.clear();
  rt::Status s = (*k)->launch(a);
  EXPECT_NE(s.message().find("scalar parameter 't' is not bound and has no default"),
            std::string::npos)
      << s.message();
  a.params["t"] = rt::Arg::ofTensor(&p.slopes);
  s = (*k)->launch(a);
  EXPECT_NE(s.message().find("parameter 't' is a scalar (f32), but a tensor was given"),
            std::string::npos)
      << s.message();
  a.params["t"] = rt::Arg::ofScalar(0.5);
  a.params["n"] = rt::Arg::ofScalar(1.5);
  s = (*k)->launch(a);
  EXPECT_NE(s.message().find("parameter 'n' is i32, got 1.5"), std::string::npos) << s.message();
  a.params["n"] = rt::Arg::ofScalar(3);
  EXPECT_TRUE((*k)->launch(a));
  // New scalar values never recompile: same kernel object, memory hit.
  auto again = c->getKernel("needs_t", spec);
  ASSERT_TRUE(bool(again));
  EXPECT_EQ(again->get(), k->get());
}

TEST_F(RuntimeTest, EmptyShapes) {
  // No keys: fully masked rows, O = 0 and LSE = -inf, no kernel call.
  Tensor k({2, 2, 0, D}), v({2, 2, 0, D});
  auto a = p.args();
  a.k = &k, a.v = &v;
  std::fill(p.o.data.begin(), p.o.data.end(), 1.f);
  ASSERT_TRUE(alibi->launch(a));
  for (float x : p.o.data)
    ASSERT_EQ(x, 0.f);
  for (float x : p.lse.data)
    ASSERT_TRUE(std::isinf(x) && x < 0);
  // No queries, no batch: nothing to do.
  Tensor q0({2, 4, 0, D}), o0({2, 4, 0, D}), l0({2, 4, 0});
  a = p.args();
  a.q = &q0, a.o = &o0, a.lse = &l0;
  EXPECT_TRUE(alibi->launch(a));
}

TEST(DtypeTest, Bf16Inputs) {
  TempDir dir;
  auto c = Compiler::create(opts(dir));
  ASSERT_TRUE(c->loadSource(std::string(ATTNC_LIB_DIR) + "/causal.attn"));
  KernelSpec spec;
  spec.headDim = D;
  spec.dtype = "bf16";
  auto k = c->getKernel("causal_attention", spec);
  ASSERT_TRUE(bool(k)) << k.message();
  EXPECT_EQ((*k)->info().dtype, "bf16");
  // bf16 = the upper half of an f32: 1.0 everywhere in Q/K, V = row index.
  const int64_t N = 5;
  std::vector<uint16_t> q(N * D, 0x3f80), kk(N * D, 0x3f80), v(N * D);
  for (int64_t j = 0; j < N; ++j)
    for (int64_t d = 0; d < D; ++d) {
      float f = float(j);
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      v[j * D + d] = uint16_t(bits >> 16);
    }
  std::vector<int64_t> shape = {1, 1, N, D};
  auto view = [&](void *data, DLDataType dt) {
    DLTensor t{};
    t.data = data;
    t.device = {kDLCPU, 0};
    t.ndim = 4;
    t.dtype = dt;
    t.shape = shape.data();
    return t;
  };
  Tensor o({1, 1, N, D});
  DLTensor tq = view(q.data(), {kDLBfloat, 16, 1}), tk = view(kk.data(), {kDLBfloat, 16, 1}),
           tv = view(v.data(), {kDLBfloat, 16, 1});
  rt::LaunchArgs a;
  a.q = &tq, a.k = &tk, a.v = &tv, a.o = &o;
  ASSERT_TRUE((*k)->launch(a));
  // Equal scores: row i averages V rows 0..i.
  for (int64_t i = 0; i < N; ++i)
    EXPECT_NEAR(o.data[i * D], i / 2.0, 1e-5);
  DLTensor tf = view(q.data(), {kDLFloat, 32, 1});
  a.q = &tf;
  EXPECT_NE((*k)->launch(a).message().find("q: expected dtype bf16, got float32"),
            std::string::npos);
}

TEST_F(RuntimeTest, NegativeQOffset) {
  auto a = p.args();
  a.qOffset = -1;
  expectError(a, "q_offset -1 is negative");
}

TEST_F(RuntimeTest, CompileErrors) {
  KernelSpec spec;
  spec.headDim = D;
  EXPECT_NE(c->getKernel("no_such_kernel", spec).message().find("no kernel named"),
            std::string::npos);
  spec.target = "tpu";
  EXPECT_NE(c->getKernel("alibi_causal", spec).message().find("unknown target 'tpu'"),
            std::string::npos);
  spec.target = "cpu";
  spec.dtype = "f8";
  EXPECT_NE(c->getKernel("alibi_causal", spec).message().find("dtype f8"),
            std::string::npos);
  rt::Status s = c->loadString("kernel broken { mask = nonexistent; }\n");
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("error"), std::string::npos) << s.message();
  auto bad = rt::CpuKernel::load(dir.path + "/missing.so", "x");
  EXPECT_FALSE(bool(bad));
}

TEST_F(RuntimeTest, ThreadCountDeterminism) {
  Tensor q({2, 4, 100, D}, {kDLFloat, 32, 1}, 5), k({2, 2, 120, D}, {kDLFloat, 32, 1}, 6),
      v({2, 2, 120, D}, {kDLFloat, 32, 1}, 7), o1({2, 4, 100, D}), oN({2, 4, 100, D}),
      l1({2, 4, 100}), lN({2, 4, 100});
  rt::LaunchArgs a;
  a.q = &q, a.k = &k, a.v = &v, a.o = &o1, a.lse = &l1, a.qOffset = 20;
  a.params["slopes"] = rt::Arg::ofTensor(&p.slopes);
  a.numThreads = 1;
  ASSERT_TRUE(alibi->launch(a));
  a.o = &oN, a.lse = &lN, a.numThreads = 0; // the whole pool
  ASSERT_TRUE(alibi->launch(a));
  EXPECT_GT(rt::defaultNumThreads(), 1) << "set ATTNC_NUM_THREADS>1 for this test";
  EXPECT_EQ(0, std::memcmp(o1.data.data(), oN.data.data(), o1.data.size() * 4));
  EXPECT_EQ(0, std::memcmp(l1.data.data(), lN.data.data(), l1.data.size() * 4));
}

TEST_F(RuntimeTest, LaunchInForkedChild) {
  // The pool's threads are not inherited by a child; launches there still
  // finish (inline) instead of waiting for them.
  ASSERT_TRUE(alibi->launch(p.args()));
  std::vector<float> parent = p.o.data;
  pid_t pid = fork();
  if (pid == 0) {
    std::fill(p.o.data.begin(), p.o.data.end(), 0.f);
    bool ok = bool(alibi->launch(p.args())) &&
              std::memcmp(parent.data(), p.o.data.data(), parent.size() * 4) == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(CacheTest, UnwritableCacheDirStillCompiles) {
  CompilerOptions o;
  o.cacheDir = "/proc/attnc-cannot-create-this";
  auto c = Compiler::create(o);
  ASSERT_TRUE(compile(*c, "causal.attn", "causal_attention"));
  EXPECT_EQ(c->stats().lastSource, "compiled");
}

TEST(CacheTest, HitsAndMisses) {
  TempDir dir;
  {
    auto c = Compiler::create(opts(dir));
    ASSERT_TRUE(compile(*c, "sliding_window.attn", "sliding_window_attention", {{"W", "8"}}));
    EXPECT_EQ(c->stats().misses, 1u);
    EXPECT_EQ(c->stats().lastSource, "compiled");
    ASSERT_TRUE(compile(*c, "sliding_window.attn", "sliding_window_attention", {{"W", "8"}}));
    EXPECT_EQ(c->stats().memoryHits, 1u);
    // A different constant is a different specialization.
    ASSERT_TRUE(compile(*c, "sliding_window.attn", "sliding_window_attention", {{"W", "16"}}));
    EXPECT_EQ(c->stats().misses, 2u);
  }
  auto c = Compiler::create(opts(dir));
  ASSERT_TRUE(compile(*c, "sliding_window.attn", "sliding_window_attention", {{"W", "8"}}));
  EXPECT_EQ(c->stats().diskHits, 1u);
  EXPECT_EQ(c->stats().misses, 0u);
  EXPECT_EQ(c->stats().lastSource, "disk");
  DiskCacheInfo info = diskCacheInfo(dir.path);
  EXPECT_EQ(info.entries, 2u);
  EXPECT_EQ(info.misses, 2u);
  EXPECT_EQ(info.hits, 1u);
  ASSERT_TRUE(clearDiskCache(dir.path));
  EXPECT_EQ(diskCacheInfo(dir.path).entries, 0u);
}

void corruptAndRecover(bool truncate) {
  TempDir dir;
  {
    auto c = Compiler::create(opts(dir));
    ASSERT_TRUE(compile(*c, "causal.attn", "causal_attention"));
  }
  auto sos = dir.files(".so");
  ASSERT_EQ(sos.size(), 1u);
  {
    std::fstream f(sos[0], std::ios::in | std::ios::out | std::ios::binary);
    if (truncate) {
      f.close();
      ASSERT_EQ(0, ::truncate(sos[0].c_str(), 100));
    } else {
      f.seekg(200);
      char ch;
      f.read(&ch, 1);
      ch ^= 0x5a;
      f.seekp(200);
      f.write(&ch, 1);
    }
  }
  auto c = Compiler::create(opts(dir));
  auto k = compile(*c, "causal.attn", "causal_attention");
  ASSERT_TRUE(k);
  EXPECT_EQ(c->stats().corrupt, 1u);
  EXPECT_EQ(c->stats().misses, 1u);
  Problem p;
  auto a = p.args();
  a.params.clear();
  EXPECT_TRUE(k->launch(a));
  // The rebuilt entry is good again.
  auto c2 = Compiler::create(opts(dir));
  ASSERT_TRUE(compile(*c2, "causal.attn", "causal_attention"));
  EXPECT_EQ(c2->stats().diskHits, 1u);
}

TEST(CacheTest, FlippedByteIsRebuilt) { corruptAndRecover(false); }
TEST(CacheTest, TruncatedEntryIsRebuilt) { corruptAndRecover(true); }

TEST(CacheTest, TwoProcessesCompileTheSameKernel) {
  TempDir dir;
  std::string env = "ATTNC_CACHE_DIR=" + dir.path;
  std::vector<char *> envp;
  for (char **e = environ; *e; ++e)
    if (std::strncmp(*e, "ATTNC_CACHE_DIR=", 16) != 0)
      envp.push_back(*e);
  envp.push_back(env.data());
  envp.push_back(nullptr);
  char *argv[] = {const_cast<char *>(ATTNC_JIT_EXAMPLE), nullptr};
  pid_t pids[2];
  for (pid_t &pid : pids)
    ASSERT_EQ(0, posix_spawn(&pid, ATTNC_JIT_EXAMPLE, nullptr, nullptr, argv, envp.data()));
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(pid, waitpid(pid, &status, 0));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_EQ(dir.files(".so").size(), 1u);
  EXPECT_EQ(dir.files(".sum").size(), 1u);
  auto c = Compiler::create(opts(dir));
  // What jit_example compiled (D = 64, W = 8) is now a disk hit.
  ASSERT_TRUE(compile(*c, "sliding_window.attn", "sliding_window_attention", {{"W", "8"}}, 64));
  EXPECT_EQ(c->stats().lastSource, "disk");
}

} // namespace
