//===- CudaTest.cpp - The CUDA executor of the light runtime --------------===//
//
// Suites by what they need (tests/runtime/CMakeLists.txt runs each under the
// matching environment; run directly, a suite whose environment is missing
// skips):
//   CudaMetadata, Half, CudaArch  nothing
//   CudaNoDriver                  ATTNC_LIBCUDA naming a missing library
//   CudaFake                      ATTNC_LIBCUDA naming the fake driver
//                                 (FakeCuda.h): argument packing, validation,
//                                 pointer checks, contexts, memsets, C API
//   CudaDevice                    a real GPU: the same launches, checked on
//                                 the kernel's output
//
//===----------------------------------------------------------------------===//

#include "CudaTestKernels.h"
#include "CudaTestSupport.h"

#include "attnc/Runtime/CApi.h"
#include "attnc/Runtime/Cuda.h"
#include "attnc/Runtime/Half.h"

#include <array>
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

using namespace attnc;
using namespace attnc::rt;
using namespace attnc::test;

namespace {

std::string withLine(std::string meta, const std::string &key, const std::string &line) {
  size_t pos = meta.find("\n" + key + " ");
  if (pos == std::string::npos)
    return meta + line + "\n";
  size_t end = meta.find('\n', pos + 1);
  return meta.substr(0, pos + 1) + line + meta.substr(end);
}

Expected<std::shared_ptr<CudaKernel>> loadPattern(int64_t sharedBytes = 0) {
  return CudaKernel::load(
      test::kPatternPtx,
      withLine(test::kPatternMeta, "shared_bytes", "shared_bytes " + std::to_string(sharedBytes)));
}

/// The pattern kernel's problem: GQA, Nq not a multiple of block_q, Q a head
/// slice at a byte offset, O in [B, N, H, D] order with padded rows, LSE
/// with padded rows (CudaTestKernels.h says what the kernel computes).
struct PatternProblem {
  static constexpr int64_t B = 2, Hq = 4, Hkv = 2, Nq = 10, Nk = 7, D = 8, qOffset = 3;
  static constexpr float scale = 0.5f;
  static constexpr int64_t shift = -3;
  int device;
  DevTensor q{{B, Hq, Nq, D}, kF16, {6 * Nq * D, Nq *D, D, 1}, Nq *D, device};
  DevTensor k{{B, Hkv, Nk, D}, kF16, {}, 0, device}, v{{B, Hkv, Nk, D}, kF16, {}, 0, device};
  DevTensor o{{B, Hq, Nq, D}, kF16, {Nq * Hq * 16, 16, Hq * 16, 1}, 0, device};
  DevTensor lse{{B, Hq, Nq}, kF32, {Hq * (Nq + 2), Nq + 2, 1}, 0, device};
  DevTensor bias{{Hq}, kF32, {}, 0, device}, echo{{40}, kI64, {}, 0, device};

  explicit PatternProblem(int device = 0) : device(device) {
    std::vector<uint16_t> qs(q.storage);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t n = 0; n < Nq; ++n)
          for (int64_t d = 0; d < D; ++d)
            qs[q.index({b, h, n, d})] = floatToF16(float(qValue(b, h, n, d)));
    q.upload(qs);
    std::vector<float> bs(Hq);
    for (int64_t h = 0; h < Hq; ++h)
      bs[h] = 0.25f * h;
    bias.upload(bs);
  }
  static int64_t qValue(int64_t b, int64_t h, int64_t n, int64_t d) {
    return (b * 7 + h * 5 + n * 3 + d) % 16 - 8;
  }

  LaunchArgs args() {
    LaunchArgs a;
    a.q = &q, a.k = &k, a.v = &v, a.o = &o, a.lse = &lse, a.qOffset = qOffset;
    a.params["bias"] = Arg::ofTensor(&bias);
    a.params["scale"] = Arg::ofScalar(scale);
    a.params["shift"] = Arg::ofScalar(double(shift));
    a.params["echo"] = Arg::ofTensor(&echo);
    return a;
  }

  /// Every kernel argument as the echo (and the fake's record) holds it.
  std::vector<uint64_t> expectedAbi() {
    std::vector<uint64_t> w = {q.address(), k.address(), v.address(), o.address(), lse.address(), B,
                               Hq,          Hkv,         Nq,          Nk,          qOffset};
    for (const DLTensor *t : {&q.t, &k.t, &v.t, &o.t})
      for (int i = 0; i < 3; ++i)
        w.push_back(uint64_t(t->strides[i]));
    w.push_back(uint64_t(lse.strides[0]));
    w.push_back(uint64_t(lse.strides[1]));
    w.push_back(1); // write_lse
    w.push_back(bias.address());
    w.push_back(Hq);
    uint32_t scaleBits;
    std::memcpy(&scaleBits, &scale, 4);
    w.push_back(scaleBits);
    w.push_back(uint64_t(shift));
    w.push_back(echo.address());
    w.push_back(40);
    return w;
  }

  /// The fake driver recorded exactly this problem's launch.
  void expectRecorded(const attnc_fake_launch &l) {
    EXPECT_STREQ(l.entry, "attnc_test_pattern");
    EXPECT_EQ(l.grid[0], 3u); // ceil(10 / 4)
    EXPECT_EQ(l.grid[1], unsigned(Hq));
    EXPECT_EQ(l.grid[2], unsigned(B));
    EXPECT_EQ(l.block[0], 32u);
    EXPECT_EQ(l.block[1] * l.block[2], 1u);
    std::vector<uint64_t> want = expectedAbi();
    ASSERT_EQ(l.numParams, int(want.size()));
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(l.values[i], want[i]) << "argument " << i;
  }

  /// The GPU ran the kernel: outputs where it writes, poison elsewhere.
  void expectComputed() {
    auto os = o.download<uint16_t>();
    std::vector<bool> written(os.size(), false);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t n = 0; n < Nq; ++n)
          for (int64_t d = 0; d < D; ++d) {
            int64_t i = o.index({b, h, n, d});
            float want = float(qValue(b, h, n, d)) * scale + 0.25f * h + float(shift);
            EXPECT_EQ(os[i], floatToF16(want))
                << "o[" << b << "," << h << "," << n << "," << d << "]";
            written[i] = true;
          }
    for (size_t i = 0; i < os.size(); ++i) {
      if (!written[i]) {
        ASSERT_EQ(os[i], 0xffff) << "o storage element " << i << " (a gap) was written";
      }
    }
    auto ls = lse.download<float>();
    std::vector<bool> lw(ls.size(), false);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t n = 0; n < Nq; ++n) {
          int64_t i = lse.index({b, h, n});
          EXPECT_EQ(ls[i], float(qOffset + n));
          lw[i] = true;
        }
    for (size_t i = 0; i < ls.size(); ++i) {
      if (!lw[i]) {
        ASSERT_TRUE(std::isnan(ls[i])) << "lse storage element " << i << " was written";
      }
    }
    auto es = echo.download<uint64_t>();
    std::vector<uint64_t> want = expectedAbi();
    ASSERT_EQ(int(want.size()), test::kEchoWords);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(es[i], want[i]) << "argument " << i;
    for (size_t i = want.size(); i < es.size(); ++i)
      EXPECT_EQ(es[i], ~uint64_t(0)) << "echo[" << i << "]";
  }

  /// Nk == 0: O = 0 and LSE = -inf everywhere, the gaps still poison.
  void expectFullyMasked() {
    size_t zeros = 0, masked = 0;
    for (uint16_t x : o.download<uint16_t>()) {
      ASSERT_TRUE(x == 0 || x == 0xffff) << x;
      zeros += x == 0;
    }
    EXPECT_EQ(zeros, size_t(B * Hq * Nq * D));
    for (float x : lse.download<float>()) {
      ASSERT_TRUE(std::isnan(x) || (std::isinf(x) && x < 0)) << x;
      masked += std::isinf(x);
    }
    EXPECT_EQ(masked, size_t(B * Hq * Nq));
  }

  /// The same launch through the C API.
  int launchC(void *kernel, char *err, size_t errlen, void *stream = nullptr) {
    auto tensor = [](const DevTensor &t, int32_t dtype) {
      attnc_tensor c{};
      c.data = t.address();
      c.dtype = dtype;
      c.rank = int32_t(t.shape.size());
      for (size_t i = 0; i < t.shape.size(); ++i) {
        c.shape[i] = t.shape[i];
        c.strides[i] = t.strides[i];
      }
      return c;
    };
    attnc_param params[4] = {};
    params[0].name = "bias";
    params[0].is_tensor = 1;
    params[0].tensor = tensor(bias, ATTNC_DTYPE_F32);
    params[1].name = "scale";
    params[1].scalar = scale;
    params[2].name = "shift";
    params[2].scalar = double(shift);
    params[3].name = "echo";
    params[3].is_tensor = 1;
    params[3].tensor = tensor(echo, ATTNC_DTYPE_I64);
    attnc_launch_desc desc{};
    desc.q = tensor(q, ATTNC_DTYPE_F16);
    desc.k = tensor(k, ATTNC_DTYPE_F16);
    desc.v = tensor(v, ATTNC_DTYPE_F16);
    desc.o = tensor(o, ATTNC_DTYPE_F16);
    desc.lse = tensor(lse, ATTNC_DTYPE_F32);
    desc.q_offset = qOffset;
    desc.device = device;
    desc.num_params = 4;
    desc.params = params;
    desc.stream = stream;
    return attnc_cuda_launch(kernel, &desc, err, errlen);
  }
};

//===----------------------------------------------------------------------===//
// Metadata, conversions, architectures (no driver)
//===----------------------------------------------------------------------===//

TEST(CudaMetadata, Parses) {
  auto info = parseCudaKernelInfo(test::kPatternMeta);
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_EQ(info->name, "pattern");
  EXPECT_EQ(info->entry, "attnc_test_pattern");
  EXPECT_EQ(info->arch, "sm_80");
  EXPECT_EQ(info->dtype, "f16");
  EXPECT_EQ(info->headDim, 8);
  EXPECT_EQ(info->headDimV, 8);
  EXPECT_EQ(info->blockQ, 4);
  EXPECT_EQ(info->threads, 32);
  EXPECT_EQ(info->sharedBytes, 0);
  EXPECT_EQ(info->align, 2);
  ASSERT_EQ(info->params.size(), 4u);
  EXPECT_TRUE(info->params[0].isTensor);
  EXPECT_EQ(info->params[0].type, "f32");
  EXPECT_EQ(info->params[0].dims, std::vector<std::string>{"Hq"});
  EXPECT_FALSE(info->params[1].isTensor);
  EXPECT_EQ(info->params[1].defaultValue, 2.0);
  EXPECT_FALSE(info->params[2].defaultValue.has_value());
  EXPECT_EQ(info->params[3].dims, std::vector<std::string>{"40"});
  // Unknown keys (a newer producer's) and blank lines are skipped; align
  // defaults to 16.
  std::string meta = test::kPatternMeta;
  meta.replace(meta.find("align 2\n"), 8, "\nregisters 96\n");
  auto again = parseCudaKernelInfo(meta);
  ASSERT_TRUE(bool(again)) << again.message();
  EXPECT_EQ(again->align, 16);
}

TEST(CudaMetadata, EachBadLine) {
  const std::pair<std::string, std::string> cases[] = {
      {"head_dim x", "head_dim: expected an integer"},
      {"head_dim 0", "head_dim: out of range"},
      {"head_dim 64 128", "head_dim: expected one value"},
      {"block_q -4", "block_q: out of range"},
      {"threads 2048", "threads: out of range"},
      {"shared_bytes -1", "shared_bytes: out of range"},
      {"align 24", "align: expected a power of two"},
      {"dtype f8", "dtype: expected f32, bf16 or f16"},
      {"arch 90", "arch: expected sm_<version>"},
      {"kernel", "kernel: expected one value"},
  };
  for (auto &[line, why] : cases) {
    std::string key = line.substr(0, line.find(' '));
    auto info = parseCudaKernelInfo(withLine(test::kPatternMeta, key, line));
    EXPECT_FALSE(bool(info)) << line;
    EXPECT_NE(info.message().find(why), std::string::npos) << line << ": " << info.message();
    EXPECT_NE(info.message().find("'" + line + "'"), std::string::npos) << info.message();
  }
  const std::pair<std::string, std::string> params[] = {
      {"param x", "param: expected"},
      {"param x vector f32 1 Hq", "param kind"},
      {"param x tensor f8 1 Hq", "unknown element type 'f8'"},
      {"param x tensor f32 0", "tensor rank"},
      {"param x tensor f32 2 Hq", "tensor dims: expected 2"},
      {"param x tensor f32 1 H", "tensor dim 'H'"},
      {"param x scalar f32", "scalar default"},
      {"param x scalar f32 fast", "scalar default 'fast'"},
      {"param x scalar bf16 1", "unknown scalar type 'bf16'"},
      {"param bias scalar f32 1", "parameter 'bias' declared twice"},
  };
  for (auto &[line, why] : params) {
    auto info = parseCudaKernelInfo(std::string(test::kPatternMeta) + line + "\n");
    EXPECT_FALSE(bool(info)) << line;
    EXPECT_NE(info.message().find(why), std::string::npos) << line << ": " << info.message();
  }
  auto twice = parseCudaKernelInfo(std::string(test::kPatternMeta) + "threads 64\n");
  expectError(twice.error(), "'threads' given twice");
}

TEST(CudaMetadata, HeaderAndRequiredKeys) {
  std::string meta = test::kPatternMeta;
  expectError(parseCudaKernelInfo("").error(), "no 'attnc-cuda-kernel 1' header");
  expectError(parseCudaKernelInfo("attnc-cuda-kernel 2\n").error(), "unsupported version");
  expectError(parseCudaKernelInfo("kernel x\n" + meta).error(), "expected a 'attnc-cuda-kernel 1'");
  // A CPU artifact's metadata is not a CUDA kernel's, and the other way.
  std::string cpu = "attnc-cpu-kernel 1\nkernel k\nhead_dim 8\nhead_dim_v 8\ntile_q 4\n";
  ASSERT_TRUE(bool(parseKernelInfo(cpu)));
  expectError(parseCudaKernelInfo(cpu).error(), "expected a 'attnc-cuda-kernel 1' header");
  expectError(parseKernelInfo(meta).error(), "expected a 'attnc-cpu-kernel 1' header");
  for (const char *key : {"kernel", "entry", "arch", "dtype", "head_dim", "head_dim_v", "block_q",
                          "threads", "shared_bytes"}) {
    std::string without = meta;
    size_t pos = without.find(std::string("\n") + key + " ");
    ASSERT_NE(pos, std::string::npos) << key;
    without.erase(pos + 1, without.find('\n', pos + 1) - pos);
    expectError(parseCudaKernelInfo(without).error(), std::string("missing '") + key + "'");
  }
  expectError(parseCudaKernelInfo(withLine(meta, "dtype", "dtype f32")).error(),
              "dtype f32 (CUDA kernels take bf16 or f16)");
}

TEST(CudaMetadata, CpuFormatKeepsItsRules) {
  auto info = parseKernelInfo("attnc-cpu-kernel 1\nkernel k\nhead_dim 8\nhead_dim_v 8\ntile_q 4\n"
                              "tile_k 8\nparam cap scalar f32 -inf\nparam ids tensor i32 1 N\n");
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_EQ(info->dtype, "f32"); // the CPU default
  EXPECT_EQ(info->tileK, 8);
  ASSERT_EQ(info->params.size(), 2u);
  EXPECT_EQ(*info->params[0].defaultValue, -std::numeric_limits<double>::infinity());
  expectError(parseKernelInfo("attnc-cpu-kernel 1\nkernel k\nhead_dim 8\nhead_dim_v 8\n").error(),
              "missing 'tile_q'");
}

TEST(CudaMetadata, CpuDecodeTwinLine) {
  const std::string head = "attnc-cpu-kernel 1\nkernel k\nhead_dim 8\nhead_dim_v 8\ntile_q 32\n";
  auto none = parseKernelInfo(head);
  ASSERT_TRUE(bool(none)) << none.message();
  EXPECT_TRUE(none->decodeTiles.empty()); // an older artifact: no twin
  // The twins as (tile_q, tile_k, items); one without ITEMS (older
  // artifacts) takes two items.
  auto tiles = [&](const std::string &lines) {
    std::vector<std::array<int64_t, 3>> out;
    auto info = parseKernelInfo(head + lines);
    EXPECT_TRUE(bool(info)) << info.message();
    for (const DecodeTile &t : info ? info->decodeTiles : std::vector<DecodeTile>())
      out.push_back({t.tileQ, t.tileK, t.maxItems});
    return out;
  };
  using Tiles = std::vector<std::array<int64_t, 3>>;
  EXPECT_EQ(tiles("decode_tile 4 16\n"), (Tiles{{4, 16, 2}}));
  EXPECT_EQ(tiles("decode_tile 4 16 2\ndecode_tile 16 8 1\n"), (Tiles{{4, 16, 2}, {16, 8, 1}}));
  for (const char *bad : {"decode_tile 4\n", "decode_tile 0 16\n", "decode_tile 4 x\n",
                          "decode_tile 4 16 0\n", "decode_tile 4 16 2 1\n"})
    expectError(parseKernelInfo(head + bad).error(), "decode_tile: expected TILE_Q TILE_K [ITEMS]");
  expectError(parseKernelInfo(head + "decode_tile 16 8 1\ndecode_tile 4 16 2\n").error(),
              "decode_tile: twins must come in ascending TILE_Q");
}

TEST(CudaMetadata, CacheLinesKeepBudgets) {
  const std::string head = "attnc-cpu-kernel 1\nkernel k\nhead_dim 8\nhead_dim_v 8\ntile_q 4\n"
                           "tile_k 8\n";
  auto info = parseKernelInfo(head + "kv_cache h paged 16 budget 0 0 bf16 none 0 2048 h2o\n");
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_EQ(info->cache->retention, "budget");
  EXPECT_EQ(info->cache->budget, 2048);
  EXPECT_EQ(info->cache->evict, "h2o");
  // The 9-value form (before budgets were recorded) still reads.
  info = parseKernelInfo(head + "kv_cache p paged 16 all 0 0 bf16 none 0\n");
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_EQ(info->cache->evict, "none");
  for (const char *bad : {"kv_cache h paged 16 budget 0 0 bf16 none 0 0 h2o\n",
                          "kv_cache h paged 16 budget 0 0 bf16 none 0 64 none\n",
                          "kv_cache h paged 16 all 0 0 bf16 none 0 64 lru\n"})
    EXPECT_FALSE(bool(parseKernelInfo(head + bad))) << bad;
}

TEST(Half, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16ToFloat(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16ToFloat(floatToF16(f))));
    } else {
      ASSERT_EQ(floatToF16(f), h) << std::hex << h;
    }
  }
  EXPECT_EQ(f16ToFloat(0x3c00), 1.f);
  EXPECT_EQ(f16ToFloat(0x7bff), 65504.f);
  EXPECT_EQ(f16ToFloat(0x0001), std::ldexp(1.f, -24));
  // Ties to even, overflow to infinity.
  EXPECT_EQ(floatToF16(1.f + std::ldexp(1.f, -11)), 0x3c00);
  EXPECT_EQ(floatToF16(1.f + 3 * std::ldexp(1.f, -11)), 0x3c02);
  EXPECT_EQ(floatToF16(65520.f), 0x7c00);
  EXPECT_EQ(floatToF16(-1e9f), 0xfc00);
}

TEST(Half, Bf16RoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x10000; h += 7) {
    float f = bf16ToFloat(uint16_t(h));
    if (!std::isnan(f)) {
      ASSERT_EQ(floatToBf16(f), h) << std::hex << h;
    }
  }
  EXPECT_EQ(floatToBf16(1.f + std::ldexp(1.f, -8)), 0x3f80);     // tie: down to even
  EXPECT_EQ(floatToBf16(1.f + 3 * std::ldexp(1.f, -8)), 0x3f82); // tie: up to even
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(NAN))));
  EXPECT_EQ(roundTo("bf16", 1.f + std::ldexp(1.f, -9)), 1.f);
  EXPECT_EQ(roundTo("f32", 0.1f), 0.1f);
}

TEST(CudaArch, RunsOn) {
  EXPECT_TRUE(archRunsOn("sm_80", 80));
  EXPECT_TRUE(archRunsOn("sm_80", 90));
  EXPECT_FALSE(archRunsOn("sm_90", 89));
  EXPECT_TRUE(archRunsOn("sm_90a", 90));
  EXPECT_FALSE(archRunsOn("sm_90a", 100));
  EXPECT_FALSE(archRunsOn("sm_90a", 89));
  EXPECT_TRUE(archRunsOn("sm_100f", 103));
  EXPECT_FALSE(archRunsOn("sm_100f", 120));
  EXPECT_FALSE(archRunsOn("sm_", 90));
  EXPECT_FALSE(archRunsOn("compute_90", 90));
  EXPECT_FALSE(archRunsOn("sm_90ab", 90));
}

//===----------------------------------------------------------------------===//
// No driver
//===----------------------------------------------------------------------===//

TEST(CudaNoDriver, ClearErrorsEverywhere) {
  std::string lib = env("ATTNC_LIBCUDA");
  struct stat st;
  if (lib.empty() || stat(lib.c_str(), &st) == 0)
    GTEST_SKIP() << "needs ATTNC_LIBCUDA naming a missing library (as ctest runs it)";
  std::string why;
  EXPECT_FALSE(cudaAvailable(&why));
  EXPECT_NE(why.find("cuda: cannot load the CUDA driver " + lib), std::string::npos) << why;
  EXPECT_NE(why.find("is the NVIDIA driver installed?"), std::string::npos) << why;
  // Metadata errors come first; then the driver's.
  expectError(CudaKernel::load(test::kPatternPtx, "nonsense").error(), "malformed kernel metadata");
  expectError(CudaKernel::load(test::kPatternPtx, test::kPatternMeta).error(),
              "cannot load the CUDA driver");
  expectError(deviceArch(0).error(), "cannot load the CUDA driver");
  expectError(cudaDeviceCount().error(), "cannot load the CUDA driver");
  expectError(CudaBuffer::allocate(0, 16).error(), "cannot load the CUDA driver");
  expectError(CudaHostBuffer::allocate(0, 16).error(), "cannot load the CUDA driver");
  expectError(cudaSynchronize(0), "cannot load the CUDA driver");
  char err[32];
  EXPECT_EQ(attnc_cuda_available(err, sizeof(err)), 0);
  EXPECT_EQ(std::strlen(err), sizeof(err) - 1) << "truncated to the buffer";
  EXPECT_EQ(attnc_cuda_kernel_load(test::kPatternPtx, std::strlen(test::kPatternPtx),
                                   test::kPatternMeta, err, sizeof(err)),
            nullptr);
  EXPECT_EQ(std::string(err), why.substr(0, sizeof(err) - 1));
}

//===----------------------------------------------------------------------===//
// Fake driver
//===----------------------------------------------------------------------===//

class CudaFake : public ::testing::Test {
protected:
  void SetUp() override {
    REQUIRE_FAKE_DRIVER();
    std::string why;
    ASSERT_TRUE(cudaAvailable(&why)) << why;
    auto k = loadPattern();
    ASSERT_TRUE(bool(k)) << k.message();
    kernel = *k;
  }
  /// `a` is rejected with `substring`, before any driver launch or memset.
  void expectRejected(const LaunchArgs &a, const std::string &substring) {
    int launches = fake.launches(), memsets = fake.memsets();
    expectError(kernel->launch(a), substring);
    EXPECT_EQ(fake.launches(), launches);
    EXPECT_EQ(fake.memsets(), memsets);
  }
  FakeHooks fake;
  std::shared_ptr<CudaKernel> kernel;
};

TEST_F(CudaFake, LaunchPacksTheAbi) {
  PatternProblem p;
  int before = fake.launches();
  void *stream = reinterpret_cast<void *>(uintptr_t(0x5000));
  ASSERT_TRUE(kernel->launch(p.args(), stream));
  ASSERT_EQ(fake.launches(), before + 1);
  attnc_fake_launch l = fake.last();
  p.expectRecorded(l);
  EXPECT_EQ(l.stream, stream);
  EXPECT_EQ(l.sharedBytes, 0u);
  // Without LSE: a null pointer, zero strides, write_lse = 0.
  auto a = p.args();
  a.lse = nullptr;
  ASSERT_TRUE(kernel->launch(a));
  l = fake.last();
  EXPECT_EQ(l.values[4], 0u);
  EXPECT_EQ(l.values[23], 0u);
  EXPECT_EQ(l.values[24], 0u);
  EXPECT_EQ(l.values[25], 0u);
  // Scalars take their defaults (scale = 2) and their types' sizes.
  a = p.args();
  a.params.erase("scale");
  ASSERT_TRUE(kernel->launch(a));
  l = fake.last();
  float two = 2;
  uint32_t bits;
  std::memcpy(&bits, &two, 4);
  EXPECT_EQ(l.values[28], bits);
  EXPECT_EQ(l.sizes[28], 4u);
  EXPECT_EQ(l.sizes[29], 8u);
}

TEST_F(CudaFake, CApiLaunchesTheSame) {
  char err[256] = "";
  void *k = attnc_cuda_kernel_load(test::kPatternPtx, std::strlen(test::kPatternPtx) + 1,
                                   test::kPatternMeta, err, sizeof(err));
  ASSERT_TRUE(k) << err;
  attnc_kernel_info info;
  ASSERT_EQ(0, attnc_cuda_kernel_info(k, &info));
  EXPECT_STREQ(info.name, "pattern");
  EXPECT_STREQ(info.entry, "attnc_test_pattern");
  EXPECT_STREQ(info.dtype, "f16");
  EXPECT_EQ(info.block_q, 4);
  EXPECT_EQ(info.threads, 32);
  EXPECT_EQ(info.num_params, 4);
  const char *name, *type;
  int32_t isTensor;
  ASSERT_EQ(0, attnc_cuda_kernel_param(k, 3, &name, &isTensor, &type));
  EXPECT_STREQ(name, "echo");
  EXPECT_EQ(isTensor, 1);
  EXPECT_STREQ(type, "i64");
  EXPECT_NE(0, attnc_cuda_kernel_param(k, 4, &name, &isTensor, &type));
  EXPECT_EQ(attnc_c_api_version(), ATTNC_C_API_VERSION);
  EXPECT_EQ(attnc_c_struct_size(2), sizeof(attnc_launch_desc));
  EXPECT_EQ(attnc_c_struct_size(9), 0u);

  PatternProblem p;
  ASSERT_EQ(0, p.launchC(k, err, sizeof(err))) << err;
  p.expectRecorded(fake.last());
  // Errors come back as text, truncated to the buffer.
  attnc_launch_desc bad{};
  bad.q.rank = 9;
  EXPECT_NE(0, attnc_cuda_launch(k, &bad, err, sizeof(err)));
  EXPECT_STREQ(err, "q: rank 9 is outside [0, 8]");
  bad.q.rank = 4;
  bad.q.dtype = 42;
  EXPECT_NE(0, attnc_cuda_launch(k, &bad, err, 12));
  EXPECT_STREQ(err, "q: unknown ");
  EXPECT_NE(0, attnc_cuda_launch(nullptr, &bad, err, sizeof(err)));
  EXPECT_STREQ(err, "attnc_cuda_launch: kernel or desc is null");
  attnc_cuda_kernel_free(k);
  attnc_cuda_kernel_free(nullptr);
}

TEST_F(CudaFake, ValidationRunsBeforeTheDriver) {
  PatternProblem p;
  auto a = p.args();
  p.q.t.device = {kDLCPU, 0};
  expectRejected(a, "q: device type 1 is not kDLCUDA (the CUDA kernel reads device memory)");
  p.q.t.device = {kDLCUDA, 0};
  DevTensor o32({2, 4, 10, 8}, kF32);
  a.o = &o32;
  expectRejected(a, "o: expected dtype f16, got float32");
  a = p.args();
  p.k.t.device.device_id = 1;
  expectRejected(a, "k: on device 1, but q is on device 0");
  p.k.t.device.device_id = 0;
  std::vector<int64_t> columnMajor = {8 * 7 * 2, 8 * 7, 1, 7};
  p.v.t.strides = columnMajor.data();
  expectRejected(a, "v: unsupported strides; the innermost dimension must be contiguous");
  p.v.t.strides = p.v.strides.data();
  DevTensor lse({2, 4, 9}, kF32);
  a.lse = &lse;
  expectRejected(a, "lse: expected shape [2,4,10]");
  a = p.args();
  DevTensor bias({3}, kF32);
  a.params["bias"] = Arg::ofTensor(&bias);
  expectRejected(a, "parameter 'bias': dimension 0 is 3, expected Hq = 4");
  a = p.args();
  a.params["shift"] = Arg::ofScalar(0.5);
  expectRejected(a, "parameter 'shift' is i64, got 0.5");
  a.params["shift"] = Arg::ofScalar(1e19);
  expectRejected(a, "parameter 'shift' is out of the i64 range");
  a = p.args();
  a.params.erase("shift");
  expectRejected(a, "scalar parameter 'shift' is not bound and has no default");
  a = p.args();
  a.qOffset = std::numeric_limits<int32_t>::max();
  expectRejected(a, "q_offset + Nq overflows int32");
}

TEST_F(CudaFake, AlignmentAndSizeLimits) {
  // The default alignment (16 bytes) refuses rows and bases that are not.
  auto k16 = CudaKernel::load(test::kPatternPtx, withLine(test::kPatternMeta, "align", "align 16"));
  ASSERT_TRUE(bool(k16)) << k16.message();
  PatternProblem p;
  auto a = p.args();
  ASSERT_TRUE((*k16)->launch(a)) << "16-byte rows and a 160-byte offset are aligned";
  DevTensor q({2, 4, 10, 8}, kF16, {}, 1);
  a.q = &q;
  expectError((*k16)->launch(a), "q: data + byte_offset is not 16-byte aligned");
  DevTensor v({2, 2, 7, 8}, kF16, {192, 96, 12, 1});
  a = p.args();
  a.v = &v;
  expectError((*k16)->launch(a),
              "v: stride 12 of dim 2 is not a multiple of 16 bytes (kernel 'pattern' needs it)");
  ASSERT_TRUE(kernel->launch(a)) << "align 2 takes any row stride";
  // Heads and batches beyond the grid's limits.
  a = p.args();
  std::vector<int64_t> manyHeads = {2, 70000, 10, 8}, zero = {0, 0, 0, 1};
  DevTensor dummy({1}, kF16);
  DLTensor huge = p.q.t;
  huge.shape = manyHeads.data();
  huge.strides = zero.data();
  a.q = &huge;
  DLTensor hugeO = huge;
  a.o = &hugeO;
  a.lse = nullptr;
  a.params.erase("bias");
  DevTensor bias({70000}, kF32);
  a.params["bias"] = Arg::ofTensor(&bias);
  expectRejected(a, "exceeds the launch limits (Hq and B at most 65535)");
}

TEST_F(CudaFake, PointerChecks) {
  PatternProblem p;
  auto a = p.args();
  // Never freed: the fake driver keeps the registration below.
  static std::vector<uint16_t> host(2 * 4 * 10 * 8);
  DLTensor q = p.q.t;
  q.data = host.data();
  q.byte_offset = 0;
  std::vector<int64_t> dense = {320, 80, 8, 1};
  q.strides = dense.data();
  a.q = &q;
  expectRejected(a, "q: is not memory the CUDA driver knows");
  fake.registerHost(host.data(), host.size() * 2);
  expectRejected(a, "q: points to host memory; the CUDA kernel needs device memory");
  // Memory of device 1 in a tensor that says device 0.
  DevTensor echo1({40}, kI64, {}, 0, /*device=*/1);
  a = p.args();
  a.params["echo"] = Arg::ofTensor(&echo1);
  echo1.t.device.device_id = 0;
  expectRejected(a, "parameter 'echo': the memory is on device 1, but the tensor says device 0");
}

TEST_F(CudaFake, EmptyShapes) {
  PatternProblem p;
  int launches = fake.launches(), memsets = fake.memsets();
  // No queries: nothing to do, no driver call.
  DevTensor q0({2, 4, 0, 8}, kF16), o0({2, 4, 0, 8}, kF16), l0({2, 4, 0}, kF32);
  auto a = p.args();
  a.q = &q0, a.o = &o0, a.lse = &l0;
  ASSERT_TRUE(kernel->launch(a));
  EXPECT_EQ(fake.launches(), launches);
  EXPECT_EQ(fake.memsets(), memsets);
  // No keys: O = 0 and LSE = -inf through memsets, gaps untouched, no launch.
  DevTensor k0({2, 2, 0, 8}, kF16), v0({2, 2, 0, 8}, kF16);
  a = p.args();
  a.k = &k0, a.v = &v0;
  ASSERT_TRUE(kernel->launch(a));
  EXPECT_EQ(fake.launches(), launches);
  EXPECT_GT(fake.memsets(), memsets);
  p.expectFullyMasked();
}

TEST_F(CudaFake, SharedMemoryAttribute) {
  auto big = loadPattern(100000);
  ASSERT_TRUE(bool(big)) << big.message();
  EXPECT_EQ(fake.sharedAttribute(), 100000);
  PatternProblem p;
  ASSERT_TRUE((*big)->launch(p.args()));
  EXPECT_EQ(fake.last().sharedBytes, 100000u);
  expectError(loadPattern(300000).error(),
              "needs 300000 bytes of shared memory per block; device 0 allows 232448");
}

TEST_F(CudaFake, LoadErrors) {
  fake.setCapability(80);
  auto hopper =
      CudaKernel::load(test::kPatternPtx, withLine(test::kPatternMeta, "arch", "arch sm_90a"));
  fake.setCapability(90);
  expectError(hopper.error(), "cuda: kernel 'pattern' was compiled for sm_90a, but device 0 is "
                              "sm_80 (compute capability 8.0)");
  auto bad = CudaKernel::load("// FAKE_BAD_PTX\n", test::kPatternMeta);
  expectError(bad.error(), "cuda: cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX");
  expectError(bad.error(), "fake syntax error");
  auto noEntry = CudaKernel::load(test::kPatternPtx,
                                  withLine(test::kPatternMeta, "entry", "entry attnc_test"));
  expectError(noEntry.error(), "no entry 'attnc_test' in the image of kernel 'pattern'");
  expectError(CudaKernel::load("", test::kPatternMeta).error(), "image is empty");
}

TEST_F(CudaFake, ModulePerContextAndCallerContextKept) {
  int loads = fake.moduleLoads(), unloads = fake.moduleUnloads();
  {
    auto k = loadPattern();
    ASSERT_TRUE(bool(k));
    EXPECT_EQ(fake.moduleLoads(), loads + 1);
    // Tensors on device 1: the module is loaded in device 1's context, once.
    PatternProblem p1(1);
    EXPECT_EQ(fake.currentContext(), nullptr);
    ASSERT_TRUE((*k)->launch(p1.args()));
    ASSERT_TRUE((*k)->launch(p1.args()));
    EXPECT_EQ(fake.moduleLoads(), loads + 2);
    EXPECT_EQ(fake.currentContext(), nullptr) << "the caller's (no) context is restored";
    // A caller's current context on the tensors' device is used as is.
    void *ctx1 = fake.primaryContext(1);
    fake.setCurrentContext(ctx1);
    ASSERT_TRUE((*k)->launch(p1.args()));
    EXPECT_EQ(fake.currentContext(), ctx1);
    EXPECT_EQ(fake.moduleLoads(), loads + 2);
    // and another device's is put back after the launch.
    PatternProblem p0(0);
    ASSERT_TRUE((*k)->launch(p0.args()));
    EXPECT_EQ(fake.currentContext(), ctx1);
    fake.setCurrentContext(nullptr);
  }
  EXPECT_EQ(fake.moduleUnloads(), unloads + 2) << "the kernel unloads its modules";
}

TEST_F(CudaFake, ConcurrentLaunches) {
  PatternProblem p;
  int before = fake.launches();
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i)
        ok[t] += bool(kernel->launch(p.args()));
    });
  for (auto &t : threads)
    t.join();
  for (int n : ok)
    EXPECT_EQ(n, 25);
  EXPECT_EQ(fake.launches(), before + 100);
}

TEST_F(CudaFake, BuffersAndTimers) {
  auto b = CudaBuffer::allocate(0, 12);
  ASSERT_TRUE(bool(b)) << b.message();
  ASSERT_TRUE(b->fill32(0x01020304));
  uint32_t words[3];
  ASSERT_TRUE(b->download(words, 12));
  EXPECT_EQ(words[2], 0x01020304u);
  expectError(b->download(words, 8, 8), "download of 8 bytes at offset 8 outside a buffer of 12");
  // Page-locked host memory takes downloads, and moves own it once.
  auto pinned = CudaHostBuffer::allocate(0, 12);
  ASSERT_TRUE(bool(pinned)) << pinned.message();
  CudaHostBuffer moved = std::move(*pinned);
  EXPECT_EQ(pinned->data(), nullptr);
  ASSERT_EQ(moved.size(), 12u);
  ASSERT_TRUE(b->download(moved.data(), 12));
  EXPECT_EQ(static_cast<const uint32_t *>(moved.data())[1], 0x01020304u);
  auto odd = CudaBuffer::allocate(0, 6);
  ASSERT_TRUE(bool(odd));
  expectError(odd->fill32(0), "fill32 of a buffer of 6 bytes");
  auto t = CudaTimer::create(0);
  ASSERT_TRUE(bool(t)) << t.message();
  ASSERT_TRUE(t->start());
  ASSERT_TRUE(t->stop());
  auto ms = t->elapsedMs();
  ASSERT_TRUE(bool(ms));
  EXPECT_GE(*ms, 0.f);
  EXPECT_EQ(*deviceArch(0), "sm_90a");
  EXPECT_EQ(*deviceName(1), "attnc fake device 1");
  EXPECT_EQ(*cudaDeviceCount(), 2);
  expectError(deviceArch(2).error(), "cuda: device 2 does not exist (2 devices)");
}

//===----------------------------------------------------------------------===//
// A real GPU
//===----------------------------------------------------------------------===//

TEST(CudaDevice, PatternKernelSeesEveryArgument) {
  REQUIRE_GPU();
  auto k = loadPattern();
  ASSERT_TRUE(bool(k)) << k.message();
  PatternProblem p;
  ASSERT_TRUE((*k)->launch(p.args()));
  ASSERT_TRUE(cudaSynchronize(0));
  p.expectComputed();
}

TEST(CudaDevice, CApiAndLargeSharedMemory) {
  REQUIRE_GPU();
  // Above 48 KiB the launch needs the function attribute the runtime sets.
  std::string meta = withLine(test::kPatternMeta, "shared_bytes", "shared_bytes 100000");
  char err[1024] = "";
  void *k = attnc_cuda_kernel_load(test::kPatternPtx, std::strlen(test::kPatternPtx), meta.c_str(),
                                   err, sizeof(err));
  ASSERT_TRUE(k) << err;
  PatternProblem p;
  ASSERT_EQ(0, p.launchC(k, err, sizeof(err))) << err;
  ASSERT_TRUE(cudaSynchronize(0));
  p.expectComputed();
  attnc_cuda_kernel_free(k);
}

TEST(CudaDevice, EmptyKeysWriteZerosAndMinusInfinity) {
  REQUIRE_GPU();
  auto k = loadPattern();
  ASSERT_TRUE(bool(k)) << k.message();
  PatternProblem p;
  DevTensor k0({2, 2, 0, 8}, kF16), v0({2, 2, 0, 8}, kF16);
  auto a = p.args();
  a.k = &k0, a.v = &v0;
  ASSERT_TRUE((*k)->launch(a));
  ASSERT_TRUE(cudaSynchronize(0));
  p.expectFullyMasked();
  auto es = p.echo.download<uint64_t>();
  EXPECT_EQ(es[0], ~uint64_t(0)) << "no kernel ran";
}

TEST(CudaDevice, DriverErrorsAreClear) {
  REQUIRE_GPU();
  std::string ptx = test::kPatternPtx;
  ptx.replace(ptx.find("ret;"), 4, "frobnicate;");
  expectError(CudaKernel::load(ptx, test::kPatternMeta).error(),
              "cuda: cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX");
  auto arch = deviceArch(0);
  ASSERT_TRUE(bool(arch)) << arch.message();
  EXPECT_EQ(arch->rfind("sm_", 0), 0u);
  auto name = deviceName(0);
  ASSERT_TRUE(bool(name));
  EXPECT_FALSE(name->empty());
  // A query past the last device.
  auto count = cudaDeviceCount();
  ASSERT_TRUE(bool(count));
  expectError(deviceArch(*count).error(), "does not exist");
}

TEST(CudaDevice, TimerMeasuresLaunches) {
  REQUIRE_GPU();
  auto k = loadPattern();
  ASSERT_TRUE(bool(k)) << k.message();
  PatternProblem p;
  auto t = CudaTimer::create(0);
  ASSERT_TRUE(bool(t)) << t.message();
  ASSERT_TRUE(t->start());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE((*k)->launch(p.args()));
  ASSERT_TRUE(t->stop());
  auto ms = t->elapsedMs();
  ASSERT_TRUE(bool(ms)) << ms.message();
  EXPECT_GT(*ms, 0.f);
  EXPECT_LT(*ms, 1000.f);
}

} // namespace
