//===- GpuCheckTest.cpp - attnc-gpu-check under the fake driver -----------===//
//
// Writes small bundles whose kernels the fake CUDA driver runs on the host
// (tests/runtime/FakeCuda.h: plain softmax attention, or nothing), with the
// reference computed here in double, and checks what attnc-gpu-check says:
// passing cases pass, and a wrong reference, unwritten outputs, a kernel
// that does not load and a malformed bundle are reported.
//
//===----------------------------------------------------------------------===//

#include "GpuCases.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

using namespace attnc;
using namespace attnc::gpucases;

namespace {

/// A PTX stand-in the fake driver understands: the ABI's 26 arguments.
std::string fakePtx(const std::string &entry, int D, int blockQ) {
  std::string s = "// fake-head-dim " + std::to_string(D) + "\n// fake-block-q " +
                  std::to_string(blockQ) + "\n.visible .entry " + entry + "(\n";
  for (int i = 0; i < 26; ++i)
    s += std::string("\t.param ") + (i < 5 || (i >= 11 && i < 25) ? ".u64" : ".u32") + " p" +
         std::to_string(i) + (i < 25 ? ",\n" : "\n");
  return s + ")\n{\n\tret;\n}\n";
}

std::string fakeMeta(const std::string &name, const std::string &entry, int D, int blockQ) {
  return "attnc-cuda-kernel 1\nkernel " + name + "\nentry " + entry +
         "\narch sm_90a\ndtype bf16\nhead_dim " + std::to_string(D) + "\nhead_dim_v " +
         std::to_string(D) + "\nblock_q " + std::to_string(blockQ) +
         "\nthreads 128\nshared_bytes 0\n";
}

/// Softmax attention in double, GQA grouped, no mask (what the fake runs).
void reference(const Case &c, int64_t D, std::vector<double> &O, std::vector<double> &L) {
  auto values = [&](Input which, int64_t n) {
    std::vector<double> out;
    for (uint16_t bits : randomInputs(c.seed, which, size_t(n), true))
      out.push_back(inputValue(bits, true));
    return out;
  };
  auto Q = values(Input::Q, c.B * c.Hq * c.Nq * D), K = values(Input::K, c.B * c.Hkv * c.Nk * D),
       V = values(Input::V, c.B * c.Hkv * c.Nk * D);
  O.assign(size_t(c.B * c.Hq * c.Nq * D), 0);
  L.assign(size_t(c.B * c.Hq * c.Nq), -INFINITY);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Nq; ++i) {
        int64_t kvh = h / (c.Hq / c.Hkv), row = (b * c.Hq + h) * c.Nq + i;
        std::vector<double> s(size_t(c.Nk));
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < c.Nk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += Q[size_t(row * D + d)] * K[size_t(((b * c.Hkv + kvh) * c.Nk + j) * D + d)];
          s[j] = dot / std::sqrt(double(D));
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j < c.Nk; ++j)
          sum += s[j] = std::exp(s[j] - mx);
        if (c.Nk == 0)
          continue;
        L[size_t(row)] = mx + std::log(sum);
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < c.Nk; ++j)
            acc += s[j] * V[size_t(((b * c.Hkv + kvh) * c.Nk + j) * D + d)];
          O[size_t(row * D + d)] = acc / sum;
        }
      }
}

class GpuCheck : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/attnc-gpu-check-XXXXXX";
    dir = mkdtemp(tmpl);
    ASSERT_EQ(0, std::system(("mkdir -p " + dir + "/kernels " + dir + "/data").c_str()));
    setenv("ATTNC_LIBCUDA", ATTNC_FAKE_CUDA, 1);
    manifest = std::string(kHeader) + "\n";
  }
  void TearDown() override { EXPECT_EQ(0, std::system(("rm -rf '" + dir + "'").c_str())); }

  /// A kernel whose PTX has `entry` and runs tiles of `blockQ` rows;
  /// `metaEntry` and `metaBlockQ` (default: the same) are what its metadata
  /// says.
  void addKernel(const std::string &id, const std::string &entry, int D, int blockQ,
                 int metaBlockQ = 0, const std::string &metaEntry = "") {
    std::string ptx = fakePtx(entry, D, blockQ),
                meta = fakeMeta(id, metaEntry.empty() ? entry : metaEntry, D,
                                metaBlockQ ? metaBlockQ : blockQ);
    ASSERT_TRUE(writeFile(dir + "/kernels/" + id + ".ptx", ptx.data(), ptx.size()));
    ASSERT_TRUE(writeFile(dir + "/kernels/" + id + ".meta", meta.data(), meta.size()));
    manifest += formatKernel({id, id, "bf16", D, D}) + "\n";
  }

  /// A case with the reference's O scaled by `scaleRef` (1: correct).
  void addCase(const std::string &name, const std::string &kernel, int64_t D, Case c,
               double scaleRef = 1) {
    c.name = name;
    c.kernel = kernel;
    std::vector<double> O, L;
    reference(c, D, O, L);
    std::vector<uint16_t> o;
    std::vector<float> l;
    for (int64_t bh = 0; bh < c.B * c.Hq; ++bh)
      for (int64_t row : c.checkedRows()) {
        l.push_back(float(L[size_t(bh * c.Nq + row)]));
        for (int64_t d = 0; d < D; ++d)
          o.push_back(rt::floatToF16(float(scaleRef * O[size_t((bh * c.Nq + row) * D + d)])));
      }
    c.oFile = "data/" + name + ".o";
    c.lseFile = "data/" + name + ".lse";
    ASSERT_TRUE(writeFile(dir + "/" + c.oFile, o.data(), o.size() * 2));
    ASSERT_TRUE(writeFile(dir + "/" + c.lseFile, l.data(), l.size() * 4));
    manifest += formatCase(c) + "\n";
  }

  /// Runs the check; returns its exit code and output.
  int check(std::string &out, const std::string &flags = "") {
    if (!writeFile(dir + "/cases.txt", manifest.data(), manifest.size()))
      return -1;
    FILE *p =
        popen((std::string(ATTNC_GPU_CHECK) + " " + dir + " " + flags + " 2>&1").c_str(), "r");
    if (!p)
      return -1;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;)
      out.append(buf, n);
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  static Case shape(int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq, int64_t Nk, uint64_t seed) {
    Case c;
    c.B = B, c.Hq = Hq, c.Hkv = Hkv, c.Nq = Nq, c.Nk = Nk, c.seed = seed;
    return c;
  }

  std::string dir, manifest;
};

bool hasLine(const std::string &out, const std::string &prefix, const std::string &text = "") {
  size_t pos = 0;
  while ((pos = out.find(prefix, pos)) != std::string::npos) {
    size_t end = out.find('\n', pos);
    if (out.substr(pos, end - pos).find(text) != std::string::npos)
      return true;
    pos = end;
  }
  return false;
}

TEST_F(GpuCheck, CorrectKernelsPass) {
  addKernel("full", "attnc_fake_attention_bf16", 16, 4);
  addCase("gqa", "full", 16, shape(2, 4, 2, 10, 7, 11));
  Case sampled = shape(1, 2, 1, 40, 33, 12);
  sampled.rows = {{0, 3}, {20, 21}, {37, 40}};
  addCase("sampled_rows", "full", 16, sampled);
  addCase("no_keys", "full", 16, shape(1, 2, 2, 5, 0, 13));
  addCase("one_row", "full", 16, shape(1, 1, 1, 1, 1, 14));
  std::string out;
  EXPECT_EQ(check(out), 0) << out;
  EXPECT_TRUE(hasLine(out, "PASS gqa", "o_err=")) << out;
  EXPECT_TRUE(hasLine(out, "PASS sampled_rows", "masked_rows=0/14")) << out;
  EXPECT_TRUE(hasLine(out, "PASS no_keys", "masked_rows=10/10")) << out;
  EXPECT_TRUE(hasLine(out, "PASS one_row")) << out;
  EXPECT_TRUE(hasLine(out, "4 passed, 0 failed")) << out;
  EXPECT_TRUE(hasLine(out, "device 0: attnc fake device 0 (sm_90a); 4 cases")) << out;
}

TEST_F(GpuCheck, FailuresAreReported) {
  addKernel("full", "attnc_fake_attention_bf16", 16, 4);
  addKernel("noop", "attnc_fake_noop", 16, 4);
  addKernel("short_grid", "attnc_fake_attention_bf16", 16, 2, 4);
  addKernel("missing", "attnc_fake_noop", 16, 4, 4, "attnc_not_in_the_ptx");
  addCase("good", "full", 16, shape(1, 2, 1, 9, 9, 21));
  addCase("wrong_reference", "full", 16, shape(1, 2, 1, 9, 9, 22), 1.1);
  addCase("unwritten", "noop", 16, shape(1, 2, 1, 9, 9, 23));
  addCase("rows_left_out", "short_grid", 16, shape(1, 2, 1, 9, 9, 24));
  addCase("not_loaded", "missing", 16, shape(1, 2, 1, 9, 9, 25));
  std::string out;
  EXPECT_EQ(check(out), 1) << out;
  EXPECT_TRUE(hasLine(out, "PASS good")) << out;
  EXPECT_TRUE(hasLine(out, "FAIL wrong_reference", "above tol=1.00e-02")) << out;
  EXPECT_TRUE(hasLine(out, "FAIL unwritten", "288 of 288 O and 18 of 18 LSE elements are NaN"))
      << out;
  // The fake runs the 2-row tiles the PTX says on a grid made for 4-row
  // tiles: half the rows stay NaN.
  EXPECT_TRUE(hasLine(out, "FAIL rows_left_out", "are NaN")) << out;
  EXPECT_TRUE(hasLine(out, "FAIL not_loaded", "no entry 'attnc_not_in_the_ptx'")) << out;
  EXPECT_TRUE(hasLine(out, "1 passed, 4 failed")) << out;
  // --filter runs the matching cases only.
  out.clear();
  EXPECT_EQ(check(out, "--filter good"), 0) << out;
  EXPECT_TRUE(hasLine(out, "1 passed, 0 failed")) << out;
}

TEST_F(GpuCheck, BadBundles) {
  std::string out;
  manifest = "attnc-gpu-cases 2\n";
  EXPECT_EQ(check(out), 2);
  EXPECT_TRUE(hasLine(out, "attnc-gpu-check: cases.txt:1: expected 'attnc-gpu-cases 1'")) << out;
  out.clear();
  manifest = std::string(kHeader) + "\ncase x kernel=nope o=a lse=b\n";
  EXPECT_EQ(check(out), 2);
  EXPECT_TRUE(hasLine(out, "cases.txt:2: case x: unknown kernel 'nope'")) << out;
  out.clear();
  manifest = std::string(kHeader) + "\n";
  addKernel("full", "attnc_fake_attention_bf16", 16, 4);
  addCase("short_file", "full", 16, shape(1, 1, 1, 3, 3, 31));
  ASSERT_TRUE(writeFile(dir + "/data/short_file.o", "xx", 2));
  EXPECT_EQ(check(out), 1);
  EXPECT_TRUE(hasLine(out, "FAIL short_file", "reference files hold 2 and 12 bytes")) << out;
}

TEST(GpuCases, ManifestRoundTripsAndInputsAreFixed) {
  Case c;
  c.name = "k.case";
  c.kernel = "k";
  c.B = 2, c.Hq = 4, c.Hkv = 1, c.Nq = 17, c.Nk = 200, c.qOffset = 100, c.seed = 77;
  c.tol = 0.01;
  c.rows = {{0, 8}, {16, 17}};
  c.oFile = "data/o", c.lseFile = "data/l";
  c.tensors = {{"doc", "data/doc", "i32", {217}}};
  c.scalars = {{"cap", 30.5}};
  Manifest m;
  std::string err;
  std::string text = std::string(kHeader) + "\n" + formatKernel({"k", "name", "f16", 64, 64}) +
                     "\n" + formatCase(c) + "\n";
  ASSERT_TRUE(parseManifest(text, m, err)) << err;
  ASSERT_EQ(m.cases.size(), 1u);
  EXPECT_EQ(formatCase(m.cases[0]), formatCase(c));
  EXPECT_EQ(m.cases[0].checkedRows().size(), 9u);
  EXPECT_EQ(m.kernels[0].dtype, "f16");
  // The inputs are part of the bundle format: these bits never change.
  auto q = randomInputs(77, Input::Q, 4, true);
  auto again = randomInputs(77, Input::Q, 4, true);
  EXPECT_EQ(q, again);
  EXPECT_NE(q, randomInputs(77, Input::K, 4, true));
  double sum = 0, sq = 0;
  auto many = randomInputs(5, Input::V, 100000, false);
  for (uint16_t h : many) {
    double x = inputValue(h, false);
    ASSERT_LE(std::fabs(x), 4.0);
    sum += x;
    sq += x * x;
  }
  EXPECT_NEAR(sum / 1e5, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sq / 1e5), 1.155, 0.02);
  EXPECT_FALSE(parseManifest(std::string(kHeader) + "\n" +
                                 formatKernel({"k", "name", "f16", 64, 64}) +
                                 "\ncase x kernel=k rows=5-2 o=a lse=b\n",
                             m, err));
  EXPECT_NE(err.find("rows range '5-2'"), std::string::npos) << err;
}

} // namespace
