//===- KvCache.h - KV caches for attention over cache policies --*- C++ -*-===//
//
// A KV cache per cache policy (DESIGN.md "Cache policies"): a pool of pages
// of P token slots, each page holding one KV head's K and V; per sequence
// and KV head a page table and the logical position each slot holds.
// Retention decides which positions stay: `all`, or `sink(S) + window(W)`
// (StreamingLLM), where a page whose slots all fell out of the window goes
// back to the pool, so a streaming head holds at most ceil(S/P) +
// ceil(W/P) + 1 pages whatever the sequence's length. `budget(N, h2o |
// snapkv)` keeps N slots per sequence and head: each slot carries an
// eviction score that launches of the cache's kernel update (H2O: the
// attention mass every query put on it, accumulated; SnapKV: the mass the
// last `observationWindow` queries of the latest launch put on it); an
// append first evicts down to N, keeping the `recentTokens` most recent
// positions and the others of highest score (ties: the later position),
// and compacts the head's slots so its pages stay ceil(N / P) plus what
// the new tokens take. A per-head policy
// (DuoAttention: `per_head(full, streaming) by head_kind`) gives each KV
// head one of its policies through a runtime table, so streaming heads
// stay small while retrieval heads keep everything. Kernels compiled with
// `kvCache` (JIT KernelSpec::kvCache, attn-to-cpu kv-cache) read K/V
// through these tables and evaluate the mask at the logical positions
// (CpuKernel::launch(CacheLaunchArgs)).
//
// Errors are Status values; a failed append changes nothing (the pool is
// never silently overwritten), except when a store fails to write after its
// compaction moved rows: then the eviction stays, as evict() leaves it,
// and the new tokens go (the moved-over rows held dropped slots).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_KVCACHE_H
#define ATTNC_RUNTIME_KVCACHE_H

#include "attnc/Runtime/PagePool.h"
#include "attnc/Runtime/Runtime.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attnc::rt {

/// Where a KvCache's pools live when the cache does not own them (CudaKvStore in
/// Cuda.h keeps them on a GPU, CpuKvStore below in host memory; both write
/// them with the kernel's generated append and move code). The cache decides which pool rows change
/// (retention, eviction, paging); the store moves the bytes. Pools are laid
/// out as the kernels read them: pool row = page * P + slot.
class KvStore {
public:
  virtual ~KvStore() = default;
  /// Where append()'s K/V must be.
  virtual DLDevice device() const = 0;
  /// Pool rows it holds (the cache's numPages x P).
  virtual int64_t rows() const = 0;
  /// Copies pool rows (K, V and scales) from -> to. No row is both read
  /// and written by one call.
  virtual Status move(const std::vector<std::pair<int32_t, int32_t>> &moves) = 0;
  /// Writes row `src` of k [Hkv, n, D] / v [Hkv, n, Dv] (src = head * n +
  /// token; of a batch's k [B, Hkv, n, D], (b * Hkv + head) * n + token; the
  /// input type) into pool row `dst` for each (src, dst),
  /// quantizing as the policy stores; positions[i] is the logical position
  /// of rows[i]'s token (a store that keeps scores keeps it with the row).
  virtual Status write(const DLTensor *k, const DLTensor *v,
                       const std::vector<std::pair<int32_t, int32_t>> &rows,
                       const std::vector<int32_t> &positions) = 0;
  /// Pool row `row` as stored: K and V bytes (kRowBytes / vRowBytes of the
  /// cache) and, quantized, their scales' bytes (f32 or f16 each).
  virtual Status read(int32_t row, void *k, void *v, void *kScales, void *vScales) const = 0;

  /// Pools a store keeps in host memory, which CPU kernels read in place
  /// (KvCache::keyPool() and friends return them), with the row layout
  /// they hold (KvCache::create checks it against the policy's).
  struct HostPools {
    void *keyPool = nullptr, *valuePool = nullptr;
    void *keyScales = nullptr, *valueScales = nullptr; // quantized storage
    int64_t keyRowBytes = 0, valueRowBytes = 0;
    int64_t keyGroups = 0, valueGroups = 0; // scales per row (0: none)
    int64_t scaleBytes = 4;                 // f32 scales, or 2: f16
    std::string storage;                    // the policy's storage type
  };
  /// The pools in host memory, or null when they are elsewhere (a GPU).
  virtual const HostPools *hostPools() const { return nullptr; }

  /// Whether the store keeps the eviction scores of budget heads, a score
  /// per pool row (with the row's position), which its launches update and
  /// its moves carry: then the cache keeps none and the store chooses the
  /// victims, where the scores are (CudaKvStore for H2O: on the GPU).
  virtual bool keepsScores() const { return false; }
  /// What one budget head drops: of its slots [0, slots) (slot s is pool
  /// row pages[s / P] * P + s % P), the candidates are those whose position
  /// is in [0, recentFrom); all but the `keep` of highest score (ties: the
  /// later position) die, `drop` of them.
  struct VictimRequest {
    std::vector<int32_t> pages;
    int64_t slots = 0, recentFrom = 0, keep = 0, drop = 0;
  };
  /// victims[i]: the slots request i drops, ascending (keepsScores only).
  virtual Status chooseVictims(const std::vector<VictimRequest> &requests,
                               std::vector<std::vector<int32_t>> &victims) {
    return Status::error("this KV store keeps no eviction scores");
  }
  /// The scores of pool rows `rows` (keepsScores only).
  virtual Status readScores(const std::vector<int32_t> &rows, std::vector<float> &scores) const {
    return Status::error("this KV store keeps no eviction scores");
  }
};

struct KvCacheOptions {
  /// The policy (usually the kernel's: CpuKernel::info().cache).
  CachePolicyInfo policy;
  int64_t numKvHeads = 0, headDim = 0, headDimV = 0; // headDimV 0: headDim
  /// Pages in the pool, one KV head's slots each. Paged layout: of
  /// policy.pageSize slots; contiguous layout: one page of `maxTokens`
  /// slots per sequence and head.
  int64_t numPages = 0;
  int64_t maxTokens = 0; // contiguous layout only
  /// Pages the allocator keeps together for a KV head (PagePool.h): a head
  /// fills an aligned run of this many before another; 1: none. Runs of 16
  /// (64 KB of a bf16 D = 128 head) decode at the speed of one contiguous
  /// stream on the H100, single scattered pages 1.2% slower.
  int64_t pageRun = 16;
  /// Element type of the K/V that append() takes: f32, bf16 or f16. Empty:
  /// the storage type (required for int8 storage, which append quantizes:
  /// one scale max|x| / 127 per token and head, or per group of the head
  /// dim, round to nearest; int4: max|x| / 7).
  std::string inputDtype;
  /// Per-head policies: for each KV head, the index of its policy in
  /// policy.headPolicies (the `by` table of `per_head(...)`).
  std::vector<int32_t> headKinds;
  /// Budget retention: positions an eviction never drops, the most recent
  /// ones (-1: half the budget, H2O's split of heavy hitters and recent
  /// tokens).
  int64_t recentTokens = -1;
  /// Budget retention scored by snapkv: the last queries of a launch whose
  /// attention scores the slots (SnapKV's observation window).
  int64_t observationWindow = 32;
  /// snapkv: each slot's score is the largest window mass among the
  /// `snapkvPooling` retained positions around it (SnapKV's max-pooling,
  /// which keeps neighbours of a heavy position together); odd, 1: none.
  int64_t snapkvPooling = 7;
  /// Pools elsewhere than in host memory (paged layouts): the cache keeps
  /// only its tables, append() takes K/V on the store's device.
  std::shared_ptr<KvStore> store;
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
  /// int8 storage). Positions a head's retention drops are released first
  /// (and tokens of the chunk it drops already are not stored; budget
  /// heads evict down to their budget, then store the whole chunk, so its
  /// queries see all of it); fails without changing anything when the
  /// pool has too few free pages.
  Status append(int64_t seq, const DLTensor *k, const DLTensor *v);
  /// Appends n tokens to each sequence of a batch (a decode step of B
  /// sequences, or their prefill chunks of one length): k [B, Hkv, n, D]
  /// and v [B, Hkv, n, Dv], row b for seqs[b] (distinct). All of them or
  /// none: a batch that does not fit the pool changes nothing. With a store
  /// it costs one eviction request, one move and one write for the batch
  /// (B of each when appended one by one).
  Status append(const std::vector<int64_t> &seqs, const DLTensor *k, const DLTensor *v);
  /// Budget heads of `seq` evict down to their budget now (append does it
  /// too); other heads are unchanged.
  Status evict(int64_t seq);
  /// Updates the eviction scores of budget heads from a kernel's kv_mass
  /// output for batch `sequences` (rows r = b * Hkv + head of `maxSlots`
  /// slots, the layout of tables()): h2o adds, snapkv replaces. Launches
  /// over a budget cache (CpuKernel) call it themselves. `leadingQueries`:
  /// the mass of a launch's queries before its last scoringSplit() (see
  /// there), which h2o heads add and snapkv heads ignore.
  Status updateScores(const std::vector<int64_t> &sequences, const std::vector<float> &mass,
                      int64_t maxSlots, bool leadingQueries = false);
  /// The eviction score of each position retainedPositions() lists.
  std::vector<float> scores(int64_t seq, int64_t head = 0) const;
  /// Row b * Hkv + head of `out` ([sequences * Hkv, pitch]): the head's
  /// retained slots in position order, -1 after them (SnapKV pools its
  /// scores over neighbours in this order; compaction does not keep it in
  /// the slots).
  Status slotsByPosition(const std::vector<int64_t> &sequences, int64_t pitch,
                         std::vector<int32_t> &out) const;
  /// Whether the policy keeps a budget for some head (its kernels then
  /// produce scores, even when the head table picks no such policy), and
  /// how many last queries of a launch with Nq queries score its slots.
  bool scoresSlots() const { return opts.policy.scoresSlots(); }
  int64_t scoringQueries(int64_t Nq) const;
  /// Heads that score by h2o and heads that score by snapkv in one cache
  /// count different queries of a launch: all of them, and the last
  /// observationWindow. A kernel counts the last `massRows` of its rows
  /// for every head, so a launch of more queries than the window runs as
  /// two (CpuKernel and CudaKvStore do it): the leading Nq - scoringSplit(Nq) queries,
  /// whose mass only h2o heads take (updateScores' leadingQueries), and
  /// the last scoringSplit(Nq), which score every head. 0: one launch.
  int64_t scoringSplit(int64_t Nq) const;
  /// Whether slot j of every sequence and KV head holds position j: the
  /// policy retains every position in every head (appends fill the slots
  /// in order and nothing is dropped or moved). Kernels may then take a
  /// key's position from its slot (a CUDA launch without kv_pos).
  bool slotsArePositions() const { return opts.policy.retainsAll(); }

  /// Tokens appended so far (the next logical position); -1 if no such
  /// sequence.
  int64_t length(int64_t seq) const;
  /// The logical positions KV head `head` of `seq` retains, ascending.
  std::vector<int32_t> retainedPositions(int64_t seq, int64_t head = 0) const;
  /// The stored K and V of a retained position for one KV head, as the
  /// kernel reads them (dequantized), into k [D] and v [Dv].
  Status readToken(int64_t seq, int64_t position, int64_t head, float *k, float *v) const;

  const KvCacheOptions &options() const { return opts; }
  /// The policy KV head `head` follows.
  const CachePolicyInfo &headPolicy(int64_t head) const;
  int64_t pageSize() const { return P; }
  int64_t freePages() const { return pool.freeCount(); }
  int64_t pagesInUse() const { return opts.numPages - freePages(); }
  /// Pages `seq` holds for KV head `head`.
  int64_t pagesOf(int64_t seq, int64_t head) const;
  /// Bytes one token takes per KV head (K and V, with int8 scales).
  int64_t bytesPerTokenPerHead() const;
  /// Bytes of the pages in use.
  int64_t bytesInUse() const;

  /// What a kernel reads for one sequence and KV head.
  struct SequenceView {
    const std::vector<int32_t> *pages; // page of slot s: pages[s / P]
    const std::vector<int32_t> *pos;   // logical position of slot s, -1 if dropped
    int64_t slots = 0, length = 0;
    /// Changes whenever the head's slots or pages change other than by
    /// appending (evictions, dropped slots, released pages, compaction, a
    /// new sequence), and never repeats: while it stays, the pages and
    /// positions a reader saw are a prefix of the current ones, so it
    /// needs only those past it (CudaKvStore's incremental tables).
    uint64_t layoutStamp = 0;
  };
  Expected<SequenceView> view(int64_t seq, int64_t head) const;

  /// The i32 tables a kernel over this cache reads when batch row b is
  /// sequence `sequences[b]` whose last Nq tokens are the queries: a row
  /// per (sequence, KV head), r = b * Hkv + head (the layout of the CPU and
  /// CUDA kernels' ABI; on a GPU, upload them with the pools).
  struct Tables {
    int64_t maxPages = 1, maxSlots = 1, maxLength = 0;
    std::vector<int32_t> pages;          // [rows, maxPages]
    std::vector<int32_t> positions;      // [rows, maxSlots], -1: not retained
    std::vector<int32_t> lengths;        // [rows]: slots in use
    std::vector<int32_t> queryPositions; // [B]: position of the first query
  };
  Expected<Tables> tables(const std::vector<int64_t> &sequences, int64_t Nq) const;
  /// The same into `out`, whose vectors keep their memory (a launch that
  /// reuses one table avoids reallocating, and faulting in, its pages).
  Status tables(const std::vector<int64_t> &sequences, int64_t Nq, Tables &out) const;
  /// Pools, row-major, of the storage type: K [numPages, P, D], V
  /// [numPages, P, Dv] (a page is one head's); quantized: scales (f32, or
  /// f16 where the policy says so) K [numPages, P, groupsK] and V
  /// [numPages, P, groupsV] (one group per token unless per_group).
  /// (A store's pools when it keeps them in host memory, else null when
  /// the pools live in a KvStore.)
  const void *keyPool() const;
  const void *valuePool() const;
  const void *keyScales() const;
  const void *valueScales() const;
  /// Bytes of one stored scale: 4 (f32), or 2 (the policy's f16 scales).
  int64_t scaleBytes() const { return sB; }
  bool quantized() const { return quant; }
  /// Quantized to fp8 e4m3 bytes (else int8 / int4 integers).
  bool storesFp8() const { return fp8; }
  /// int4: two values per byte (element 2i in the low nibble), pools
  /// [numPages, P, D / 2] bytes.
  bool packsNibbles() const { return nibbles; }
  int64_t keyGroups() const { return gK; }
  int64_t valueGroups() const { return gV; }
  /// Bytes of a stored K / V row (int4: D / 2).
  int64_t keyRowBytes() const { return kRow; }
  int64_t valueRowBytes() const { return vRow; }
  KvStore *poolStore() const { return store.get(); }

private:
  KvCache() = default;
  struct Head {
    std::vector<int32_t> pages, pos;
    std::vector<float> score; // budget: eviction score per slot (as pos)
    int64_t slots = 0;
    uint64_t layoutStamp = 0; // SequenceView::layoutStamp
  };
  struct Sequence {
    std::vector<Head> heads;
    int64_t length = 0;
    bool live = false;
  };
  Expected<Sequence *> find(int64_t seq);
  /// The pool row of slot `slot` of a head: page * P + slot % P.
  int64_t poolRow(const Head &h, int64_t slot) const {
    return int64_t(h.pages[size_t(slot / P)]) * P + slot % P;
  }
  const Head *headOf(int64_t seq, int64_t head) const;
  bool retains(int64_t head, int64_t position, int64_t newLength) const;
  /// Each KV head's retention, resolved once (appends consult it per
  /// token and slot).
  struct HeadRetention {
    enum Kind { All, SinkWindow, Budget } kind = All;
    int64_t sink = 0, window = 0;
    bool snapkv = false; // Budget: scored by snapkv, else h2o
  };
  std::vector<HeadRetention> retention;
  void compact(Head &h);
  void fillHoles(Head &h);
  void moveSlot(Head &h, int64_t from, int64_t to);
  struct BudgetChoice {
    std::vector<char> dead;     // per slot; empty: the head keeps its budget
    std::vector<int64_t> older; // live slots an eviction may drop
    int64_t keepOlder = 0, recentFrom = 0;
    bool evicts = false; // some of `older` must go
  };
  BudgetChoice budgetChoice(int64_t head, const Head &h, int64_t length) const;
  void dropLowestScores(const Head &h, BudgetChoice &c) const;
  Status update(const std::vector<int64_t> &seqs, const DLTensor *k, const DLTensor *v, int64_t n);
  Status checkNewTokens(const char *what, const DLTensor *t, std::vector<int64_t> lead,
                        int64_t dim) const;
  /// Stores row `srcRow` of k or v ([..., dim] rows) at `dst` (and its
  /// scales).
  void storeRow(const DLTensor *src, int64_t srcRow, int64_t dim, int64_t groups, char *dst,
                char *scales) const;
  float loadElement(const char *src, const char *scales, int64_t d, int64_t dim,
                    int64_t groups) const;
  /// Scale i of a row of stored scales (f32, or f16 with sB = 2).
  float scaleAt(const char *scales, int64_t i) const;

  KvCacheOptions opts;
  int64_t P = 0, D = 0, Dv = 0, elemBytes = 0, inBytes = 0, gK = 1, gV = 1;
  int64_t kRow = 0, vRow = 0; // bytes of a stored K / V row
  int64_t sB = 4;             // bytes of a stored scale (f16 scales: 2)
  bool quant = false, nibbles = false, contiguous = false;
  bool snapkv = false;      // some budget head scores by snapkv
  bool mixedScores = false; // ... and some by h2o
  bool fp8 = false;         // quantized to e4m3 (scale = max|x| / 448)
  std::vector<char> kPool, vPool;
  std::vector<char> kScales, vScales; // sB bytes a scale
  PagePool pool;                      // the free pages
  std::vector<Sequence> sequences;
  uint64_t layoutClock = 0; // the last layoutStamp given
  std::shared_ptr<KvStore> store;
  /// Pool rows an update moves (from, to), in order.
  std::vector<std::pair<int32_t, int32_t>> moves;
};

/// A KvStore in host memory (KvCacheOptions::store) whose pools only the
/// kernel's generated cache functions write (CpuKernel::writeCacheRows /
/// moveCacheRows): the CPU twin of CudaKvStore (Cuda.h), so appends
/// quantize and evictions compact in code compiled for the cache's policy,
/// to the bytes a host KvCache stores. The kernel's launches read the pools
/// in place (hostPools()). Paged layouts; not thread safe.
class CpuKvStore : public KvStore {
public:
  /// Pools of `numPages` pages of `kernel`'s policy (a kernel compiled with
  /// kvCache), zeroed.
  static Expected<std::shared_ptr<CpuKvStore>> create(std::shared_ptr<const CpuKernel> kernel,
                                                      int64_t numPages);
  DLDevice device() const override { return {kDLCPU, 0}; }
  int64_t rows() const override { return numPages * P; }
  Status move(const std::vector<std::pair<int32_t, int32_t>> &moves) override;
  Status write(const DLTensor *k, const DLTensor *v,
               const std::vector<std::pair<int32_t, int32_t>> &rows,
               const std::vector<int32_t> &positions) override;
  Status read(int32_t row, void *k, void *v, void *kScales, void *vScales) const override;
  const HostPools *hostPools() const override { return &host; }

  /// The pools as the cache functions take them.
  CachePools pools() const;

private:
  CpuKvStore() = default;
  std::shared_ptr<const CpuKernel> kernel;
  int64_t numPages = 0, P = 0;
  std::vector<char> kPool, vPool, kScales, vScales;
  HostPools host;
  std::vector<int64_t> kShape, vShape, ksShape, vsShape;
  DLTensor kView{}, vView{}, ksView{}, vsView{}; // over the pools
};

} // namespace attnc::rt

#endif // ATTNC_RUNTIME_KVCACHE_H
