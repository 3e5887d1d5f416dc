//===- Runtime.cpp - attnc's light runtime (no MLIR / LLVM) ---------------===//

#include "attnc/Runtime/Runtime.h"

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
// Metadata
//===----------------------------------------------------------------------===//

Expected<KernelInfo> attnc::rt::parseKernelInfo(const std::string &text) {
  KernelInfo info;
  std::istringstream in(text);
  std::string line;
  bool sawHeader = false;
  auto bad = [&](const std::string &why) {
    return Status::error("malformed kernel metadata (" + why + "): '" + line + "'");
  };
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    if (!(ls >> key))
      continue;
    if (key == "attnc-cpu-kernel") {
      int version = 0;
      if (!(ls >> version) || version != 1)
        return bad("unsupported version");
      sawHeader = true;
    } else if (key == "kernel") {
      ls >> info.name;
    } else if (key == "dtype") {
      ls >> info.dtype;
    } else if (key == "head_dim") {
      ls >> info.headDim;
    } else if (key == "head_dim_v") {
      ls >> info.headDimV;
    } else if (key == "tile_q") {
      ls >> info.tileQ;
    } else if (key == "tile_k") {
      ls >> info.tileK;
    } else if (key == "param") {
      ParamInfo p;
      std::string kind;
      if (!(ls >> p.name >> kind >> p.type))
        return bad("param");
      if (kind == "tensor") {
        p.isTensor = true;
        int rank = 0;
        if (!(ls >> rank) || rank <= 0 || rank > 8)
          return bad("tensor rank");
        p.dims.resize(rank);
        for (auto &d : p.dims)
          if (!(ls >> d))
            return bad("tensor dims");
      } else if (kind == "scalar") {
        std::string def;
        if (!(ls >> def))
          return bad("scalar default");
        if (def != "none")
          p.defaultValue = std::strtod(def.c_str(), nullptr);
      } else {
        return bad("param kind");
      }
      info.params.push_back(std::move(p));
    }
  }
  if (!sawHeader || info.name.empty() || info.headDim <= 0 || info.headDimV <= 0 ||
      info.tileQ <= 0)
    return Status::error("malformed kernel metadata: missing header, name, head_dim or tile_q");
  return info;
}

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
// Validation and launch
//===----------------------------------------------------------------------===//

namespace {
bool sameType(DLDataType t, const std::string &name) {
  if (t.lanes != 1)
    return false;
  if (name == "f32")
    return t.code == kDLFloat && t.bits == 32;
  if (name == "f64")
    return t.code == kDLFloat && t.bits == 64;
  if (name == "f16")
    return t.code == kDLFloat && t.bits == 16;
  if (name == "bf16")
    return t.code == kDLBfloat && t.bits == 16;
  if (name == "i1" || name == "i8")
    return (t.code == kDLInt || t.code == kDLUInt) && t.bits == 8;
  if (name == "i32")
    return t.code == kDLInt && t.bits == 32;
  if (name == "i64")
    return t.code == kDLInt && t.bits == 64;
  return false;
}

std::string typeString(DLDataType t) {
  std::string s = t.code == kDLFloat    ? "float"
                  : t.code == kDLBfloat ? "bfloat"
                  : t.code == kDLInt    ? "int"
                  : t.code == kDLUInt   ? "uint"
                                        : "code" + std::to_string(int(t.code));
  s += std::to_string(int(t.bits));
  if (t.lanes != 1)
    s += "x" + std::to_string(int(t.lanes));
  return s;
}

std::string shapeString(const DLTensor &t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i)
    s += (i ? "," : "") + std::to_string(t.shape[i]);
  return s + "]";
}

/// A memref descriptor (allocated, aligned, offset, sizes[r], strides[r]).
struct Descriptor {
  std::vector<int64_t> words;
  void *ptr = nullptr; // what the C interface takes: a pointer to the words
};

/// Common checks of one tensor argument; fills its descriptor.
Status checkTensor(const char *what, const DLTensor *t, int rank, const std::string &dtype,
                   Descriptor &desc) {
  std::string w = what;
  if (!t)
    return Status::error(w + ": tensor is null");
  if (t->device.device_type != kDLCPU)
    return Status::error(w + ": device type " + std::to_string(int(t->device.device_type)) +
                         " is not kDLCPU (the CPU kernel reads host memory)");
  if (t->ndim != rank)
    return Status::error(w + ": expected rank " + std::to_string(rank) + ", got rank " +
                         std::to_string(t->ndim));
  if (!t->shape)
    return Status::error(w + ": shape is null");
  if (!sameType(t->dtype, dtype))
    return Status::error(w + ": expected dtype " + dtype + ", got " + typeString(t->dtype));
  int64_t numel = 1;
  for (int i = 0; i < rank; ++i) {
    if (t->shape[i] < 0)
      return Status::error(w + ": negative extent in shape " + shapeString(*t));
    if (t->shape[i] > 0 && numel > std::numeric_limits<int32_t>::max() / t->shape[i] * 1024)
      return Status::error(w + ": shape " + shapeString(*t) + " is too large");
    numel *= t->shape[i];
  }
  if (!t->data && numel > 0)
    return Status::error(w + ": data pointer is null");
  size_t elemBytes = std::max(1, t->dtype.bits / 8);
  auto *base = static_cast<char *>(t->data) + t->byte_offset;
  if (reinterpret_cast<uintptr_t>(base) % elemBytes)
    return Status::error(w + ": data + byte_offset is not aligned to the element size");
  std::vector<int64_t> strides(rank);
  int64_t dense = 1;
  for (int i = rank - 1; i >= 0; --i) {
    strides[i] = t->strides ? t->strides[i] : dense;
    dense *= std::max<int64_t>(t->shape[i], 1);
    if (strides[i] < 0)
      return Status::error(w + ": negative strides are not supported");
  }
  desc.words.assign({int64_t(reinterpret_cast<intptr_t>(base)),
                     int64_t(reinterpret_cast<intptr_t>(base)), 0});
  desc.words.insert(desc.words.end(), t->shape, t->shape + rank);
  desc.words.insert(desc.words.end(), strides.begin(), strides.end());
  desc.ptr = desc.words.data();
  return Status::ok();
}

/// The kernel's memref types fix the innermost strides: rows are dense.
Status checkInnerStrides(const char *what, const Descriptor &d, int rank, int64_t rowLen) {
  const int64_t *strides = d.words.data() + 3 + rank;
  const int64_t *sizes = d.words.data() + 3;
  bool ok = strides[rank - 1] == 1 || sizes[rank - 1] <= 1;
  if (rowLen > 0)
    ok = ok && (strides[rank - 2] == rowLen || sizes[rank - 2] <= 1);
  if (!ok)
    return Status::error(std::string(what) +
                         ": unsupported strides; the innermost dimension must be "
                         "contiguous" +
                         (rowLen > 0 ? " and rows packed (stride of dim " +
                                           std::to_string(rank - 2) + " == " +
                                           std::to_string(rowLen) + ")"
                                     : std::string()));
  return Status::ok();
}

bool isDense(const DLTensor &t) {
  if (!t.strides)
    return true;
  int64_t dense = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    if (t.shape[i] > 1 && t.strides[i] != dense)
      return false;
    dense *= t.shape[i];
  }
  return true;
}
} // namespace

Status attnc::rt::CpuKernel::launch(const LaunchArgs &a) const {
  const KernelInfo &ki = kernelInfo;
  Descriptor dQ, dK, dV, dO, dL;
  if (Status s = checkTensor("q", a.q, 4, ki.dtype, dQ); !s)
    return s;
  if (Status s = checkTensor("k", a.k, 4, ki.dtype, dK); !s)
    return s;
  if (Status s = checkTensor("v", a.v, 4, ki.dtype, dV); !s)
    return s;
  if (Status s = checkTensor("o", a.o, 4, "f32", dO); !s)
    return s;
  int64_t B = a.q->shape[0], Hq = a.q->shape[1], Nq = a.q->shape[2], D = a.q->shape[3];
  int64_t Hkv = a.k->shape[1], Nk = a.k->shape[2], Dv = a.v->shape[3];
  if (D != ki.headDim)
    return Status::error("q: head dim " + std::to_string(D) + " but kernel '" + ki.name +
                         "' was compiled for " + std::to_string(ki.headDim));
  if (a.k->shape[3] != ki.headDim)
    return Status::error("k: head dim " + std::to_string(a.k->shape[3]) + " but kernel '" +
                         ki.name + "' was compiled for " + std::to_string(ki.headDim));
  if (Dv != ki.headDimV)
    return Status::error("v: head dim " + std::to_string(Dv) + " but kernel '" + ki.name +
                         "' was compiled for Dv=" + std::to_string(ki.headDimV));
  if (a.k->shape[0] != B || a.v->shape[0] != B || a.o->shape[0] != B)
    return Status::error("batch size mismatch: q " + shapeString(*a.q) + ", k " +
                         shapeString(*a.k) + ", v " + shapeString(*a.v) + ", o " +
                         shapeString(*a.o));
  if (a.v->shape[1] != Hkv || a.v->shape[2] != Nk)
    return Status::error("k " + shapeString(*a.k) + " and v " + shapeString(*a.v) +
                         " disagree on [B,Hkv,Nk]");
  if (Hkv <= 0 || Hq % Hkv != 0)
    return Status::error("query heads (" + std::to_string(Hq) +
                         ") must be a multiple of kv heads (" + std::to_string(Hkv) + ")");
  if (a.o->shape[1] != Hq || a.o->shape[2] != Nq || a.o->shape[3] != Dv)
    return Status::error("o: expected shape [" + std::to_string(B) + "," + std::to_string(Hq) +
                         "," + std::to_string(Nq) + "," + std::to_string(Dv) + "], got " +
                         shapeString(*a.o));
  if (Status s = checkInnerStrides("q", dQ, 4, D); !s)
    return s;
  if (Status s = checkInnerStrides("k", dK, 4, D); !s)
    return s;
  if (Status s = checkInnerStrides("v", dV, 4, Dv); !s)
    return s;
  if (Status s = checkInnerStrides("o", dO, 4, Dv); !s)
    return s;
  std::vector<float> lseScratch;
  if (a.lse) {
    if (Status s = checkTensor("lse", a.lse, 3, "f32", dL); !s)
      return s;
    if (a.lse->shape[0] != B || a.lse->shape[1] != Hq || a.lse->shape[2] != Nq)
      return Status::error("lse: expected shape [" + std::to_string(B) + "," +
                           std::to_string(Hq) + "," + std::to_string(Nq) + "], got " +
                           shapeString(*a.lse));
    if (Status s = checkInnerStrides("lse", dL, 3, 0); !s)
      return s;
  } else {
    // The kernel always writes LSE; give it somewhere to go.
    lseScratch.resize(std::max<int64_t>(1, B * Hq * Nq));
    DLTensor t{};
    int64_t shape[3] = {B, Hq, Nq};
    t.data = lseScratch.data();
    t.device = {kDLCPU, 0};
    t.ndim = 3;
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape;
    (void)checkTensor("lse", &t, 3, "f32", dL);
  }
  if (a.qOffset < 0 || a.qOffset + Nq > std::numeric_limits<int32_t>::max())
    return Status::error("q_offset " + std::to_string(a.qOffset) +
                         " is negative or q_offset + Nq overflows int32");

  // Parameters, in kernel order.
  for (auto &[name, _] : a.params)
    if (std::none_of(ki.params.begin(), ki.params.end(),
                     [&](const ParamInfo &p) { return p.name == name; })) {
      std::string known;
      for (auto &p : ki.params)
        known += (known.empty() ? "" : ", ") + p.name;
      return Status::error("unknown parameter '" + name + "' (kernel '" + ki.name + "' takes " +
                           (known.empty() ? "none" : known) + ")");
    }
  int64_t dimN = std::max(a.qOffset + Nq, Nk);
  auto dimValue = [&](const std::string &sym) -> int64_t {
    if (sym == "B")
      return B;
    if (sym == "Hq")
      return Hq;
    if (sym == "Hkv")
      return Hkv;
    if (sym == "Nq")
      return Nq;
    if (sym == "Nk")
      return Nk;
    if (sym == "N")
      return dimN;
    if (sym == "D")
      return D;
    if (sym == "Dv")
      return Dv;
    if (sym == "?")
      return -1;
    return std::strtoll(sym.c_str(), nullptr, 10);
  };
  std::vector<Descriptor> paramDescs(ki.params.size());
  std::vector<int64_t> scalarWords(ki.params.size(), 0);
  std::vector<void *> paramPtrs(ki.params.size());
  for (size_t i = 0; i < ki.params.size(); ++i) {
    const ParamInfo &p = ki.params[i];
    auto it = a.params.find(p.name);
    if (p.isTensor) {
      std::string what = "parameter '" + p.name + "'";
      if (it == a.params.end())
        return Status::error("tensor " + what + " is not bound");
      if (!it->second.isTensor)
        return Status::error(what + " is a tensor, but a scalar was given");
      const DLTensor *t = it->second.tensor;
      if (Status s = checkTensor(what.c_str(), t, int(p.dims.size()), p.type, paramDescs[i]); !s)
        return s;
      for (size_t d = 0; d < p.dims.size(); ++d) {
        int64_t want = dimValue(p.dims[d]);
        int64_t got = t->shape[d];
        // Indices into N-sized tensors are positions up to N-1, so a longer
        // table is as safe as an exact one.
        bool ok = want < 0 ? got > 0 : p.dims[d] == "N" ? got >= want : got == want;
        if (!ok)
          return Status::error(what + ": dimension " + std::to_string(d) + " is " +
                               std::to_string(got) + ", expected " + p.dims[d] +
                               (want >= 0 ? " = " + std::to_string(want) : std::string()) +
                               (p.dims[d] == "N" ? " or more" : "") + " (shape " +
                               shapeString(*t) + ")");
      }
      if (!isDense(*t))
        return Status::error(what + ": must be contiguous (row-major)");
      paramPtrs[i] = &paramDescs[i].ptr;
      continue;
    }
    double v;
    if (it != a.params.end()) {
      if (it->second.isTensor)
        return Status::error("parameter '" + p.name + "' is a scalar (" + p.type +
                             "), but a tensor was given");
      v = it->second.scalar;
    } else if (p.defaultValue) {
      v = *p.defaultValue;
    } else {
      return Status::error("scalar parameter '" + p.name + "' is not bound and has no default");
    }
    char *dst = reinterpret_cast<char *>(&scalarWords[i]);
    bool isInt = p.type[0] == 'i';
    if (isInt && (v != std::floor(v) || std::isnan(v)))
      return Status::error("parameter '" + p.name + "' is " + p.type + ", got " +
                           std::to_string(v));
    if (p.type == "f32") {
      float f = float(v);
      std::memcpy(dst, &f, 4);
    } else if (p.type == "f64") {
      std::memcpy(dst, &v, 8);
    } else if (p.type == "i32") {
      if (v < INT32_MIN || v > INT32_MAX)
        return Status::error("parameter '" + p.name + "' is out of the i32 range");
      int32_t x = int32_t(v);
      std::memcpy(dst, &x, 4);
    } else if (p.type == "i64") {
      int64_t x = int64_t(v);
      std::memcpy(dst, &x, 8);
    } else if (p.type == "i1" || p.type == "i8") {
      *dst = p.type == "i1" ? v != 0 : int8_t(v);
    } else {
      return Status::error("parameter '" + p.name + "' has unsupported type " + p.type);
    }
    paramPtrs[i] = dst;
  }

  if (Nk == 0) {
    // No keys: every row is fully masked (O = 0, LSE = -inf, DESIGN.md).
    // Handled here because the kernel clamps key indices to Nk - 1.
    const int64_t *os = dO.words.data() + 7, *ls = dL.words.data() + 6;
    auto *o = reinterpret_cast<float *>(dO.words[1]);
    auto *l = reinterpret_cast<float *>(dL.words[1]);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t i = 0; i < Nq; ++i) {
          for (int64_t d = 0; d < Dv; ++d)
            o[b * os[0] + h * os[1] + i * os[2] + d * os[3]] = 0.f;
          l[b * ls[0] + h * ls[1] + i * ls[2]] = -std::numeric_limits<float>::infinity();
        }
    return Status::ok();
  }

  int64_t tilesQ = (Nq + ki.tileQ - 1) / ki.tileQ;
  int64_t items = B * Hq * tilesQ;
  int32_t qOffset = int32_t(a.qOffset);
  void *ptrs[5] = {dQ.ptr, dK.ptr, dV.ptr, dO.ptr, dL.ptr};
  auto fn = itemFn;
  parallelFor(items, a.numThreads, [&](int64_t item) {
    // Last query tiles first: under causal-like masks they are the most
    // work, so handing them out early balances the pool (longest first).
    // The order never changes what an item computes.
    int64_t bh = item % (B * Hq);
    int64_t qtile = tilesQ - 1 - item / (B * Hq), h = bh % Hq, b = bh / Hq;
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
