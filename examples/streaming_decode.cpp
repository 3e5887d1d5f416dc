//===- streaming_decode.cpp - StreamingLLM decode over a paged KV cache ---===//
//
//   streaming_decode [TOKENS]   (default 524288)
//
// Compiles lib/streaming.attn's `streaming_llm` (mask: 4 sink tokens + a
// window of 1020; cache `streaming_kv`: 16-token pages, sink(4) +
// window(1020), bf16) for the KV cache, then streams one long synthetic
// sequence through an attnc::rt::KvCache: the prompt arrives in chunks of
// 1024 tokens (positions the window has left are dropped as they arrive),
// and at 8k, 64k, ... TOKENS positions it runs 32 decode steps (append one
// token, attend with one query), timing them and checking one against a
// float64 attention over exactly the retained positions. Pages in use stay
// constant however long the sequence grows. Exit status 0 on success.
//
//===----------------------------------------------------------------------===//

#include "CacheKernel.h"

#include "attnc/JIT.h"
#include "attnc/Runtime/Half.h"
#include "attnc/Runtime/KvCache.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

using namespace attnc;

namespace {
const int64_t D = 64, Hq = 8, Hkv = 2;

std::vector<uint16_t> randomBf16(size_t n, std::mt19937 &rng) {
  std::normal_distribution<float> normal;
  std::vector<uint16_t> v(n);
  for (auto &x : v)
    x = rt::floatToBf16(normal(rng));
  return v;
}
} // namespace

int main(int argc, char **argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 524288;
  auto compiler = Compiler::create();
  std::shared_ptr<rt::CpuKernel> kernel =
      cacheKernel(*compiler, "streaming.attn", "streaming_llm", D);
  if (!kernel)
    return 1;
  const rt::CachePolicyInfo &policy = *kernel->info().cache;
  rt::KvCacheOptions o;
  o.policy = policy;
  o.numKvHeads = Hkv;
  o.headDim = D;
  o.numPages = 2 * 128; // per KV head 2048 slots: sink + window + one chunk
  std::unique_ptr<rt::KvCache> cache = makeCache(o);
  if (!cache)
    return 1;
  rt::KvCache &c = *cache;
  int64_t seq = *c.addSequence();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("policy %s: %s, page %lld, sink %lld + window %lld, %s; %lld bytes/token/head\n",
              policy.name.c_str(), policy.layout.c_str(), (long long)policy.pageSize,
              (long long)policy.sink, (long long)policy.window, policy.storage.c_str(),
              (long long)c.bytesPerTokenPerHead());

  std::mt19937 rng(1);
  const int64_t chunk = 1024;
  // Synthetic K/V: one random chunk reused; the last chunk and every decode
  // token get fresh values and are remembered for the reference check.
  std::vector<uint16_t> kChunk = randomBf16(Hkv * chunk * D, rng), vChunk = kChunk;
  std::vector<int64_t> chunkShape = {Hkv, chunk, D}, oneShape = {Hkv, 1, D};
  DLTensor kc = hostView(kChunk.data(), {kDLBfloat, 16, 1}, chunkShape),
           vc = hostView(vChunk.data(), {kDLBfloat, 16, 1}, chunkShape);
  // Values by logical position for the reference (only what is retained).
  std::vector<std::vector<uint16_t>> kAt, vAt;
  auto remember = [&](int64_t pos, const uint16_t *k, const uint16_t *v, int64_t n, int64_t t) {
    if (int64_t(kAt.size()) <= pos) {
      kAt.resize(pos + 1);
      vAt.resize(pos + 1);
    }
    kAt[pos].assign(Hkv * D, 0);
    vAt[pos].assign(Hkv * D, 0);
    for (int64_t h = 0; h < Hkv; ++h)
      for (int64_t d = 0; d < D; ++d) {
        kAt[pos][h * D + d] = k[(h * n + t) * D + d];
        vAt[pos][h * D + d] = v[(h * n + t) * D + d];
      }
  };

  std::vector<int64_t> qShape = {1, Hq, 1, D}, oShape = {1, Hq, 1, D};
  std::vector<uint16_t> q(Hq * D);
  std::vector<float> out(Hq * D);
  DLTensor qt = hostView(q.data(), {kDLBfloat, 16, 1}, qShape),
           ot = hostView(out.data(), {kDLFloat, 32, 1}, oShape);
  int64_t pagesSeen = -1;
  bool constant = true, ok = true;
  for (int64_t checkpoint = 8192; checkpoint <= tokens; checkpoint *= 8) {
    const int64_t end = c.length(seq) + (checkpoint - c.length(seq)) / chunk * chunk;
    while (c.length(seq) < end) {
      int64_t at = c.length(seq);
      for (int64_t t = 0; t < chunk; ++t)
        if (at + t < policy.sink || at + t >= end - policy.window)
          remember(at + t, kChunk.data(), vChunk.data(), chunk, t);
      if (auto s = c.append(seq, &kc, &vc); !s) {
        std::fprintf(stderr, "%s\n", s.message().c_str());
        return 1;
      }
    }
    double total = 0, worst = 0;
    const int steps = 32;
    for (int step = 0; step < steps; ++step) {
      std::vector<uint16_t> kn = randomBf16(Hkv * D, rng), vn = randomBf16(Hkv * D, rng);
      std::vector<uint16_t> qn = randomBf16(Hq * D, rng);
      std::copy(qn.begin(), qn.end(), q.begin()); // qt views q's buffer
      DLTensor kt = hostView(kn.data(), {kDLBfloat, 16, 1}, oneShape),
               vt = hostView(vn.data(), {kDLBfloat, 16, 1}, oneShape);
      int64_t pos = c.length(seq);
      remember(pos, kn.data(), vn.data(), 1, 0);
      auto t0 = std::chrono::steady_clock::now();
      if (auto s = c.append(seq, &kt, &vt); !s) {
        std::fprintf(stderr, "%s\n", s.message().c_str());
        return 1;
      }
      rt::CacheLaunchArgs a;
      a.q = &qt, a.o = &ot, a.cache = &c, a.sequences = {seq};
      a.numThreads = 1;
      if (auto s = kernel->launch(a); !s) {
        std::fprintf(stderr, "%s\n", s.message().c_str());
        return 1;
      }
      total +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (step + 1 != steps)
        continue;
      // float64 attention over the retained positions (the mask keeps all
      // of them for the newest query).
      std::vector<int32_t> kept = c.retainedPositions(seq);
      for (int64_t h = 0; h < Hq; ++h) {
        int64_t kh = h / (Hq / Hkv);
        worst = std::max(worst, rowError(
                                    &out[h * D], &q[h * D], D, kept,
                                    [&](int32_t p) { return &kAt[p][kh * D]; },
                                    [&](int32_t p) { return &vAt[p][kh * D]; }));
      }
    }
    int64_t kept = int64_t(c.retainedPositions(seq).size());
    if (pagesSeen >= 0 && c.pagesInUse() != pagesSeen)
      constant = false;
    pagesSeen = c.pagesInUse();
    ok &= worst < 1e-2 && kept == policy.sink + policy.window;
    std::printf("position %8lld: %lld retained, %lld pages (%lld KiB), decode %.3f ms/step, "
                "rel. error %.1e\n",
                (long long)c.length(seq), (long long)kept, (long long)c.pagesInUse(),
                (long long)(c.bytesInUse() / 1024), total / steps, worst);
  }
  std::printf("constant memory: %s\n", constant ? "yes" : "no");
  return ok && constant ? 0 : 1;
}
