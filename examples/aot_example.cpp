//===- aot_example.cpp - run a precompiled kernel with the light runtime --===//
//
//   attnc lib/causal.attn --kernel=causal_attention --target=cpu --emit=obj \
//         --head-dim=64 -o causal.o       # also writes causal.h
//   cc -shared -o causal.so causal.o
//   aot_example ./causal.so causal_attention
//
// Links only AttncRuntime (no MLIR, no LLVM): the deployment path.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/Runtime.h"

#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: aot_example KERNEL.so KERNEL_NAME\n");
    return 2;
  }
  auto kernel = attnc::rt::CpuKernel::load(argv[1], argv[2]);
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.message().c_str());
    return 1;
  }
  const auto &info = (*kernel)->info();
  std::printf("loaded %s: dtype %s, D=%lld, Dv=%lld, %zu runtime params\n", info.name.c_str(),
              info.dtype.c_str(), (long long)info.headDim, (long long)info.headDimV,
              info.params.size());
  int64_t B = 1, H = 2, N = 33, D = info.headDim;
  std::vector<float> q(B * H * N * D), k(q.size()), v(q.size()), o(q.size()), lse(B * H * N);
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = std::sin(0.1f * i);
    k[i] = std::cos(0.07f * i);
    v[i] = float(i % 13) - 6.f;
  }
  int64_t shape[] = {B, H, N, D}, lshape[] = {B, H, N};
  auto view = [](void *data, int ndim, int64_t *shape) {
    DLTensor t{};
    t.data = data;
    t.device = {kDLCPU, 0};
    t.ndim = ndim;
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape;
    return t;
  };
  DLTensor tq = view(q.data(), 4, shape), tk = view(k.data(), 4, shape),
           tv = view(v.data(), 4, shape), to = view(o.data(), 4, shape),
           tl = view(lse.data(), 3, lshape);
  attnc::rt::LaunchArgs args;
  args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.lse = &tl;
  if (auto s = (*kernel)->launch(args); !s) {
    std::fprintf(stderr, "launch: %s\n", s.message().c_str());
    return 1;
  }
  for (float x : o)
    if (!std::isfinite(x))
      return 1;
  // causal: query 0 sees key 0 only, so O[0] = V[0].
  for (int64_t d = 0; d < D; ++d)
    if (std::abs(o[d] - v[d]) > 1e-5f) {
      std::fprintf(stderr, "O[0][%lld] = %g, expected %g\n", (long long)d, o[d], v[d]);
      return 1;
    }
  std::printf("ok\n");
  return 0;
}
