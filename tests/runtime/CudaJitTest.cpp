//===- CudaJitTest.cpp - The JIT for the CUDA target ----------------------===//
//
// Compiler::compileCudaArtifact / getCudaKernel through the kernel cache.
// Suites by what they need (tests/runtime/CMakeLists.txt runs each under the
// matching environment; run directly, a suite whose environment is missing
// skips):
//   CudaJit          nothing: compile-only artifacts for an explicit arch
//                    (misses, memory and disk hits, keys, corrupt entries,
//                    PTX and metadata, errors)
//   CudaJitNoDriver  ATTNC_LIBCUDA naming a missing library: the errors
//                    without a GPU
//   CudaJitFake      ATTNC_LIBCUDA naming the fake driver: the device's arch
//                    when the spec has none, loading and launching
//   CudaJitDevice    a real GPU: JIT kernels against a float64 reference
//
//===----------------------------------------------------------------------===//

#include "CudaTestSupport.h"
#include "TempDir.h"

#include "attnc/JIT.h"
#include "attnc/Runtime/Half.h"

#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

extern char **environ;

using namespace attnc;
using namespace attnc::test;

namespace {

std::string readFile(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void writeFile(const std::string &path, const std::string &data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// A Compiler on `dir` with `file` (in lib/) loaded.
std::unique_ptr<Compiler> compilerFor(const TempDir &dir,
                                      const std::string &file = "sliding_window.attn") {
  CompilerOptions o;
  o.cacheDir = dir.path;
  auto c = Compiler::create(o);
  EXPECT_TRUE(c->loadSource(std::string(ATTNC_LIB_DIR) + "/" + file));
  return c;
}

const char *const kKernel = "sliding_window_attention";

/// bf16, D = 64, W = 64, for sm_90a.
KernelSpec baseSpec() {
  KernelSpec spec;
  spec.dtype = "bf16";
  spec.headDim = 64;
  spec.arch = "sm_90a";
  spec.consts["W"] = "64";
  return spec;
}

CudaArtifact compile(Compiler &c, const KernelSpec &spec = baseSpec(),
                     const std::string &kernel = kKernel) {
  auto art = c.compileCudaArtifact(kernel, spec);
  EXPECT_TRUE(bool(art)) << art.message();
  return art ? *art : CudaArtifact{};
}

void expectError(const std::string &message, const std::string &part) {
  EXPECT_TRUE(contains(message, part)) << "expected '" << part << "' in: " << message;
}

//===----------------------------------------------------------------------===//
// Compile-only, no GPU needed
//===----------------------------------------------------------------------===//

TEST(CudaJit, MissThenMemoryThenDisk) {
  TempDir dir;
  CudaArtifact first;
  {
    auto c = compilerFor(dir);
    first = compile(*c);
    EXPECT_EQ(c->stats().misses, 1u);
    EXPECT_EQ(c->stats().lastSource, "compiled");
    // The same request: the Compiler's memo.
    CudaArtifact again = compile(*c);
    EXPECT_EQ(c->stats().memoryHits, 1u);
    EXPECT_EQ(c->stats().lastSource, "memory");
    EXPECT_EQ(again.ptx, first.ptx);
    // Spelled differently, the same kernel: the cache's memory (same key).
    KernelSpec spec = baseSpec();
    spec.target = "cuda";
    spec.headDimV = 64;
    EXPECT_EQ(compile(*c, spec).key, first.key);
    EXPECT_EQ(c->stats().memoryHits, 2u);
    EXPECT_EQ(c->stats().misses, 1u);
    EXPECT_EQ(c->stats().lastSource, "memory");
  }
  EXPECT_EQ(dir.names(), (std::set<std::string>{first.key + ".ptx", first.key + ".ptx.meta",
                                                first.key + ".sum", "stats.log"}));
  EXPECT_EQ(readFile(dir.path + "/" + first.key + ".ptx"), first.ptx);
  EXPECT_EQ(readFile(dir.path + "/" + first.key + ".ptx.meta"), first.metadata);

  // A new Compiler (a new process, as far as the cache can tell): the disk.
  auto c = compilerFor(dir);
  CudaArtifact disk = compile(*c);
  EXPECT_EQ(c->stats().diskHits, 1u);
  EXPECT_EQ(c->stats().misses, 0u);
  EXPECT_EQ(c->stats().lastSource, "disk");
  EXPECT_EQ(disk.key, first.key);
  EXPECT_EQ(disk.ptx, first.ptx);
  EXPECT_EQ(disk.metadata, first.metadata);
  EXPECT_EQ(disk.arch, "sm_90a");
  EXPECT_EQ(disk.kernel, kKernel);

  DiskCacheInfo info = diskCacheInfo(dir.path);
  EXPECT_EQ(info.entries, 1u);
  EXPECT_EQ(info.misses, 1u);
  EXPECT_EQ(info.hits, 1u);
  EXPECT_EQ(info.corrupt, 0u);
}

TEST(CudaJit, KeyCoversTheSpecialization) {
  TempDir dir;
  auto c = compilerFor(dir);
  std::vector<KernelSpec> specs(7, baseSpec());
  specs[1].arch = "sm_80";
  specs[2].dtype = "f16";
  specs[3].headDim = 128;
  specs[4].consts["W"] = "128";
  // Tiles other than the defaults (the key holds the tiles after defaults).
  CudaArtifact baseArt = compile(*c);
  auto base = rt::parseCudaKernelInfo(baseArt.metadata);
  ASSERT_TRUE(bool(base)) << base.message();
  specs[5].tileQ = base->blockQ == 64 ? 128 : 64;
  specs[6].tileK = 16;
  std::set<std::string> keys;
  for (const KernelSpec &spec : specs) {
    CudaArtifact art = compile(*c, spec);
    if (&spec != &specs[0]) {
      EXPECT_EQ(c->stats().lastSource, "compiled") << art.key;
    }
    keys.insert(art.key);
    auto info = rt::parseCudaKernelInfo(art.metadata);
    ASSERT_TRUE(bool(info)) << info.message();
    EXPECT_EQ(info->arch, spec.arch);
    EXPECT_EQ(info->dtype, spec.dtype);
    EXPECT_EQ(info->headDim, spec.headDim);
    if (spec.tileQ) {
      EXPECT_EQ(info->blockQ, spec.tileQ);
    }
  }
  EXPECT_EQ(keys.size(), specs.size());
  EXPECT_EQ(c->stats().misses, specs.size());
  // The default tiles spelled out are the same kernel.
  KernelSpec explicitTiles = baseSpec();
  explicitTiles.tileQ = base->blockQ;
  EXPECT_EQ(compile(*c, explicitTiles).key, baseArt.key);
  EXPECT_EQ(c->stats().lastSource, "memory");
  EXPECT_EQ(diskCacheInfo(dir.path).entries, specs.size());
  // The CPU kernel of the same definition is another entry.
  KernelSpec cpu;
  cpu.headDim = 64;
  cpu.consts["W"] = "64";
  ASSERT_TRUE(bool(c->getKernel(kKernel, cpu)));
  EXPECT_EQ(diskCacheInfo(dir.path).entries, specs.size() + 1);
  // `attnc cache clear` removes both kinds and leaves nothing behind.
  ASSERT_TRUE(clearDiskCache(dir.path));
  EXPECT_EQ(dir.names(), std::set<std::string>{});
}

TEST(CudaJit, PtxAndMetadata) {
  TempDir dir;
  auto c = compilerFor(dir, "causal.attn");
  KernelSpec spec = baseSpec();
  spec.consts.clear();
  CudaArtifact art = compile(*c, spec, "causal_attention");
  EXPECT_EQ(art.kernel, "causal_attention");
  EXPECT_EQ(art.key.rfind("causal_attention-", 0), 0u) << art.key;
  EXPECT_TRUE(contains(art.ptx, ".target sm_90a")) << art.ptx.substr(0, 400);
  EXPECT_TRUE(contains(art.ptx, ".entry attnc_causal_attention("));
  // sm_90a at D = 64: warpgroup MMAs, two warpgroups of 64 rows.
  EXPECT_TRUE(contains(art.ptx, "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"));
  EXPECT_FALSE(contains(art.ptx, "mma.sync.aligned"));
  auto info = rt::parseCudaKernelInfo(art.metadata);
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_EQ(info->name, "causal_attention");
  EXPECT_EQ(info->entry, "attnc_causal_attention");
  EXPECT_EQ(info->arch, "sm_90a");
  EXPECT_EQ(info->dtype, "bf16");
  EXPECT_EQ(info->headDim, 64);
  EXPECT_EQ(info->headDimV, 64);
  EXPECT_EQ(info->threads, 256);
  EXPECT_GT(info->sharedBytes, 0);
  EXPECT_TRUE(info->params.empty());

  spec.arch = "sm_80";
  spec.dtype = "f16";
  CudaArtifact sm80 = compile(*c, spec, "causal_attention");
  EXPECT_TRUE(contains(sm80.ptx, ".target sm_80")) << sm80.ptx.substr(0, 400);
  EXPECT_TRUE(contains(sm80.ptx, "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"));
  EXPECT_TRUE(contains(sm80.metadata, "\narch sm_80\n"));

  // Runtime parameters reach the metadata (ALiBi's slopes).
  ASSERT_TRUE(c->loadSource(ATTNC_LIB_DIR "/alibi.attn"));
  CudaArtifact alibi = compile(*c, spec, "alibi_causal");
  auto alibiInfo = rt::parseCudaKernelInfo(alibi.metadata);
  ASSERT_TRUE(bool(alibiInfo)) << alibiInfo.message();
  ASSERT_EQ(alibiInfo->params.size(), 1u);
  EXPECT_EQ(alibiInfo->params[0].name, "slopes");
  EXPECT_TRUE(alibiInfo->params[0].isTensor);
}

/// ptxas accepts what the cache holds (skips without the CUDA toolkit).
TEST(CudaJit, DiskEntryAssembles) {
  std::string ptxas;
  for (std::string dir : {std::string("/usr/local/cuda/bin")}) {
    if (access((dir + "/ptxas").c_str(), X_OK) == 0)
      ptxas = dir + "/ptxas";
  }
  if (const char *path = std::getenv("PATH"); ptxas.empty() && path) {
    std::stringstream ss(path);
    for (std::string dir; ptxas.empty() && std::getline(ss, dir, ':');)
      if (access((dir + "/ptxas").c_str(), X_OK) == 0)
        ptxas = dir + "/ptxas";
  }
  if (ptxas.empty())
    GTEST_SKIP() << "no ptxas (CUDA toolkit)";
  TempDir dir;
  auto c = compilerFor(dir);
  CudaArtifact art = compile(*c);
  std::string ptxPath = dir.path + "/" + art.key + ".ptx", cubin = dir.path + "/out.cubin";
  std::string arch = "-arch=" + art.arch, out = "-o";
  char *argv[] = {ptxas.data(), arch.data(), ptxPath.data(), out.data(), cubin.data(), nullptr};
  pid_t pid;
  ASSERT_EQ(0, posix_spawn(&pid, ptxas.c_str(), nullptr, nullptr, argv, environ));
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(readFile(cubin).empty());
}

/// Damages the entry `compile` made with `damage(base path)`, then checks
/// that the next Compiler detects it, rebuilds it, and that the rebuilt
/// entry is good again.
void corruptAndRecover(const std::function<void(const std::string &)> &damage,
                       bool countsAsCorrupt = true) {
  TempDir dir;
  CudaArtifact good = compile(*compilerFor(dir));
  damage(dir.path + "/" + good.key);
  {
    auto c = compilerFor(dir);
    CudaArtifact rebuilt = compile(*c);
    EXPECT_EQ(c->stats().corrupt, countsAsCorrupt ? 1u : 0u);
    EXPECT_EQ(c->stats().misses, 1u);
    EXPECT_EQ(c->stats().lastSource, "compiled");
    EXPECT_EQ(rebuilt.ptx, good.ptx);
    EXPECT_EQ(rebuilt.metadata, good.metadata);
  }
  auto c = compilerFor(dir);
  CudaArtifact again = compile(*c);
  EXPECT_EQ(c->stats().diskHits, 1u);
  EXPECT_EQ(again.ptx, good.ptx);
  EXPECT_EQ(diskCacheInfo(dir.path).corrupt, countsAsCorrupt ? 1u : 0u);
}

TEST(CudaJit, FlippedPtxByteIsRebuilt) {
  corruptAndRecover([](const std::string &base) {
    std::string ptx = readFile(base + ".ptx");
    ptx[ptx.size() / 2] ^= 0x5a;
    writeFile(base + ".ptx", ptx);
  });
}

TEST(CudaJit, TruncatedMetadataIsRebuilt) {
  corruptAndRecover(
      [](const std::string &base) { ASSERT_EQ(0, ::truncate((base + ".ptx.meta").c_str(), 20)); });
}

TEST(CudaJit, MissingMetadataIsRebuilt) {
  corruptAndRecover([](const std::string &base) { ::unlink((base + ".ptx.meta").c_str()); });
}

TEST(CudaJit, BadChecksumFileIsRebuilt) {
  corruptAndRecover([](const std::string &base) { writeFile(base + ".sum", "0123\n"); });
}

/// PTX without its .sum is a writer between its renames, not corruption.
TEST(CudaJit, EntryWithoutChecksumIsAMiss) {
  corruptAndRecover([](const std::string &base) { ::unlink((base + ".sum").c_str()); },
                    /*countsAsCorrupt=*/false);
}

TEST(CudaJit, UnwritableCacheDirStillCompiles) {
  CompilerOptions o;
  o.cacheDir = "/proc/attnc-cannot-create-this";
  auto c = Compiler::create(o);
  ASSERT_TRUE(c->loadSource(ATTNC_LIB_DIR "/sliding_window.attn"));
  CudaArtifact art = compile(*c);
  EXPECT_TRUE(contains(art.ptx, ".entry attnc_sliding_window_attention("));
  EXPECT_EQ(c->stats().lastSource, "compiled");
}

TEST(CudaJit, SpecErrors) {
  TempDir dir;
  auto c = compilerFor(dir);
  KernelSpec spec = baseSpec();
  spec.dtype = "f32";
  expectError(c->compileCudaArtifact(kKernel, spec).message(),
              "CUDA kernels take dtype bf16 or f16 (f32 accumulation), got 'f32'");
  spec = baseSpec();
  spec.arch = "sm90";
  expectError(c->compileCudaArtifact(kKernel, spec).message(),
              "CUDA arch must be sm_<version>[a|f] (e.g. sm_80, sm_90a), got 'sm90'");
  spec = baseSpec();
  spec.target = "cpu";
  expectError(c->compileCudaArtifact(kKernel, spec).message(),
              "KernelSpec.target is 'cpu': getCudaKernel and compileCudaArtifact compile for "
              "cuda");
  spec.target = "cuda";
  expectError(c->getKernel(kKernel, spec).message(),
              "KernelSpec.target is 'cuda': getKernel compiles for the CPU");
  spec.target = "tpu";
  expectError(c->compileCudaArtifact(kKernel, spec).message(),
              "unknown target 'tpu' (available: cpu, cuda)");
  spec = baseSpec();
  expectError(c->compileCudaArtifact("no_such_kernel", spec).message(),
              "no kernel named 'no_such_kernel'");
  // The CUDA pipeline's own errors come through.
  spec.headDim = 72;
  expectError(c->compileCudaArtifact(kKernel, spec).message(),
              "head dims must be positive multiples of 16, got 72 and 72");
  spec = baseSpec();
  spec.tileQ = 24;
  expectError(c->compileCudaArtifact(kKernel, spec).message(), "block-q must be a multiple of 16");
  // The kernel's declared dtypes and head dims.
  ASSERT_TRUE(c->loadSource(ATTNC_LIB_DIR "/gemma2.attn"));
  spec = baseSpec();
  spec.dtype = "f16";
  spec.headDim = 128;
  expectError(c->compileCudaArtifact("gemma2_local", spec).message(),
              "kernel 'gemma2_local' is not declared for dtype f16");
  spec.dtype = "bf16";
  spec.headDim = 64;
  expectError(c->compileCudaArtifact("gemma2_local", spec).message(),
              "kernel 'gemma2_local' is not declared for head_dim 64");
  // Only the two the pipeline refused were compiled; nothing was cached.
  EXPECT_EQ(c->stats().misses, 2u);
  EXPECT_EQ(diskCacheInfo(dir.path).entries, 0u);
}

//===----------------------------------------------------------------------===//
// No driver
//===----------------------------------------------------------------------===//

#define REQUIRE_NO_DRIVER()                                                                        \
  if (env("ATTNC_LIBCUDA").find("/nonexistent/") == std::string::npos)                             \
  GTEST_SKIP() << "needs ATTNC_LIBCUDA naming a missing library (as ctest runs it)"

TEST(CudaJitNoDriver, EmptyArchNeedsAGpu) {
  REQUIRE_NO_DRIVER();
  TempDir dir;
  auto c = compilerFor(dir);
  KernelSpec spec = baseSpec();
  spec.arch = "";
  auto art = c->compileCudaArtifact(kKernel, spec);
  ASSERT_FALSE(bool(art));
  expectError(art.message(), "KernelSpec.arch is empty, which means the GPU's architecture, but "
                             "there is no usable GPU (");
  expectError(art.message(), "/nonexistent/libcuda.so.1");
  expectError(art.message(), "give an arch (e.g. sm_90a) to compile without one");
  // Loading needs the GPU even with an arch; nothing is compiled for it.
  for (const char *arch : {"", "sm_90a"}) {
    spec.arch = arch;
    auto kernel = c->getCudaKernel(kKernel, spec);
    ASSERT_FALSE(bool(kernel));
    expectError(kernel.message(), "CUDA kernel 'sliding_window_attention' needs a GPU: ");
    expectError(kernel.message(), "compileCudaArtifact compiles without one, given an arch");
  }
  EXPECT_EQ(c->stats().misses, 0u);
  EXPECT_EQ(dir.names(), std::set<std::string>{});
  // An explicit arch still compiles.
  spec.arch = "sm_90a";
  EXPECT_TRUE(contains(compile(*c, spec).ptx, ".target sm_90a"));
}

//===----------------------------------------------------------------------===//
// Fake driver
//===----------------------------------------------------------------------===//

class CudaJitFake : public ::testing::Test {
protected:
  void SetUp() override {
    if (!underFakeDriver())
      GTEST_SKIP() << "needs ATTNC_LIBCUDA=" ATTNC_FAKE_CUDA " (as ctest runs it)";
    hooks.setCapability(90);
  }
  void TearDown() override {
    if (underFakeDriver())
      hooks.setCapability(90);
  }
  FakeHooks hooks;
  TempDir dir;
};

TEST_F(CudaJitFake, EmptyArchIsTheDevices) {
  auto c = compilerFor(dir);
  KernelSpec spec = baseSpec();
  spec.arch = "";
  CudaArtifact hopper = compile(*c, spec);
  EXPECT_EQ(hopper.arch, "sm_90a");
  EXPECT_TRUE(contains(hopper.ptx, ".target sm_90a"));
  // The explicit spelling of the same arch is the same entry.
  EXPECT_EQ(compile(*c).key, hopper.key);
  hooks.setCapability(80);
  CudaArtifact ampere = compile(*c, spec);
  EXPECT_EQ(ampere.arch, "sm_80");
  EXPECT_TRUE(contains(ampere.ptx, ".target sm_80"));
  EXPECT_NE(ampere.key, hopper.key);
  EXPECT_EQ(c->stats().misses, 2u);
}

TEST_F(CudaJitFake, GetCudaKernelLoadsAndLaunches) {
  const int64_t B = 2, Hq = 4, Hkv = 2, N = 100, D = 64;
  auto c = compilerFor(dir, "causal.attn");
  KernelSpec spec;
  spec.dtype = "f16";
  spec.headDim = D;
  int loads = hooks.moduleLoads();
  auto kernel = c->getCudaKernel("causal_attention", spec);
  ASSERT_TRUE(bool(kernel)) << kernel.message();
  EXPECT_EQ(c->stats().lastSource, "compiled");
  EXPECT_EQ(hooks.moduleLoads(), loads + 1);
  const rt::CudaKernelInfo &info = (*kernel)->info();
  EXPECT_EQ(info.entry, "attnc_causal_attention");
  EXPECT_EQ(info.arch, "sm_90a");
  EXPECT_EQ(info.dtype, "f16");

  DevTensor q({B, Hq, N, D}, kF16), k({B, Hkv, N, D}, kF16), v({B, Hkv, N, D}, kF16),
      o({B, Hq, N, D}, kF16), lse({B, Hq, N}, kF32);
  rt::LaunchArgs args;
  args.q = &q, args.k = &k, args.v = &v, args.o = &o, args.lse = &lse, args.qOffset = 7;
  int launches = hooks.launches();
  ASSERT_TRUE((*kernel)->launch(args));
  ASSERT_EQ(hooks.launches(), launches + 1);
  attnc_fake_launch l = hooks.last();
  EXPECT_STREQ(l.entry, "attnc_causal_attention");
  EXPECT_EQ(l.grid[0], unsigned((N + info.blockQ - 1) / info.blockQ));
  EXPECT_EQ(l.grid[1], unsigned(Hq));
  EXPECT_EQ(l.grid[2], unsigned(B));
  EXPECT_EQ(l.block[0], unsigned(info.threads));
  EXPECT_EQ(l.sharedBytes, unsigned(info.sharedBytes));
  // The PTX's parameter list is the kernel ABI: 5 pointers, 6 i32 (B, Hq,
  // Hkv, Nq, Nk, q_offset), 14 i64 strides, write_lse.
  ASSERT_EQ(l.numParams, 26);
  std::vector<uint64_t> sizes = {B, Hq, Hkv, N, N, 7};
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(l.values[5 + i], sizes[i]) << "argument " << 5 + i;
  EXPECT_EQ(l.values[25], 1u); // write_lse

  // Again: the Compiler's memo, no second module.
  auto same = c->getCudaKernel("causal_attention", spec);
  ASSERT_TRUE(bool(same));
  EXPECT_EQ(same->get(), kernel->get());
  EXPECT_EQ(c->stats().lastSource, "memory");
  // compileCudaArtifact of it is the cache's memory.
  CudaArtifact art = compile(*c, spec, "causal_attention");
  EXPECT_EQ(c->stats().lastSource, "memory");
  EXPECT_EQ(c->stats().misses, 1u);
  // Another Compiler: from disk, loaded again.
  auto c2 = compilerFor(dir, "causal.attn");
  auto fromDisk = c2->getCudaKernel("causal_attention", spec);
  ASSERT_TRUE(bool(fromDisk)) << fromDisk.message();
  EXPECT_EQ(c2->stats().lastSource, "disk");
  EXPECT_EQ((*fromDisk)->info().entry, "attnc_causal_attention");
  EXPECT_EQ(hooks.moduleLoads(), loads + 2);
  EXPECT_EQ(diskCacheInfo(dir.path).entries, 1u);
  EXPECT_EQ(art.arch, "sm_90a");
}

TEST_F(CudaJitFake, ArchTheDeviceCannotRun) {
  hooks.setCapability(80);
  auto c = compilerFor(dir);
  auto kernel = c->getCudaKernel(kKernel, baseSpec()); // sm_90a on an sm_80 device
  ASSERT_FALSE(bool(kernel));
  expectError(kernel.message(), "kernel 'sliding_window_attention' (sm_90a): ");
  // The artifact was compiled and cached all the same.
  EXPECT_EQ(diskCacheInfo(dir.path).entries, 1u);
}

//===----------------------------------------------------------------------===//
// A real GPU
//===----------------------------------------------------------------------===//

/// Causal attention in double over [B, H, N, D] row-major inputs (Hq == Hkv).
void causalReference(const std::vector<double> &q, const std::vector<double> &k,
                     const std::vector<double> &v, int64_t BH, int64_t N, int64_t D,
                     std::vector<double> &o, std::vector<double> &lse) {
  o.assign(BH * N * D, 0);
  lse.assign(BH * N, 0);
  double scale = 1 / std::sqrt(double(D));
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> s(i + 1);
      double m = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += q[(bh * N + i) * D + d] * k[(bh * N + j) * D + d];
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      for (int64_t j = 0; j <= i; ++j)
        sum += std::exp(s[j] - m);
      lse[bh * N + i] = m + std::log(sum);
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t d = 0; d < D; ++d)
          o[(bh * N + i) * D + d] += std::exp(s[j] - m) / sum * v[(bh * N + j) * D + d];
    }
}

double relativeError(const std::vector<double> &got, const std::vector<double> &want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

TEST(CudaJitDevice, CausalMatchesReference) {
  REQUIRE_GPU();
  const int64_t B = 1, H = 2, N = 130, D = 64;
  TempDir dir;
  auto c = compilerFor(dir, "causal.attn");
  KernelSpec spec;
  spec.dtype = "bf16";
  spec.headDim = D;
  auto kernel = c->getCudaKernel("causal_attention", spec);
  ASSERT_TRUE(bool(kernel)) << kernel.message();

  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  auto draw = [&](std::vector<double> &values, DevTensor &t) {
    std::vector<uint16_t> bits(t.storage);
    values.resize(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) {
      bits[i] = rt::floatToBf16(normal(rng));
      values[i] = rt::bf16ToFloat(bits[i]);
    }
    t.upload(bits);
  };
  DevTensor q({B, H, N, D}, kBF16), k({B, H, N, D}, kBF16), v({B, H, N, D}, kBF16),
      o({B, H, N, D}, kBF16), lse({B, H, N}, kF32);
  std::vector<double> qs, ks, vs, refO, refLse;
  draw(qs, q), draw(ks, k), draw(vs, v);
  causalReference(qs, ks, vs, B * H, N, D, refO, refLse);

  rt::LaunchArgs args;
  args.q = &q, args.k = &k, args.v = &v, args.o = &o, args.lse = &lse;
  ASSERT_TRUE((*kernel)->launch(args));
  ASSERT_TRUE(rt::cudaSynchronize(0));
  std::vector<double> gotO, gotLse;
  for (uint16_t x : o.download<uint16_t>())
    gotO.push_back(rt::bf16ToFloat(x));
  for (float x : lse.download<float>())
    gotLse.push_back(x);
  EXPECT_LT(relativeError(gotO, refO), 1e-2);
  EXPECT_LT(relativeError(gotLse, refLse), 1e-2);
}

} // namespace
