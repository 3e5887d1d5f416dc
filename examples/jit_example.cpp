//===- jit_example.cpp - JIT a lib/ kernel through the C++ API ------------===//
//
//   jit_example [FILE.attn KERNEL]   (default: lib/sliding_window.attn,
//                                     sliding_window_attention with W=8)
//
// Compiles the kernel through attnc::Compiler (memory + disk cache), runs it
// on DLPack views of plain std::vectors (no copies), and checks O and LSE
// against a naive float64 softmax attention. Exit status 0 on success.
//
//===----------------------------------------------------------------------===//

#include "attnc/JIT.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {
DLTensor view(void *data, DLDataType dtype, int ndim, int64_t *shape) {
  DLTensor t{};
  t.data = data;
  t.device = {kDLCPU, 0};
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = nullptr; // row-major
  return t;
}
} // namespace

int main(int argc, char **argv) {
  std::string file = argc > 2 ? argv[1] : ATTNC_LIB_DIR "/sliding_window.attn";
  std::string name = argc > 2 ? argv[2] : "sliding_window_attention";
  const int64_t W = 8;

  auto compiler = attnc::Compiler::create();
  if (auto s = compiler->loadSource(file); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  attnc::KernelSpec spec;
  spec.dtype = "f32";
  spec.headDim = 64;
  if (argc <= 2)
    spec.consts["W"] = std::to_string(W);
  auto kernel = compiler->getKernel(name, spec);
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.message().c_str());
    return 1;
  }
  auto st = compiler->stats();
  std::printf("kernel %s: %s in %.1f ms (cache %s)\n", name.c_str(), st.lastSource.c_str(),
              st.lastMs, compiler->cacheDir().c_str());

  const int64_t B = 2, H = 4, Nq = 37, Nk = 37, D = 64;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> q(B * H * Nq * D), k(B * H * Nk * D), v(B * H * Nk * D);
  for (auto *buf : {&q, &k, &v})
    for (auto &x : *buf)
      x = normal(rng);
  std::vector<float> o(B * H * Nq * D), lse(B * H * Nq);
  int64_t qs[] = {B, H, Nq, D}, ks[] = {B, H, Nk, D}, ls[] = {B, H, Nq};
  DLDataType f32{kDLFloat, 32, 1};
  DLTensor tq = view(q.data(), f32, 4, qs), tk = view(k.data(), f32, 4, ks),
           tv = view(v.data(), f32, 4, ks), to = view(o.data(), f32, 4, qs),
           tl = view(lse.data(), f32, 3, ls);
  attnc::rt::LaunchArgs args;
  args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.lse = &tl;
  if (auto s = (*kernel)->launch(args); !s) {
    std::fprintf(stderr, "launch: %s\n", s.message().c_str());
    return 1;
  }

  // Reference: causal sliding window (q - k < W), when run on the default.
  double maxErr = 0;
  if (argc <= 2) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Nq; ++i) {
          std::vector<double> s(Nk, -INFINITY);
          double m = -INFINITY;
          for (int64_t j = 0; j < Nk; ++j) {
            if (j > i || i - j >= W)
              continue;
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
              dot += double(q[((b * H + h) * Nq + i) * D + d]) * k[((b * H + h) * Nk + j) * D + d];
            s[j] = dot / std::sqrt(double(D));
            m = std::max(m, s[j]);
          }
          double sum = 0;
          for (double x : s)
            sum += std::isinf(x) ? 0 : std::exp(x - m);
          for (int64_t d = 0; d < D; ++d) {
            double acc = 0;
            for (int64_t j = 0; j < Nk; ++j)
              if (!std::isinf(s[j]))
                acc += std::exp(s[j] - m) / sum * v[((b * H + h) * Nk + j) * D + d];
            maxErr = std::max(maxErr, std::abs(acc - o[((b * H + h) * Nq + i) * D + d]));
          }
          maxErr = std::max(maxErr, std::abs(m + std::log(sum) - lse[(b * H + h) * Nq + i]));
        }
    std::printf("max abs error vs float64: %.3g\n", maxErr);
  }
  return maxErr < 1e-4 ? 0 : 1;
}
