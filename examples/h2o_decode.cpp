//===- h2o_decode.cpp - H2O decode over a budget KV cache ------------------===//
//
//   h2o_decode [TOKENS]   (default 32768)
//
// Compiles lib/cache_policies.attn's `h2o_attention` (causal; cache
// `h2o_kv`: 16-token pages, budget(2048, h2o), bf16) for the KV cache and
// runs one synthetic sequence through an attnc::rt::KvCache: a 1024-token
// prompt in chunks of 256 (each chunk's queries attend, so the kernel
// scores every slot with the attention mass it receives), then decode
// steps (append one token, attend with one query); the pools live in a
// CpuKvStore, written by the kernel's generated append / move functions.
// Every append first
// evicts down to the budget: the 1024 most recent positions stay, and of
// the older ones those with the most accumulated attention (the heavy
// hitters). At 4k, 8k, ... TOKENS it checks one decode step against a
// float64 attention over exactly the retained positions and prints how
// many heavy hitters older than the recent window the cache holds. Pages
// in use stay constant. Exit status 0 on success.
//
//===----------------------------------------------------------------------===//

#include "CacheKernel.h"

#include <chrono>
#include <cstdlib>
#include <random>

using namespace attnc;

namespace {
const int64_t D = 64, Hq = 8, Hkv = 2;
} // namespace

int main(int argc, char **argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 32768;
  auto compiler = Compiler::create();
  std::shared_ptr<rt::CpuKernel> kernel =
      cacheKernel(*compiler, "cache_policies.attn", "h2o_attention", D);
  if (!kernel)
    return 1;
  const rt::CachePolicyInfo &policy = *kernel->info().cache;
  rt::KvCacheOptions o;
  o.policy = policy;
  o.numKvHeads = Hkv;
  o.headDim = D;
  o.numPages = 2 * 160; // per KV head: the budget and a prompt chunk
  // The pools are written by the kernel's generated append / move
  // functions (compaction after evictions included), not by KvCache's C++
  // reference path.
  auto store = rt::CpuKvStore::create(kernel, o.numPages);
  if (!store) {
    std::fprintf(stderr, "%s\n", store.message().c_str());
    return 1;
  }
  o.store = *store;
  std::unique_ptr<rt::KvCache> cache = makeCache(o);
  if (!cache)
    return 1;
  rt::KvCache &c = *cache;
  int64_t seq = *c.addSequence();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("policy %s: %s, page %lld, budget %lld (%s, %lld recent), %s\n", policy.name.c_str(),
              policy.layout.c_str(), (long long)policy.pageSize, (long long)policy.budget,
              policy.evict.c_str(), (long long)policy.budget / 2, policy.storage.c_str());

  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  // K/V of every position (bf16, [pos][head][d]) for the reference.
  std::vector<uint16_t> kAll, vAll;
  auto append = [&](int64_t n) -> bool {
    std::vector<uint16_t> k(size_t(Hkv * n * D)), v(k.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = rt::floatToBf16(normal(rng));
      v[i] = rt::floatToBf16(normal(rng));
    }
    int64_t at = c.length(seq);
    kAll.resize(size_t((at + n) * Hkv * D));
    vAll.resize(kAll.size());
    for (int64_t h = 0; h < Hkv; ++h)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < D; ++d) {
          kAll[((at + t) * Hkv + h) * D + d] = k[(h * n + t) * D + d];
          vAll[((at + t) * Hkv + h) * D + d] = v[(h * n + t) * D + d];
        }
    std::vector<int64_t> shape = {Hkv, n, D};
    DLTensor kt = hostView(k.data(), {kDLBfloat, 16, 1}, shape),
             vt = hostView(v.data(), {kDLBfloat, 16, 1}, shape);
    if (auto s = c.append(seq, &kt, &vt); !s) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return false;
    }
    return true;
  };
  // The last n tokens attend (O discarded except for the check).
  std::vector<uint16_t> q;
  std::vector<float> out;
  auto attend = [&](int64_t n) -> bool {
    q.resize(size_t(Hq * n * D));
    out.resize(q.size());
    for (auto &x : q)
      x = rt::floatToBf16(normal(rng));
    std::vector<int64_t> shape = {1, Hq, n, D};
    DLTensor qt = hostView(q.data(), {kDLBfloat, 16, 1}, shape),
             ot = hostView(out.data(), {kDLFloat, 32, 1}, shape);
    rt::CacheLaunchArgs a;
    a.q = &qt, a.o = &ot, a.cache = &c, a.sequences = {seq};
    if (auto s = kernel->launch(a); !s) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return false;
    }
    return true;
  };

  for (int i = 0; i < 4; ++i)
    if (!append(256) || !attend(256))
      return 1;
  int64_t pagesSeen = -1;
  bool constant = true, ok = true;
  for (int64_t checkpoint = 4096; checkpoint <= tokens; checkpoint *= 2) {
    double total = 0;
    int steps = 0;
    while (c.length(seq) < checkpoint) {
      auto t0 = std::chrono::steady_clock::now();
      if (!append(1) || !attend(1))
        return 1;
      total +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      ++steps;
    }
    // The last step against float64 attention over the retained positions.
    double worst = 0;
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t kh = h / (Hq / Hkv);
      std::vector<int32_t> kept = c.retainedPositions(seq, kh);
      worst = std::max(worst, rowError(
                                  &out[h * D], &q[h * D], D, kept,
                                  [&](int32_t p) { return &kAll[(p * Hkv + kh) * D]; },
                                  [&](int32_t p) { return &vAll[(p * Hkv + kh) * D]; }));
    }
    std::vector<int32_t> kept = c.retainedPositions(seq, 0);
    const int64_t L = c.length(seq), recent = policy.budget / 2;
    int64_t heavy = 0;
    for (int32_t p : kept)
      heavy += p < L - 1 - recent;
    if (pagesSeen >= 0 && c.pagesInUse() != pagesSeen)
      constant = false;
    pagesSeen = c.pagesInUse();
    ok &= worst < 1e-2 && int64_t(kept.size()) == policy.budget + 1;
    std::printf("position %7lld: %lld retained (%lld heavy hitters older than the recent "
                "window, oldest %d), %lld pages (%lld KiB), decode %.3f ms/step, rel. error "
                "%.1e\n",
                (long long)L, (long long)kept.size(), (long long)heavy, kept.front(),
                (long long)c.pagesInUse(), (long long)(c.bytesInUse() / 1024),
                steps ? total / steps : 0.0, worst);
  }
  std::printf("constant memory: %s\n", constant ? "yes" : "no");
  return ok && constant ? 0 : 1;
}
