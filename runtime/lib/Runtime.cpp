//===- Runtime.cpp - attnc's light runtime (no MLIR / LLVM) ---------------===//

#include "attnc/Runtime/Runtime.h"

#include "Validate.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

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
} // namespace

Status attnc::rt::CpuKernel::launch(const LaunchArgs &a) const {
  auto plan = detail::planLaunch(kernelInfo, a, cpuRules());
  if (!plan)
    return plan.error();
  int64_t B = plan->B, Hq = plan->Hq, Nq = plan->Nq, Nk = plan->Nk, Dv = plan->Dv;
  std::vector<float> lseScratch;
  if (!plan->hasLse) {
    // The kernel always writes LSE; give it somewhere to go.
    lseScratch.resize(std::max<int64_t>(1, B * Hq * Nq));
    plan->lse.data = reinterpret_cast<char *>(lseScratch.data());
    plan->lse.shape = {B, Hq, Nq};
    plan->lse.strides = {Hq * Nq, Nq, 1};
  }

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
  std::vector<Descriptor> paramDescs;
  paramDescs.reserve(plan->params.size());
  std::vector<void *> paramPtrs;
  for (detail::ParamValue &p : plan->params) {
    if (p.info->isTensor) {
      paramDescs.emplace_back(p.tensor);
      paramPtrs.push_back(&paramDescs.back().ptr);
    } else {
      paramPtrs.push_back(&p.scalarBits);
    }
  }

  int64_t tilesQ = (Nq + kernelInfo.tileQ - 1) / kernelInfo.tileQ;
  int64_t items = B * Hq * tilesQ;
  int32_t qOffset = int32_t(plan->qOffset);
  void *ptrs[5] = {dQ.ptr, dK.ptr, dV.ptr, dO.ptr, dL.ptr};
  auto fn = itemFn;
  parallelFor(items, a.numThreads, [&](int64_t item) {
    // A head's query tiles are consecutive items, so its K/V stay in cache
    // from one item to the next (head-inner order measured 1.5x slower on
    // dense 4096/128, bench/NOTES.md); within a head the last tiles go first:
    // under causal-like masks they are the most work (longest first). The
    // order never changes what an item computes.
    int64_t bh = item / tilesQ;
    int64_t qtile = tilesQ - 1 - item % tilesQ, h = bh % Hq, b = bh / Hq;
    std::vector<void *> args;
    args.reserve(9 + paramPtrs.size());
    for (void *&p : ptrs)
      args.push_back(&p);
    args.push_back(&qOffset);
    args.insert(args.end(), paramPtrs.begin(), paramPtrs.end());
    args.push_back(&b);
    args.push_back(&h);
    args.push_back(&qtile);
    fn(args.data());
  });
  return Status::ok();
}
