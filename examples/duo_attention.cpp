//===- duo_attention.cpp - DuoAttention-style mixed-head KV cache ---------===//
//
//   duo_attention [TOKENS]   (default 16384)
//
// lib/cache_policies.attn's `duo_attention` reads `duo_kv = per_head(full_kv,
// streaming_kv) by head_kind`: retrieval heads keep every token, streaming
// heads keep 4 sink tokens and the last 1020. Here KV head 0 retrieves and
// heads 1-3 stream (head_kind = {0, 1, 1, 1}, a runtime table). The
// sequence grows to TOKENS positions; the program prints each head's pages,
// the cache's bytes against a full cache for every head, and checks the
// last decode step against float64 attention over each head's retained
// positions. Exit status 0 on success.
//
//===----------------------------------------------------------------------===//

#include "CacheKernel.h"

#include "attnc/JIT.h"
#include "attnc/Runtime/Half.h"
#include "attnc/Runtime/KvCache.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

using namespace attnc;

int main(int argc, char **argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 16384;
  const int64_t D = 64, Hq = 8, Hkv = 4, G = Hq / Hkv;
  auto compiler = Compiler::create();
  std::shared_ptr<rt::CpuKernel> kernel =
      cacheKernel(*compiler, "cache_policies.attn", "duo_attention", D);
  if (!kernel)
    return 1;
  rt::KvCacheOptions o;
  o.policy = *kernel->info().cache;
  o.numKvHeads = Hkv;
  o.headDim = D;
  o.headKinds = {0, 1, 1, 1};
  o.numPages = (tokens / 16 + 2) + 3 * 66;
  std::unique_ptr<rt::KvCache> cache = makeCache(o);
  if (!cache)
    return 1;
  rt::KvCache &c = *cache;
  int64_t seq = *c.addSequence();

  // Every token's K/V (bf16) kept here for the reference check.
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<uint16_t> kAll(Hkv * tokens * D), vAll(Hkv * tokens * D);
  for (auto *v : {&kAll, &vAll})
    for (auto &x : *v)
      x = rt::floatToBf16(normal(rng));
  std::vector<uint16_t> kc, vc;
  std::vector<int64_t> shape = {Hkv, 0, D};
  for (int64_t at = 0; at < tokens;) {
    int64_t n = at < tokens - 16 ? std::min<int64_t>(1024, tokens - 16 - at) : 1; // then decode
    kc.resize(Hkv * n * D);
    vc.resize(Hkv * n * D);
    for (int64_t h = 0; h < Hkv; ++h)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < D; ++d) {
          kc[(h * n + t) * D + d] = kAll[(h * tokens + at + t) * D + d];
          vc[(h * n + t) * D + d] = vAll[(h * tokens + at + t) * D + d];
        }
    shape[1] = n;
    DLTensor kt = hostView(kc.data(), {kDLBfloat, 16, 1}, shape),
             vt = hostView(vc.data(), {kDLBfloat, 16, 1}, shape);
    if (auto s = c.append(seq, &kt, &vt); !s) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return 1;
    }
    at += n;
  }

  // One decode query per query head at the last position.
  std::vector<uint16_t> q(Hq * D);
  for (auto &x : q)
    x = rt::floatToBf16(normal(rng));
  std::vector<float> out(Hq * D);
  std::vector<int64_t> qShape = {1, Hq, 1, D};
  DLTensor qt = hostView(q.data(), {kDLBfloat, 16, 1}, qShape),
           ot = hostView(out.data(), {kDLFloat, 32, 1}, qShape);
  rt::CacheLaunchArgs a;
  a.q = &qt, a.o = &ot, a.cache = &c, a.sequences = {seq};
  if (auto s = kernel->launch(a); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  double worst = 0;
  for (int64_t h = 0; h < Hq; ++h) {
    int64_t kh = h / G;
    worst = std::max(worst, rowError(
                                &out[h * D], &q[h * D], D, c.retainedPositions(seq, kh),
                                [&](int32_t p) { return &kAll[(kh * tokens + p) * D]; },
                                [&](int32_t p) { return &vAll[(kh * tokens + p) * D]; }));
  }
  for (int64_t h = 0; h < Hkv; ++h)
    std::printf("KV head %lld (%s): %zu positions retained, %lld pages\n", (long long)h,
                c.headPolicy(h).name.c_str(), c.retainedPositions(seq, h).size(),
                (long long)c.pagesOf(seq, h));
  int64_t full = Hkv * ((tokens + 15) / 16) * 16 * c.bytesPerTokenPerHead();
  std::printf("cache %lld KiB, a full cache for every head %lld KiB (%.2fx); decode rel. error "
              "%.1e\n",
              (long long)(c.bytesInUse() / 1024), (long long)(full / 1024),
              double(full) / double(c.bytesInUse()), worst);
  return worst < 1e-2 ? 0 : 1;
}
