//===- rt_bench.cpp - thread scaling of a CPU kernel (light runtime only) -===//
//
//   rt_bench KERNEL.so NAME B H N [THREADS...]
//
// Runs a parameterless kernel (e.g. causal_attention) on [B,H,N,D] inputs at
// each thread count, prints the best of 3 and checks that every thread count
// gives bitwise the same O as 1 thread.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/Runtime.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: rt_bench KERNEL.so NAME B H N [THREADS...]\n");
    return 2;
  }
  auto kernel = attnc::rt::CpuKernel::load(argv[1], argv[2]);
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.message().c_str());
    return 1;
  }
  int64_t B = std::atoll(argv[3]), H = std::atoll(argv[4]), N = std::atoll(argv[5]);
  int64_t D = (*kernel)->info().headDim;
  std::vector<int> threads;
  for (int i = 6; i < argc; ++i)
    threads.push_back(std::atoi(argv[i]));
  if (threads.empty())
    threads = {1, attnc::rt::defaultNumThreads()};
  std::vector<float> q(B * H * N * D), k(q.size()), v(q.size()), o(q.size()), ref;
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = std::sin(0.01f * i);
    k[i] = std::cos(0.013f * i);
    v[i] = std::sin(0.007f * i + 1);
  }
  int64_t shape[] = {B, H, N, D};
  auto view = [&](void *data) {
    DLTensor t{};
    t.data = data;
    t.device = {kDLCPU, 0};
    t.ndim = 4;
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape;
    return t;
  };
  DLTensor tq = view(q.data()), tk = view(k.data()), tv = view(v.data()), to = view(o.data());
  attnc::rt::LaunchArgs a;
  a.q = &tq, a.k = &tk, a.v = &tv, a.o = &to;
  std::printf("%s B=%lld H=%lld N=%lld D=%lld, pool %d threads\n", argv[2], (long long)B,
              (long long)H, (long long)N, (long long)D, attnc::rt::defaultNumThreads());
  double base = 0;
  bool deterministic = true;
  for (int t : threads) {
    a.numThreads = t;
    double best = 1e300;
    for (int r = 0; r < 3; ++r) {
      auto start = std::chrono::steady_clock::now();
      if (auto s = (*kernel)->launch(a); !s) {
        std::fprintf(stderr, "%s\n", s.message().c_str());
        return 1;
      }
      best = std::min(
          best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count());
    }
    if (ref.empty()) {
      ref = o;
      base = best;
    }
    bool same = std::memcmp(ref.data(), o.data(), o.size() * 4) == 0;
    deterministic &= same;
    std::printf("threads %3d: %9.3f ms  speedup %5.2fx  %s\n", t, best, base / best,
                same ? "bitwise equal" : "DIFFERENT");
  }
  return deterministic ? 0 : 1;
}
