//===- Runtime.cpp - attnc's light runtime (no MLIR / LLVM) ---------------===//

#include "attnc/Runtime/Runtime.h"

#include "attnc/Runtime/KvCache.h"

#include "Validate.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

using namespace attnc::rt;

//===----------------------------------------------------------------------===//
// Thread pool
//===----------------------------------------------------------------------===//

int attnc::rt::defaultNumThreads() {
  if (const char *env = std::getenv("ATTNC_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0)
      return std::min(n, 1024);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? int(hw) : 1;
}

namespace {
/// A fixed set of workers sharing one job at a time (launches from several
/// threads queue on jobMutex). Work is handed out by an atomic counter, so
/// scheduling varies but each item's result does not.
class Pool {
public:
  explicit Pool(int size) {
    for (int i = 0; i + 1 < size; ++i)
      threads.emplace_back([this, i] { work(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(m);
      stop = true;
    }
    cv.notify_all();
    for (auto &t : threads)
      t.join();
  }
  void run(int64_t count, int wanted, const std::function<void(int64_t)> &f) {
    std::lock_guard<std::mutex> job(jobMutex);
    int64_t helpers = std::min<int64_t>({int64_t(wanted) - 1, int64_t(threads.size()), count - 1});
    if (helpers <= 0) {
      for (int64_t i = 0; i < count; ++i)
        f(i);
      return;
    }
    {
      std::lock_guard<std::mutex> l(m);
      fn = &f;
      n = count;
      next = 0;
      participants = int(helpers);
      remaining = int(helpers);
      ++generation;
    }
    cv.notify_all();
    drain();
    std::unique_lock<std::mutex> l(m);
    done.wait(l, [&] { return remaining == 0; });
    fn = nullptr;
  }

private:
  void drain() {
    for (int64_t i; (i = next.fetch_add(1)) < n;)
      (*fn)(i);
  }
  void work(int index) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> l(m);
    for (;;) {
      cv.wait(l, [&] { return stop || generation != seen; });
      if (stop)
        return;
      seen = generation;
      if (index >= participants)
        continue;
      l.unlock();
      drain();
      l.lock();
      if (--remaining == 0)
        done.notify_all();
    }
  }

  std::vector<std::thread> threads;
  std::mutex jobMutex, m;
  std::condition_variable cv, done;
  const std::function<void(int64_t)> *fn = nullptr;
  int64_t n = 0;
  std::atomic<int64_t> next{0};
  int participants = 0, remaining = 0;
  uint64_t generation = 0;
  bool stop = false;
};

/// Never destroyed: workers may still be parked at exit, and a forked child
/// must not join threads that only exist in its parent.
Pool &pool() {
  static Pool *p = new Pool(defaultNumThreads());
  return *p;
}
pid_t poolOwner() {
  static pid_t pid = getpid();
  return pid;
}
} // namespace

void attnc::rt::parallelFor(int64_t n, int threads, const std::function<void(int64_t)> &fn) {
  poolOwner();
  Pool &p = pool();
  // After fork() the child has the pool object but none of its threads:
  // run inline there rather than wait for workers that do not exist.
  if (getpid() != poolOwner()) {
    for (int64_t i = 0; i < n; ++i)
      fn(i);
    return;
  }
  p.run(n, threads > 0 ? threads : defaultNumThreads(), fn);
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

namespace {
/// Input types of a kvCache kernel's generated appends, the order of
/// CpuKernel::appendFns (`attnc_<K>_append_<type>_packed`).
const char *const kAppendInputs[] = {"f32", "bf16", "f16"};
} // namespace

Expected<std::shared_ptr<CpuKernel>> attnc::rt::CpuKernel::load(const std::string &soPath,
                                                                const std::string &name) {
  void *handle = dlopen(soPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *err = dlerror();
    return Status::error("cannot load kernel artifact '" + soPath + "': " + (err ? err : "?"));
  }
  std::shared_ptr<CpuKernel> kernel(new CpuKernel());
  kernel->handle = handle;
  auto *meta = static_cast<const char *>(dlsym(handle, ("attnc_" + name + "_metadata").c_str()));
  void *item = dlsym(handle, ("attnc_" + name + "_item_packed").c_str());
  if (!meta || !item)
    return Status::error("'" + soPath + "' has no attnc kernel named '" + name + "'");
  auto info = parseKernelInfo(meta);
  if (!info)
    return info.error();
  if (info->name != name)
    return Status::error("'" + soPath + "' describes kernel '" + info->name + "', not '" + name +
                         "'");
  kernel->kernelInfo = std::move(*info);
  kernel->itemFn = reinterpret_cast<void (*)(void **)>(item);
  for (const DecodeTile &t : kernel->kernelInfo.decodeTiles) {
    // The twins' items as attn-to-cpu names them (cpuDecodeItemName): the
    // 4-row twin's is `_decode_item`, others' `_decode_item_q<TQ>`.
    std::string item = "attnc_" + name + "_decode_item" +
                       (t.tileQ == 4 ? "" : "_q" + std::to_string(t.tileQ)) + "_packed";
    void *twin = dlsym(handle, item.c_str());
    if (!twin)
      return Status::error("'" + soPath + "' declares a decode twin of " + std::to_string(t.tileQ) +
                           " rows of '" + name + "' but has no " + item);
    kernel->decodeItemFns.push_back(reinterpret_cast<void (*)(void **)>(twin));
  }
  if (kernel->kernelInfo.cache) {
    // The cache's own functions (absent from artifacts of older compilers:
    // writeCacheRows then says so).
    for (size_t i = 0; i < std::size(kAppendInputs); ++i)
      kernel->appendFns[i] = reinterpret_cast<void (*)(void **)>(
          dlsym(handle, ("attnc_" + name + "_append_" + kAppendInputs[i] + "_packed").c_str()));
    kernel->moveFn = reinterpret_cast<void (*)(void **)>(
        dlsym(handle, ("attnc_" + name + "_move_packed").c_str()));
  }
  return kernel;
}

attnc::rt::CpuKernel::~CpuKernel() {
  if (handle)
    dlclose(handle);
}

//===----------------------------------------------------------------------===//
// Launch
//===----------------------------------------------------------------------===//

namespace {
/// A memref descriptor (allocated, aligned, offset, sizes[r], strides[r]).
struct Descriptor {
  std::vector<int64_t> words;
  void *ptr = nullptr; // what the C interface takes: a pointer to the words

  explicit Descriptor(const detail::TensorView &t) {
    auto base = int64_t(reinterpret_cast<intptr_t>(t.data));
    words.assign({base, base, 0});
    words.insert(words.end(), t.shape.begin(), t.shape.end());
    words.insert(words.end(), t.strides.begin(), t.strides.end());
    ptr = words.data();
  }
};

/// What the CPU kernel accepts (docs/cpu-runtime.md): host memory, f32
/// outputs, packed rows.
const detail::TargetRules &cpuRules() {
  static const detail::TargetRules rules;
  return rules;
}

/// The kernel always writes LSE; without one wanted, it goes to `scratch`.
void ensureLse(detail::LaunchPlan &plan, std::vector<float> &scratch) {
  if (plan.hasLse)
    return;
  int64_t B = plan.B, Hq = plan.Hq, Nq = plan.Nq;
  scratch.resize(std::max<int64_t>(1, B * Hq * Nq));
  plan.lse.data = reinterpret_cast<char *>(scratch.data());
  plan.lse.shape = {B, Hq, Nq};
  plan.lse.strides = {Hq * Nq, Nq, 1};
}

/// The runtime parameters as the item function takes them (tensors as
/// memref descriptors, scalars by value).
struct ParamArgs {
  std::vector<Descriptor> descs;
  std::vector<void *> ptrs;
  explicit ParamArgs(std::vector<detail::ParamValue> &params) {
    descs.reserve(params.size());
    for (detail::ParamValue &p : params) {
      if (p.info->isTensor) {
        descs.emplace_back(p.tensor);
        ptrs.push_back(&descs.back().ptr);
      } else {
        ptrs.push_back(&p.scalarBits);
      }
    }
  }
};

/// Runs every (b, h, q-tile) item: Q, K, V, O, LSE, q_offset, the
/// parameters, `extra` (KV-cache tables), then b, h and the tile. A head's
/// query tiles are consecutive items, so its K/V stay in cache from one item
/// to the next (head-inner order measured 1.5x slower on dense 4096/128,
/// bench/NOTES.md); within a head the last tiles go first: under
/// causal-like masks they are the most work (longest first). The order
/// never changes what an item computes.
/// `args[i]` points at argument i; the shared ones are only read.
/// `scalars` point at i32 arguments after the tables (budget kernels'
/// mass_rows). `tilesInOrder`: one task runs all q-tiles of a (b, h) in
/// order (items that add into the same outputs, the budget kernels'
/// kv_mass).
std::vector<void *> sharedArgs(void *(&io)[5], int32_t &qOffset,
                               const std::vector<void *> &paramPtrs, std::vector<void *> &extra,
                               const std::vector<int32_t *> &scalars) {
  std::vector<void *> shared;
  for (void *&p : io)
    shared.push_back(&p);
  shared.push_back(&qOffset);
  shared.insert(shared.end(), paramPtrs.begin(), paramPtrs.end());
  for (void *&p : extra)
    shared.push_back(&p);
  for (int32_t *x : scalars)
    shared.push_back(x);
  return shared;
}

/// runItems over several launches' arguments (`sets[s]`, as sharedArgs
/// makes them) in one parallel loop: the splits of a decode step.
void runItemSets(void (*fn)(void **), const std::vector<std::vector<void *>> &sets, int64_t B,
                 int64_t Hq, int64_t tilesQ, int threads, bool tilesInOrder = false) {
  const int64_t perSet = B * Hq * (tilesInOrder ? 1 : tilesQ);
  parallelFor(int64_t(sets.size()) * perSet, threads, [&](int64_t task) {
    const std::vector<void *> &shared = sets[size_t(task / perSet)];
    const int64_t item = task % perSet;
    auto run = [&](int64_t bh, int64_t qtile) {
      int64_t h = bh % Hq, b = bh / Hq;
      std::vector<void *> args(shared);
      args.push_back(&b);
      args.push_back(&h);
      args.push_back(&qtile);
      fn(args.data());
    };
    if (tilesInOrder) {
      for (int64_t qtile = 0; qtile < tilesQ; ++qtile)
        run(item, qtile);
      return;
    }
    run(item / tilesQ, tilesQ - 1 - item % tilesQ);
  });
}

void runItems(void (*fn)(void **), void *(&io)[5], int32_t &qOffset,
              const std::vector<void *> &paramPtrs, std::vector<void *> &extra, int64_t B,
              int64_t Hq, int64_t tilesQ, int threads, const std::vector<int32_t *> &scalars = {},
              bool tilesInOrder = false) {
  runItemSets(fn, {sharedArgs(io, qOffset, paramPtrs, extra, scalars)}, B, Hq, tilesQ, threads,
              tilesInOrder);
}
} // namespace

Status attnc::rt::CpuKernel::launch(const LaunchArgs &a) const {
  if (kernelInfo.cache)
    return Status::error("kernel '" + kernelInfo.name + "' was compiled to read KV cache '" +
                         kernelInfo.cache->name + "': launch it with CacheLaunchArgs");
  auto plan = detail::planLaunch(kernelInfo, a, cpuRules());
  if (!plan)
    return plan.error();
  int64_t B = plan->B, Hq = plan->Hq, Nq = plan->Nq, Nk = plan->Nk, Dv = plan->Dv;
  std::vector<float> lseScratch;
  ensureLse(*plan, lseScratch);

  if (Nk == 0) {
    // No keys: every row is fully masked (O = 0, LSE = -inf, DESIGN.md).
    // Handled here because the kernel clamps key indices to Nk - 1.
    const std::vector<int64_t> &os = plan->o.strides, &ls = plan->lse.strides;
    auto *o = reinterpret_cast<float *>(plan->o.data);
    auto *l = reinterpret_cast<float *>(plan->lse.data);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t i = 0; i < Nq; ++i) {
          for (int64_t d = 0; d < Dv; ++d)
            o[b * os[0] + h * os[1] + i * os[2] + d * os[3]] = 0.f;
          l[b * ls[0] + h * ls[1] + i * ls[2]] = -std::numeric_limits<float>::infinity();
        }
    return Status::ok();
  }

  Descriptor dQ(plan->q), dK(plan->k), dV(plan->v), dO(plan->o), dL(plan->lse);
  ParamArgs params(plan->params);
  int64_t tilesQ = (Nq + kernelInfo.tileQ - 1) / kernelInfo.tileQ;
  void *io[5] = {dQ.ptr, dK.ptr, dV.ptr, dO.ptr, dL.ptr};
  int32_t qOffset = int32_t(plan->qOffset);
  std::vector<void *> none;
  runItems(itemFn, io, qOffset, params.ptrs, none, B, Hq, tilesQ, a.numThreads);
  return Status::ok();
}

namespace {
bool samePolicy(const CachePolicyInfo &a, const CachePolicyInfo &b) {
  if (a.name != b.name || a.layout != b.layout || a.retention != b.retention || a.sink != b.sink ||
      a.window != b.window || a.budget != b.budget || a.evict != b.evict ||
      a.storage != b.storage || a.scale != b.scale || a.groupSize != b.groupSize ||
      a.scaleType != b.scaleType || (a.layout == "paged" && a.pageSize != b.pageSize) ||
      a.headPolicies.size() != b.headPolicies.size())
    return false;
  for (size_t i = 0; i < a.headPolicies.size(); ++i)
    if (!samePolicy(a.headPolicies[i], b.headPolicies[i]))
      return false;
  return true;
}

std::string describePolicy(const CachePolicyInfo &p) {
  if (p.layout == "per_head") {
    std::string s = p.name + " (per head:";
    for (const CachePolicyInfo &h : p.headPolicies)
      s += " " + h.name;
    return s + ")";
  }
  std::string s = p.name + " (" + p.layout;
  if (p.layout == "paged")
    s += " " + std::to_string(p.pageSize);
  s += ", " + p.retention;
  if (p.retention == "sink_window")
    s += " " + std::to_string(p.sink) + "+" + std::to_string(p.window);
  if (p.retention == "budget")
    s += " " + std::to_string(p.budget) + " " + p.evict;
  return s + ", " + p.storage + (p.scaleType == "f16" ? " with f16 scales" : "") + ")";
}

detail::TensorView denseView(void *data, std::vector<int64_t> shape) {
  detail::TensorView t;
  t.data = static_cast<char *>(data);
  t.shape = std::move(shape);
  t.strides.assign(t.shape.size(), 1);
  for (int i = int(t.shape.size()) - 2; i >= 0; --i)
    t.strides[i] = t.strides[i + 1] * t.shape[i + 1];
  return t;
}
} // namespace

namespace {
/// Split-KV on the CPU: the work units a decode step aims at (enough for
/// the cores of a large host, chosen without looking at them so that
/// results do not depend on the thread count) and the fewest slots a split
/// keeps (its item's fixed cost stays small).
constexpr int64_t kDecodeSplitUnits = 64, kMinSplitSlots = 4096;
} // namespace

std::pair<int64_t, int64_t> attnc::rt::cpuDecodeSplits(int64_t requested, int64_t items,
                                                       int64_t maxLength, int64_t P) {
  int64_t splits = requested;
  if (splits <= 0) {
    const int64_t minSlots = (kMinSplitSlots + P - 1) / P * P;
    splits = std::min((kDecodeSplitUnits + items - 1) / std::max<int64_t>(items, 1),
                      maxLength / minSlots);
  }
  const int64_t pages = std::max<int64_t>(1, (maxLength + P - 1) / P);
  splits = std::clamp<int64_t>(splits, 1, pages);
  const int64_t perSplit = (pages + splits - 1) / splits * P;
  return {std::max<int64_t>(1, (maxLength + perSplit - 1) / perSplit), perSplit};
}

/// A decode step in `splits` slot ranges of `splitSlots` (whole pages):
/// each range's tables are the step's, cut to it (pages and positions from
/// its first slot, lengths clamped), its O and LSE go to f32 scratch, and
/// the ranges merge by their LSEs into the plan's O and LSE.
static Status runSplitDecode(void (*fn)(void **), const detail::LaunchPlan &plan,
                             const KvCache::Tables &ct, int64_t splits, int64_t splitSlots,
                             int64_t P, void *(&io)[5], const std::vector<void *> &paramPtrs,
                             const std::vector<void *> &tables, int64_t Hkv, int64_t tilesQ,
                             int numThreads) {
  const int64_t B = plan.B, Hq = plan.Hq, Nq = plan.Nq, Dv = plan.Dv;
  const int64_t rowsT = int64_t(ct.lengths.size()), splitPages = splitSlots / P;
  const int64_t rows = B * Hq * Nq;
  struct Split {
    std::vector<int32_t> pages, positions, lengths;
    std::vector<float> o, lse;
    std::optional<Descriptor> dPages, dPos, dLen, dO, dL;
    void *io[5];
    std::vector<void *> tables;
    int32_t qOffset = 0;
  };
  std::vector<Split> parts(static_cast<size_t>(splits));
  std::vector<std::vector<void *>> sets;
  for (int64_t s = 0; s < splits; ++s) {
    Split &sp = parts[size_t(s)];
    const int64_t s0 = s * splitSlots, p0 = s0 / P;
    sp.pages.assign(size_t(rowsT * splitPages), 0);
    sp.positions.assign(size_t(rowsT * splitSlots), -1);
    sp.lengths.resize(size_t(rowsT));
    for (int64_t r = 0; r < rowsT; ++r) {
      for (int64_t j = 0; j < splitPages && p0 + j < ct.maxPages; ++j)
        sp.pages[size_t(r * splitPages + j)] = ct.pages[size_t(r * ct.maxPages + p0 + j)];
      for (int64_t j = 0; j < splitSlots && s0 + j < ct.maxSlots; ++j)
        sp.positions[size_t(r * splitSlots + j)] = ct.positions[size_t(r * ct.maxSlots + s0 + j)];
      sp.lengths[size_t(r)] =
          int32_t(std::clamp<int64_t>(ct.lengths[size_t(r)] - s0, 0, splitSlots));
    }
    sp.o.assign(size_t(rows * Dv), 0.f);
    sp.lse.assign(size_t(std::max<int64_t>(rows, 1)), 0.f);
    sp.dPages.emplace(denseView(sp.pages.data(), {rowsT, splitPages}));
    sp.dPos.emplace(denseView(sp.positions.data(), {rowsT, splitSlots}));
    sp.dLen.emplace(denseView(sp.lengths.data(), {rowsT}));
    sp.dO.emplace(denseView(sp.o.data(), {B, Hq, Nq, Dv}));
    sp.dL.emplace(denseView(sp.lse.data(), {B, Hq, Nq}));
    std::copy(std::begin(io), std::end(io), std::begin(sp.io));
    sp.io[3] = sp.dO->ptr, sp.io[4] = sp.dL->ptr;
    sp.tables = tables;
    sp.tables[0] = sp.dPages->ptr, sp.tables[1] = sp.dPos->ptr, sp.tables[2] = sp.dLen->ptr;
    sets.push_back(sharedArgs(sp.io, sp.qOffset, paramPtrs, sp.tables, {}));
  }
  runItemSets(fn, sets, B, Hkv, tilesQ, numThreads);

  // O = sum_s w_s O_s / sum_s w_s with w_s = exp(LSE_s - max LSE): each
  // split's O is normalized over its own slots (rows a split saw no key of
  // have LSE -inf and weigh nothing; rows no split saw get O = 0, LSE -inf).
  auto *o = reinterpret_cast<float *>(plan.o.data);
  auto *lse = reinterpret_cast<float *>(plan.lse.data);
  const std::vector<int64_t> &os = plan.o.strides, &ls = plan.lse.strides;
  const float negInf = -std::numeric_limits<float>::infinity();
  std::vector<float> weights(static_cast<size_t>(splits));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Nq; ++i) {
        const int64_t row = (b * Hq + h) * Nq + i;
        float m = negInf;
        for (const Split &sp : parts)
          m = std::max(m, sp.lse[size_t(row)]);
        float *out = o + b * os[0] + h * os[1] + i * os[2];
        if (m == negInf) {
          for (int64_t d = 0; d < Dv; ++d)
            out[d * os[3]] = 0.f;
          lse[b * ls[0] + h * ls[1] + i * ls[2]] = negInf;
          continue;
        }
        float sum = 0.f;
        for (int64_t s = 0; s < splits; ++s)
          sum += weights[size_t(s)] = std::exp(parts[size_t(s)].lse[size_t(row)] - m);
        for (int64_t d = 0; d < Dv; ++d) {
          float acc = 0.f;
          for (int64_t s = 0; s < splits; ++s)
            acc += weights[size_t(s)] * parts[size_t(s)].o[size_t(row * Dv + d)];
          out[d * os[3]] = acc / sum;
        }
        lse[b * ls[0] + h * ls[1] + i * ls[2]] = m + std::log(sum);
      }
  return Status::ok();
}

Status attnc::rt::CpuKernel::launch(const CacheLaunchArgs &a) const {
  if (!a.cache)
    return launchQueries(a, 0, /*leading=*/false);
  return detail::launchScoringParts(
      *a.cache, a.q, a.o, a.lse,
      [&](const DLTensor *q, DLTensor *o, DLTensor *lse, int64_t queriesAfter, bool leading) {
        CacheLaunchArgs part = a;
        part.q = q, part.o = o, part.lse = lse;
        return launchQueries(part, queriesAfter, leading);
      });
}

Status attnc::rt::CpuKernel::launchQueries(const CacheLaunchArgs &a, int64_t queriesAfter,
                                           bool leading) const {
  const KernelInfo &ki = kernelInfo;
  if (!ki.cache)
    return Status::error("kernel '" + ki.name +
                         "' was not compiled for a KV cache (compile it with kvCache)");
  if (!a.cache)
    return Status::error("no KV cache given");
  KvCache &cache = *a.cache;
  if (cache.poolStore() && !cache.poolStore()->hostPools())
    return Status::error("the cache's pools live in a KvStore (not host memory): launch a "
                         "kernel for the store's device over it");
  const CachePolicyInfo &kp = *ki.cache, &cp = cache.options().policy;
  if (!samePolicy(kp, cp))
    return Status::error("kernel '" + ki.name + "' was compiled for cache policy " +
                         describePolicy(kp) + ", but the cache follows " + describePolicy(cp));
  const std::string &storage = cache.headPolicy(0).storage;
  if (storage != ki.dtype && !cache.quantized())
    return Status::error("cache stores " + storage + " but kernel '" + ki.name + "' reads " +
                         ki.dtype);
  const KvCacheOptions &co = cache.options();
  if (co.headDim != ki.headDim || co.headDimV != ki.headDimV)
    return Status::error("cache head dims " + std::to_string(co.headDim) + "/" +
                         std::to_string(co.headDimV) + " but kernel '" + ki.name +
                         "' was compiled for " + std::to_string(ki.headDim) + "/" +
                         std::to_string(ki.headDimV));
  if (!a.q || a.q->ndim != 4)
    return Status::error("q: expected a [B, Hq, Nq, D] tensor");
  const int64_t B = int64_t(a.sequences.size()), Nq = a.q->shape[2], Hkv = co.numKvHeads;
  const int64_t P = cache.pageSize();
  if (a.q->shape[0] != B)
    return Status::error("q has batch " + std::to_string(a.q->shape[0]) + " but " +
                         std::to_string(B) + " sequences are given");

  // The tables the kernel reads (kv_pages, kv_pos, kv_len, q_pos), in this
  // thread's table of its last launch: rebuilt, but in memory already
  // faulted in (a DuoAttention step at 64k built 4 MB of positions).
  static thread_local KvCache::Tables ct;
  if (Status s = cache.tables(a.sequences, Nq, ct); !s)
    return s;
  for (int32_t &q : ct.queryPositions)
    q -= int32_t(queriesAfter);
  const int64_t rowsT = B * Hkv, maxPages = ct.maxPages, maxSlots = ct.maxSlots;
  int64_t maxQ = 0;
  for (int32_t q : ct.queryPositions)
    maxQ = std::max<int64_t>(maxQ, q);

  // Q, O, LSE and parameters are checked as for a plain launch, with K/V
  // stand-ins of the pools' page shape.
  int64_t kShape[4] = {B, Hkv, P, co.headDim}, vShape[4] = {B, Hkv, P, co.headDimV};
  int64_t kStrides[4] = {0, P * co.headDim, co.headDim, 1},
          vStrides[4] = {0, P * co.headDimV, co.headDimV, 1};
  DLTensor fk = *a.q, fv = *a.q;
  fk.data = const_cast<void *>(cache.keyPool());
  fv.data = const_cast<void *>(cache.valuePool());
  fk.byte_offset = fv.byte_offset = 0;
  fk.shape = kShape, fk.strides = kStrides;
  fv.shape = vShape, fv.strides = vStrides;
  LaunchArgs la;
  la.q = a.q, la.k = &fk, la.v = &fv, la.o = a.o, la.lse = a.lse;
  la.qOffset = maxQ;
  la.params = a.params;
  auto plan = detail::planLaunch(ki, la, cpuRules());
  if (!plan)
    return plan.error();
  std::vector<float> lseScratch;
  ensureLse(*plan, lseScratch);
  const int64_t numPages = co.numPages;
  Descriptor dQ(plan->q), dO(plan->o), dL(plan->lse);
  // Pools as [pages, 1, P, D] (int4: D / 2 bytes): a page is one KV head's.
  const int64_t per = cache.packsNibbles() ? 2 : 1;
  Descriptor dK(denseView(const_cast<void *>(cache.keyPool()), {numPages, 1, P, co.headDim / per}));
  Descriptor dV(
      denseView(const_cast<void *>(cache.valuePool()), {numPages, 1, P, co.headDimV / per}));
  Descriptor dPages(denseView(ct.pages.data(), {rowsT, maxPages})),
      dPos(denseView(ct.positions.data(), {rowsT, maxSlots})),
      dLen(denseView(ct.lengths.data(), {rowsT})), dQpos(denseView(ct.queryPositions.data(), {B}));
  ParamArgs params(plan->params);
  // Items are (sequence, KV head, tile of the packed rows: the Hq / Hkv
  // query heads of the KV head times Nq queries).
  // A decode step's few packed rows take the first decode twin (smaller
  // tiles) whose items hold them: speculative steps too. The twins are
  // compute-bound on the CPU, so e.g. two 4-row items over the same keys
  // still cost less than one 32-row item (bench/NOTES.md, sessions 9, 11).
  int64_t packed = (plan->Hq / Hkv) * Nq;
  int twin = -1;
  for (size_t i = 0; i < ki.decodeTiles.size() && twin < 0; ++i)
    if (packed <= ki.decodeTiles[i].maxItems * ki.decodeTiles[i].tileQ)
      twin = int(i);
  const int64_t tileQ = twin >= 0 ? ki.decodeTiles[size_t(twin)].tileQ : ki.tileQ;
  int64_t tilesQ = (packed + tileQ - 1) / tileQ;
  void *io[5] = {dQ.ptr, dK.ptr, dV.ptr, dO.ptr, dL.ptr};
  int32_t qOffset = 0; // unused: q_pos gives each sequence's query positions
  std::vector<void *> tables = {dPages.ptr, dPos.ptr, dLen.ptr, dQpos.ptr};
  std::optional<Descriptor> dKs, dVs;
  if (cache.quantized()) {
    dKs.emplace(
        denseView(const_cast<void *>(cache.keyScales()), {numPages, 1, P, cache.keyGroups()}));
    dVs.emplace(
        denseView(const_cast<void *>(cache.valueScales()), {numPages, 1, P, cache.valueGroups()}));
    tables.push_back(dKs->ptr);
    tables.push_back(dVs->ptr);
  }
  // Budget retention: the kernel adds each slot's attention mass (from the
  // last scoringQueries(Nq) queries) to kv_mass; the q-tiles of a row run
  // in order, so the sums do not depend on the thread count.
  std::vector<float> mass;
  std::optional<Descriptor> dMass;
  std::vector<int32_t *> scalars;
  int32_t massRows = int32_t(cache.scoringQueries(Nq));
  if (cache.scoresSlots()) {
    mass.assign(size_t(rowsT * maxSlots), 0.f);
    dMass.emplace(denseView(mass.data(), {rowsT, maxSlots}));
    tables.push_back(dMass->ptr);
    scalars.push_back(&massRows);
  }
  void (*fn)(void **) = twin >= 0 ? decodeItemFns[size_t(twin)] : itemFn;
  if (a.splits < 0)
    return Status::error("splits must be >= 0 (0: automatic), got " + std::to_string(a.splits));
  if (cache.scoresSlots() && a.splits > 1)
    return Status::error("a budget cache's eviction scores need each row's whole softmax: launch "
                         "it with splits 0 or 1");
  if (!cache.scoresSlots()) {
    auto [splits, splitSlots] = cpuDecodeSplits(a.splits, B * Hkv * tilesQ, ct.maxLength, P);
    if (splits > 1)
      return runSplitDecode(fn, *plan, ct, splits, splitSlots, P, io, params.ptrs, tables, Hkv,
                            tilesQ, a.numThreads);
  }
  runItems(fn, io, qOffset, params.ptrs, tables, B, Hkv, tilesQ, a.numThreads, scalars,
           cache.scoresSlots());
  if (cache.scoresSlots())
    return cache.updateScores(a.sequences, mass, maxSlots, leading);
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// The cache's functions (append, move)
//===----------------------------------------------------------------------===//

Status attnc::rt::CpuKernel::writeCacheRows(const CachePools &pools, const DLTensor *k,
                                            const DLTensor *v, const DLTensor *rows) const {
  return runCacheRows(true, pools, k, v, rows);
}

Status attnc::rt::CpuKernel::moveCacheRows(const CachePools &pools, const DLTensor *rows) const {
  return runCacheRows(false, pools, nullptr, nullptr, rows);
}

Status attnc::rt::CpuKernel::runCacheRows(bool append, const CachePools &c, const DLTensor *k,
                                          const DLTensor *v, const DLTensor *rows) const {
  const KernelInfo &ki = kernelInfo;
  if (!ki.cache)
    return Status::error("kernel '" + ki.name + "' was not compiled for a KV cache");
  const DLDevice host{kDLCPU, 0};
  auto pairs = detail::denseTensor("cache rows", rows, "i32", {-1, 2}, host);
  if (!pairs)
    return pairs.error();
  auto pools = detail::cachePoolViews(ki, c, host);
  if (!pools)
    return pools.error();
  void (*fn)(void **) = moveFn;
  // New rows: dense, innermost D / Dv, of an input type the storage takes.
  std::optional<detail::TensorView> kNew, vNew;
  int64_t tokenRows = 0;
  if (append) {
    if (!k || !v)
      return Status::error("cache append: k and v are required");
    const CachePolicyInfo &sp = ki.cache->storagePolicy();
    std::string input, takes;
    fn = nullptr;
    for (size_t i = 0; i < std::size(kAppendInputs); ++i) {
      if (appendFns[i])
        takes += (takes.empty() ? "" : ", ") + std::string(kAppendInputs[i]);
      if (detail::sameType(k->dtype, kAppendInputs[i]))
        input = kAppendInputs[i], fn = appendFns[i];
    }
    if (!fn && !takes.empty())
      return Status::error("cache append: k must be " + takes + " (policy '" + sp.name +
                           "' stores " + sp.storage + ")");
    for (auto [what, t, dim, out] :
         {std::tuple{"k", k, ki.headDim, &kNew}, std::tuple{"v", v, ki.headDimV, &vNew}}) {
      if (!fn)
        break;
      if (t->ndim < 1 || !t->shape || t->shape[t->ndim - 1] != dim)
        return Status::error(std::string("cache append: ") + what + " must end in " +
                             std::to_string(dim) + " elements");
      auto view = detail::denseTensor(what, t, input,
                                      std::vector<int64_t>(t->shape, t->shape + t->ndim), host);
      if (!view)
        return view.error();
      *out = *view;
    }
    if (kNew && vNew)
      tokenRows = std::min(kNew->numel() / ki.headDim, vNew->numel() / ki.headDimV);
  }
  if (!fn)
    return Status::error("kernel '" + ki.name +
                         "' has no generated cache functions (an artifact of an older attnc?)");
  // The generated code does not check indices: every one is checked here.
  const int64_t count = pairs->shape[0];
  const auto *pair = reinterpret_cast<const int32_t *>(pairs->data);
  for (int64_t i = 0; i < count; ++i) {
    const int32_t from = pair[2 * i], to = pair[2 * i + 1];
    const int64_t fromLimit = append ? tokenRows : pools->rows;
    if (from < 0 || from >= fromLimit || to < 0 || to >= pools->rows)
      return Status::error("cache rows: entry " + std::to_string(i) + " (" + std::to_string(from) +
                           ", " + std::to_string(to) + ") is out of range (" +
                           (append ? std::to_string(tokenRows) + " token rows, " : std::string()) +
                           std::to_string(pools->rows) + " pool rows)");
  }
  if (count == 0)
    return Status::ok();
  // 2-D views: token rows and pool rows (page * P + slot).
  const int64_t per = ki.cache->storagePolicy().valuesPerByte();
  std::vector<Descriptor> descs;
  descs.reserve(7);
  if (append) {
    descs.emplace_back(denseView(kNew->data, {kNew->numel() / ki.headDim, ki.headDim}));
    descs.emplace_back(denseView(vNew->data, {vNew->numel() / ki.headDimV, ki.headDimV}));
  }
  descs.emplace_back(denseView(pools->kPool->data, {pools->rows, ki.headDim / per}));
  descs.emplace_back(denseView(pools->vPool->data, {pools->rows, ki.headDimV / per}));
  if (pools->quant) {
    descs.emplace_back(denseView(pools->kScales->data, {pools->rows, pools->kScales->shape[2]}));
    descs.emplace_back(denseView(pools->vScales->data, {pools->rows, pools->vScales->shape[2]}));
  }
  descs.emplace_back(*pairs);
  std::vector<void *> args;
  for (Descriptor &d : descs)
    args.push_back(&d.ptr);
  fn(args.data());
  return Status::ok();
}
