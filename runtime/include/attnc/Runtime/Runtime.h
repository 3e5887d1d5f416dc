//===- Runtime.h - attnc's light runtime (no MLIR / LLVM) -------*- C++ -*-===//
//
// Loads CPU kernel artifacts (shared objects made by the compiler, see
// attnc/Pipeline/CpuArtifact.h), validates launch arguments and runs the
// work items on a thread pool; the CUDA executor is in Cuda.h. Nothing here
// links MLIR or LLVM, so a deployed model needs only this library and the
// artifacts.
//
// Errors are values (Status / Expected), never exceptions or aborts: every
// bad argument is reported before any kernel code touches memory.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_RUNTIME_H
#define ATTNC_RUNTIME_RUNTIME_H

#include <dlpack/dlpack.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace attnc::rt {

/// Success, or an error message.
class [[nodiscard]] Status {
public:
  static Status ok() { return Status(); }
  static Status error(std::string msg) {
    Status s;
    s.msg = std::move(msg);
    s.failed = true;
    return s;
  }
  bool isOk() const { return !failed; }
  explicit operator bool() const { return !failed; }
  const std::string &message() const { return msg; }

private:
  bool failed = false;
  std::string msg;
};

/// A value or an error message.
template <typename T> class [[nodiscard]] Expected {
public:
  Expected(T value) : value(std::move(value)) {}
  Expected(Status s) : status(std::move(s)) {}
  explicit operator bool() const { return value.has_value(); }
  T &operator*() { return *value; }
  T *operator->() { return &*value; }
  const Status &error() const { return status; }
  const std::string &message() const { return status.message(); }

private:
  std::optional<T> value;
  Status status;
};

/// One runtime parameter as the artifact's metadata describes it.
struct ParamInfo {
  std::string name;
  bool isTensor = false;
  std::string type;              // element type (tensor) or scalar type
  std::vector<std::string> dims; // tensor: B, Hq, Hkv, Nq, Nk, N, D, Dv, an integer, or ?
  std::optional<double> defaultValue;
};

/// A cache policy as a kernel compiled to read a KV cache records it (the
/// `kv_cache` metadata line; KvCache.h).
struct CachePolicyInfo {
  std::string name;
  std::string layout = "paged";  // paged | contiguous
  int64_t pageSize = 0;          // paged: slots per page
  std::string retention = "all"; // all | sink_window | budget
  int64_t sink = 0, window = 0;  // sink_window
  int64_t budget = 0;            // budget: the slots kept per sequence and head
  std::string evict = "none";    // budget: h2o | snapkv (the eviction score)
  std::string storage = "bf16";  // element type of the pages (f32, bf16, f16, i8)
  std::string scale = "none";    // i8: per_token | per_group
  int64_t groupSize = 0;         // per_group: elements of the head dim per scale
  std::string scaleType = "f32"; // quantized: the stored scales' type (f32 | f16)
  /// layout "per_head": the policies KV heads choose from (a runtime table,
  /// KvCacheOptions::headKinds, picks one per head).
  std::vector<CachePolicyInfo> headPolicies;
  /// The policy whose storage the heads share (per-head policies store
  /// alike; the compiler checks it).
  const CachePolicyInfo &storagePolicy() const {
    return headPolicies.empty() ? *this : headPolicies.front();
  }
  /// int8, int4 or fp8 e4m3 pages with f32 (or f16) scales.
  bool quantized() const { return storage == "i8" || storage == "i4" || storage == "f8e4m3"; }
  /// Bytes of a stored scale.
  int64_t scaleBytes() const { return scaleType == "f16" ? 2 : 4; }
  /// Values per byte of a stored row (int4: two).
  int64_t valuesPerByte() const { return storage == "i4" ? 2 : 1; }
  /// Scales per stored row of `dim` values (quantized storage: one per
  /// group, or one per token).
  int64_t scaleGroups(int64_t dim) const {
    return scale == "per_group" && groupSize > 0 ? dim / groupSize : 1;
  }
  /// Whether every position stays, in every head this policy may give: then
  /// a sequence's slot j holds position j (KvCache::slotsArePositions).
  bool retainsAll() const {
    for (const CachePolicyInfo &h : headPolicies)
      if (!h.retainsAll())
        return false;
    return retention == "all";
  }
  /// Whether this policy, or one a head may follow, keeps a budget scored
  /// by `evict` (empty: by anything).
  bool keepsBudget(const std::string &by = "") const {
    if (retention == "budget" && (by.empty() || evict == by))
      return true;
    for (const CachePolicyInfo &h : headPolicies)
      if (h.keepsBudget(by))
        return true;
    return false;
  }
  /// A budget: its kernels then also produce the slots' attention mass
  /// (eviction scores).
  bool scoresSlots() const { return keepsBudget(); }
  /// A budget scored by H2O (each launch's mass added to the slots' scores).
  bool addsScores() const { return keepsBudget("h2o"); }
  /// A budget scored by SnapKV (the window's mass max-pooled over
  /// neighbouring positions): its CUDA kernels then also pool the mass
  /// into the slots' scores.
  bool poolsScores() const { return keepsBudget("snapkv"); }
};

/// A decode twin of a CPU KV-cache kernel: its work item on tiles of tileQ
/// packed rows and tileK keys, which cache launches of up to maxItems row
/// tiles take.
struct DecodeTile {
  int64_t tileQ = 0, tileK = 0, maxItems = 2;
};

/// The specialization a CPU artifact was compiled for.
struct KernelInfo {
  std::string name;
  std::string dtype = "f32"; // Q/K/V element type: f32, bf16, f16
  int64_t headDim = 0, headDimV = 0, tileQ = 0, tileK = 0;
  /// KV-cache kernels: decode twins (metadata `decode_tile TQ TK [ITEMS]`,
  /// one line each, rows ascending; ITEMS 2 where absent, as the single
  /// twin of older artifacts). A cache launch takes the first whose items
  /// hold its G x Nq packed rows, else the kernel's own item.
  std::vector<DecodeTile> decodeTiles;
  std::vector<ParamInfo> params;
  /// Set for kernels that read K/V through a KvCache.
  std::optional<CachePolicyInfo> cache;
};

/// Parses the metadata text (docs/cpu-runtime.md).
Expected<KernelInfo> parseKernelInfo(const std::string &text);

/// A value bound to a runtime parameter at launch.
struct Arg {
  const DLTensor *tensor = nullptr;
  double scalar = 0;
  bool isTensor = false;
  static Arg ofTensor(const DLTensor *t) {
    Arg a;
    a.tensor = t;
    a.isTensor = true;
    return a;
  }
  static Arg ofScalar(double v) {
    Arg a;
    a.scalar = v;
    return a;
  }
};

struct LaunchArgs {
  /// Q [B,Hq,Nq,D], K [B,Hkv,Nk,D], V [B,Hkv,Nk,Dv] of the kernel's dtype;
  /// O [B,Hq,Nq,Dv]; LSE [B,Hq,Nq] f32 or null (not wanted).
  /// CpuKernel: all on kDLCPU, O f32. The two innermost dimensions must be
  /// dense (strides {.., D, 1}); batch and head strides are free, so slices
  /// of larger buffers and [B,N,H,D]-ordered storage viewed as [B,H,N,D] are
  /// rejected only when the row stride differs from D.
  /// CudaKernel (Cuda.h): all kDLCUDA on one device, O of the kernel's dtype;
  /// any strides with the innermost 1 (within the kernel's alignment).
  const DLTensor *q = nullptr, *k = nullptr, *v = nullptr;
  DLTensor *o = nullptr, *lse = nullptr;
  int64_t qOffset = 0;
  /// Runtime parameters by name (scalars with a default may be omitted).
  std::map<std::string, Arg> params;
  /// CpuKernel: threads for this launch; 0: the pool's size.
  int numThreads = 0;
};

class KvCache;

/// A KV cache's pools as its kernels read them and its generated cache
/// functions write them (KvCache.h's layout; a pool row is page * P +
/// slot): K [pages, P, D] and V [pages, P, Dv] of the policy's storage
/// (int8 / fp8: i8; int4: i8 holding two values each, [pages, P, D / 2]);
/// quantized storage: scales [pages, P, groups] (groups = 1 per token, or
/// D / group size) of f32, or f16 where the policy says so.
struct CachePools {
  const DLTensor *keyPool = nullptr, *valuePool = nullptr;
  const DLTensor *keyScales = nullptr, *valueScales = nullptr;
};

/// Attention over a KvCache (KvCache.h), for a kernel compiled with
/// kvCache: batch row b is sequence `sequences[b]`, whose last Nq tokens
/// (positions length - Nq ..) are the queries; keys are the positions the
/// cache retains for it.
struct CacheLaunchArgs {
  /// Q [B, Hq, Nq, D] of the kernel's dtype; O [B, Hq, Nq, Dv] f32; LSE
  /// [B, Hq, Nq] f32 or null (as in LaunchArgs).
  const DLTensor *q = nullptr;
  DLTensor *o = nullptr, *lse = nullptr;
  /// A launch over a budget cache updates its eviction scores
  /// (KvCache::updateScores); do not launch over one cache concurrently.
  KvCache *cache = nullptr;
  std::vector<int64_t> sequences;
  std::map<std::string, Arg> params;
  int numThreads = 0;
  /// Split-KV: each sequence's slots in `splits` ranges of whole pages, run
  /// as separate work items and merged by their LSEs (flash-decoding), so
  /// that a step of few sequences and heads fills the cores. 0: chosen from
  /// the step's work items and length, never from the thread count (results
  /// do not depend on it); 1: none. Budget caches take 1 (their eviction
  /// scores need each row's whole softmax).
  int64_t splits = 0;
};

/// A loaded CPU kernel. Thread safe: launches may run concurrently.
class CpuKernel {
public:
  /// dlopens `soPath` and binds kernel `name`'s entry point and metadata.
  static Expected<std::shared_ptr<CpuKernel>> load(const std::string &soPath,
                                                   const std::string &name);
  ~CpuKernel();
  const KernelInfo &info() const { return kernelInfo; }
  /// Validates every argument, then runs all (b, h, q-tile) work items.
  /// Results do not depend on the thread count (items are independent and
  /// each output element is written by exactly one item).
  Status launch(const LaunchArgs &args) const;
  /// The same over a KV cache (the kernel must have been compiled for its
  /// policy with kvCache). The cache's pools must be in host memory: its
  /// own, or a store's that has them there (CpuKvStore).
  Status launch(const CacheLaunchArgs &args) const;

  /// The cache functions generated with a kvCache kernel (CpuKvStore runs
  /// them), on kDLCPU tensors. writeCacheRows: for each (row, pool row) of
  /// `rows` (i32 [count, 2]), row `row` of k / v (dense, innermost D / Dv;
  /// f32, bf16 or f16 for quantized storage, else the storage's type) into
  /// that pool row, quantized to the bytes the host KvCache stores.
  /// moveCacheRows: each (from, to) pool row copied, in order. Every index
  /// is checked before any row changes.
  Status writeCacheRows(const CachePools &pools, const DLTensor *k, const DLTensor *v,
                        const DLTensor *rows) const;
  Status moveCacheRows(const CachePools &pools, const DLTensor *rows) const;

private:
  CpuKernel() = default;
  Status runCacheRows(bool append, const CachePools &pools, const DLTensor *k, const DLTensor *v,
                      const DLTensor *rows) const;
  /// launch(args) for queries followed by `queriesAfter` more of the same
  /// step (KvCache::scoringSplit's two launches); `leading`: their mass is
  /// the leading queries' (KvCache::updateScores).
  Status launchQueries(const CacheLaunchArgs &args, int64_t queriesAfter, bool leading) const;
  void *handle = nullptr;
  void (*itemFn)(void **) = nullptr;
  /// The decode twins' items, as KernelInfo::decodeTiles.
  std::vector<void (*)(void **)> decodeItemFns;
  /// kvCache kernels: the append per input type (f32, bf16, f16; null where
  /// the storage does not take it) and the move.
  void (*appendFns[3])(void **) = {nullptr, nullptr, nullptr};
  void (*moveFn)(void **) = nullptr;
  KernelInfo kernelInfo;
};

/// Threads the pool uses: $ATTNC_NUM_THREADS if set, else the hardware's.
int defaultNumThreads();

/// Split-KV of a CPU decode step (CacheLaunchArgs::splits): {splits, slots
/// per split (whole pages of P)} for `items` work items (sequences x KV
/// heads x row tiles) over at most `maxLength` slots. `requested` 0 picks
/// enough splits for 64 work units, each of at least 4096 slots, from
/// these numbers alone (not the thread count); the count is then fitted to
/// whole pages and the length (never an empty split).
std::pair<int64_t, int64_t> cpuDecodeSplits(int64_t requested, int64_t items, int64_t maxLength,
                                            int64_t P);

/// Runs fn(i) for i in [0, n) on up to `threads` threads (0: default) of
/// a process-wide pool; returns when all are done.
void parallelFor(int64_t n, int threads, const std::function<void(int64_t)> &fn);

} // namespace attnc::rt

#endif // ATTNC_RUNTIME_RUNTIME_H
