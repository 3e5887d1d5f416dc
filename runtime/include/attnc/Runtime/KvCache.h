//===- KvCache.h - KV caches for attention over cache policies --*- C++ -*-===//
//
// A KV cache per cache policy (DESIGN.md "Cache policies"): a pool of pages
// of P token slots (each slot: K and V of every KV head), per-sequence page
// tables, and the logical position each slot holds. Retention decides which
// positions stay: `all`, or `sink(S) + window(W)` (StreamingLLM), where a
// page whose slots all fell out of the window goes back to the pool, so a
// streaming sequence holds at most ceil(S/P) + ceil(W/P) + 1 pages whatever
// its length. Kernels compiled with `kvCache` (JIT KernelSpec::kvCache,
// attn-to-cpu kv-cache) read K/V through these tables and evaluate the mask
// at the logical positions (CpuKernel::launch(CacheLaunchArgs)).
//
// Errors are Status values; a failed append changes nothing (the pool is
// never silently overwritten).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_KVCACHE_H
#define ATTNC_RUNTIME_KVCACHE_H

#include "attnc/Runtime/Runtime.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace attnc::rt {

struct KvCacheOptions {
  /// The policy (usually the kernel's: CpuKernel::info().cache).
  CachePolicyInfo policy;
  int64_t numKvHeads = 0, headDim = 0, headDimV = 0; // headDimV 0: headDim
  /// Pages in the pool. Paged layout: of policy.pageSize slots each;
  /// contiguous layout: one page of `maxTokens` slots per sequence.
  int64_t numPages = 0;
  int64_t maxTokens = 0; // contiguous layout only
  /// Element type of the K/V that append() takes: f32, bf16 or f16. Empty:
  /// the storage type (required for int8 storage, which append quantizes:
  /// one scale max|x| / 127 per token and head, or per group of the head
  /// dim, round to nearest).
  std::string inputDtype;
};

class KvCache {
public:
  static Expected<std::unique_ptr<KvCache>> create(const KvCacheOptions &options);

  /// A new empty sequence; its id.
  Expected<int64_t> addSequence();
  /// Returns the sequence's pages to the pool.
  Status removeSequence(int64_t seq);
  /// Appends the next n tokens of `seq`: k [Hkv, n, D] and v [Hkv, n, Dv],
  /// dense, on the host, of the input type (quantized on the way in for
  /// int8 storage). Positions the
  /// retention drops are released first (and tokens of the chunk it drops
  /// already are not stored); fails without changing anything when the
  /// pool has too few free pages.
  Status append(int64_t seq, const DLTensor *k, const DLTensor *v);

  /// Tokens appended so far (the next logical position).
  int64_t length(int64_t seq) const;
  /// The logical positions `seq` retains, ascending.
  std::vector<int32_t> retainedPositions(int64_t seq) const;
  /// The stored K and V of a retained position for one KV head, as the
  /// kernel reads them (dequantized), into k [D] and v [Dv].
  Status readToken(int64_t seq, int64_t position, int64_t head, float *k, float *v) const;

  const KvCacheOptions &options() const { return opts; }
  int64_t pageSize() const { return P; }
  int64_t freePages() const { return int64_t(freeList.size()); }
  int64_t pagesInUse() const { return opts.numPages - freePages(); }
  /// Bytes one token takes per KV head (K and V).
  int64_t bytesPerTokenPerHead() const;
  /// Bytes of the pages in use (all heads).
  int64_t bytesInUse() const;

  /// What a kernel reads for one sequence.
  struct SequenceView {
    const std::vector<int32_t> *pages; // page of slot s: pages[s / P]
    const std::vector<int32_t> *pos;   // logical position of slot s, -1 if dropped
    int64_t slots = 0, length = 0;
  };
  Expected<SequenceView> view(int64_t seq) const;
  /// Pools: K [numPages, Hkv, P, D], V [numPages, Hkv, P, Dv], row-major,
  /// of the storage type; int8: scales K [numPages, Hkv, P, groupsK] and V
  /// [numPages, Hkv, P, groupsV] (f32; one group per token and head unless
  /// per_group).
  const void *keyPool() const { return kPool.data(); }
  const void *valuePool() const { return vPool.data(); }
  const float *keyScales() const { return kScales.data(); }
  const float *valueScales() const { return vScales.data(); }
  bool quantized() const { return quant; }
  int64_t keyGroups() const { return gK; }
  int64_t valueGroups() const { return gV; }

private:
  KvCache() = default;
  struct Sequence {
    std::vector<int32_t> pages, pos;
    int64_t slots = 0, length = 0;
    bool live = false;
  };
  Expected<Sequence *> find(int64_t seq);
  bool retains(int64_t position, int64_t newLength) const;
  void compact(Sequence &s);

  void storeRow(const DLTensor *src, int64_t n, int64_t t, int64_t h, int64_t dim, int64_t groups,
                char *dst, float *scales) const;
  float loadElement(const char *src, const float *scales, int64_t d, int64_t dim,
                    int64_t groups) const;

  KvCacheOptions opts;
  int64_t P = 0, D = 0, Dv = 0, elemBytes = 0, inBytes = 0, gK = 1, gV = 1;
  bool quant = false;
  std::vector<char> kPool, vPool;
  std::vector<float> kScales, vScales;
  std::vector<int32_t> freeList;
  std::vector<Sequence> sequences;
};

} // namespace attnc::rt

#endif // ATTNC_RUNTIME_KVCACHE_H
