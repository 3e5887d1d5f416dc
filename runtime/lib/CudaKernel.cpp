//===- CudaKernel.cpp - Loading and launching CUDA kernels ----------------===//

#include "CudaDriver.h"
#include "Validate.h"
#include "attnc/Runtime/Cuda.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

using namespace attnc::rt;
using namespace attnc::rt::cuda;

//===----------------------------------------------------------------------===//
// Architectures
//===----------------------------------------------------------------------===//

bool attnc::rt::archRunsOn(const std::string &kernelArch, int cc) {
  if (kernelArch.rfind("sm_", 0) != 0)
    return false;
  size_t i = 3;
  int version = 0;
  while (i < kernelArch.size() && std::isdigit(static_cast<unsigned char>(kernelArch[i])))
    version = version * 10 + (kernelArch[i++] - '0');
  std::string suffix = kernelArch.substr(i);
  if (i == 3 || suffix.size() > 1)
    return false;
  if (suffix == "a")
    return cc == version;
  if (suffix == "f")
    return cc / 10 == version / 10 && cc >= version;
  return suffix.empty() && cc >= version;
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

struct CudaKernel::Impl {
  CudaKernelInfo info;
  std::string image;
  detail::TargetRules rules;

  struct Loaded {
    CUcontext ctx = nullptr;
    CUmodule module = nullptr;
    CUfunction function = nullptr;
    CUfunction merge = nullptr;                  // KV-cache kernels: attnc_<K>_merge
    CUfunction mass = nullptr;                   // budget policies: attnc_<K>_mass
    CUfunction victims = nullptr;                // budget policies: attnc_<K>_victims
    CUfunction pool = nullptr;                   // snapkv budgets: attnc_<K>_pool
    CUfunction append = nullptr, move = nullptr; // KV-cache kernels: cache updates
    std::vector<CUfunction> twins;               // decode twins, as info.decodeTwins
    CUfunction prefill = nullptr;                // attnc_<K>_prefill (info.cachePrefill)
  };
  std::mutex mutex;
  std::vector<Loaded> loaded; // one per context the kernel ran in

  /// The kernel's functions in `ctx` (current, on `device`): loads the
  /// module there on first use.
  Expected<Loaded> functions(const Driver &d, CUcontext ctx, int device);
  /// Makes a context of `device` current in `scope` (for as long as it
  /// lives) and returns the kernel's functions there.
  Expected<Loaded> enter(const Driver &d, ScopedDeviceContext &scope, int device) {
    if (Status s = scope.enter(d, device); !s)
      return s;
    return functions(d, scope.context(), device);
  }
  Expected<CUfunction> function(const Driver &d, CUcontext ctx, int device) {
    auto l = functions(d, ctx, device);
    if (!l)
      return l.error();
    return l->function;
  }
  ~Impl();
};

Expected<CudaKernel::Impl::Loaded> CudaKernel::Impl::functions(const Driver &d, CUcontext ctx,
                                                               int device) {
  std::lock_guard<std::mutex> lock(mutex);
  for (const Loaded &l : loaded)
    if (l.ctx == ctx)
      return l;
  auto cc = computeCapability(d, device);
  if (!cc)
    return cc.error();
  if (!archRunsOn(info.arch, *cc))
    return Status::error("cuda: kernel '" + info.name + "' was compiled for " + info.arch +
                         ", but device " + std::to_string(device) + " is " +
                         archForCapability(*cc) + " (compute capability " +
                         std::to_string(*cc / 10) + "." + std::to_string(*cc % 10) + ")");
  if (info.maxSharedBytes() > kDefaultDynamicSharedBytes) {
    auto optin = deviceAttribute(d, device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    if (!optin)
      return optin.error();
    if (info.maxSharedBytes() > *optin)
      return Status::error("cuda: kernel '" + info.name + "' needs " +
                           std::to_string(info.maxSharedBytes()) +
                           " bytes of shared memory per block; device " + std::to_string(device) +
                           " allows " + std::to_string(*optin));
  }
  Loaded l;
  l.ctx = ctx;
  // The JIT's error log says which PTX line is at fault.
  char log[8192] = {0};
  int options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {log, reinterpret_cast<void *>(uintptr_t(sizeof(log)))};
  if (Status s = ATTNC_CU(d, cuModuleLoadDataEx, &l.module, image.c_str(), 2, options, values);
      !s) {
    log[sizeof(log) - 1] = 0;
    return Status::error(s.message() + " (kernel '" + info.name + "', " + info.arch + ")" +
                         (log[0] ? std::string(":\n") + log : std::string()));
  }
  if (Status s = ATTNC_CU(d, cuModuleGetFunction, &l.function, l.module, info.entry.c_str()); !s) {
    (void)d.cuModuleUnload(l.module);
    return Status::error(s.message() + " (no entry '" + info.entry + "' in the image of kernel '" +
                         info.name + "')");
  }
  if (info.cache) {
    std::vector<std::pair<CUfunction *, std::string>> extra = {
        {&l.merge, "_merge"}, {&l.append, "_append"}, {&l.move, "_move"}};
    if (info.cache->scoresSlots()) {
      extra.emplace_back(&l.mass, "_mass");
      extra.emplace_back(&l.victims, "_victims");
      if (info.cache->poolsScores())
        extra.emplace_back(&l.pool, "_pool");
    }
    l.twins.resize(info.decodeTwins.size());
    for (size_t i = 0; i < info.decodeTwins.size(); ++i)
      extra.emplace_back(&l.twins[i], "_q" + std::to_string(info.decodeTwins[i].blockQ));
    if (info.cachePrefill.blockQ)
      extra.emplace_back(&l.prefill, "_prefill");
    for (auto &[fn, suffix] : extra) {
      std::string name = info.entry + suffix;
      if (Status s = ATTNC_CU(d, cuModuleGetFunction, fn, l.module, name.c_str()); !s) {
        (void)d.cuModuleUnload(l.module);
        return Status::error(s.message() + " (no entry '" + name + "' in the image of KV-cache " +
                             "kernel '" + info.name + "')");
      }
    }
  }
  std::vector<std::pair<CUfunction, int64_t>> sized = {{l.function, info.sharedBytes},
                                                       {l.prefill, info.cachePrefill.sharedBytes}};
  for (size_t i = 0; i < l.twins.size(); ++i)
    sized.emplace_back(l.twins[i], info.decodeTwins[i].sharedBytes);
  for (auto [fn, bytes] : sized) {
    if (!fn || bytes <= kDefaultDynamicSharedBytes)
      continue;
    if (Status s = ATTNC_CU(d, cuFuncSetAttribute, fn,
                            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(bytes));
        !s) {
      (void)d.cuModuleUnload(l.module);
      return s;
    }
  }
  loaded.push_back(l);
  return l;
}

CudaKernel::Impl::~Impl() {
  auto d = driver();
  if (!d)
    return;
  for (const Loaded &l : loaded) {
    // cuModuleUnload acts on the current context: make the module's current.
    CUcontext previous = nullptr;
    if ((*d)->cuCtxGetCurrent(&previous) != CUDA_SUCCESS)
      continue;
    if ((*d)->cuCtxSetCurrent(l.ctx) == CUDA_SUCCESS) {
      (void)(*d)->cuModuleUnload(l.module);
      (void)(*d)->cuCtxSetCurrent(previous);
    }
  }
}

CudaKernel::CudaKernel() : impl(new Impl()) {}
CudaKernel::~CudaKernel() = default;
const CudaKernelInfo &CudaKernel::info() const { return impl->info; }

Expected<std::shared_ptr<CudaKernel>> CudaKernel::load(const std::string &image,
                                                       const std::string &metadata) {
  auto info = parseCudaKernelInfo(metadata);
  if (!info)
    return info.error();
  if (image.empty())
    return Status::error("cuda: kernel '" + info->name + "': the PTX/cubin image is empty");
  std::shared_ptr<CudaKernel> kernel(new CudaKernel());
  Impl &k = *kernel->impl;
  k.info = std::move(*info);
  k.image = image;
  k.rules.device = kDLCUDA;
  k.rules.deviceName = "kDLCUDA";
  k.rules.deviceReason = "the CUDA kernel reads device memory";
  k.rules.outDtype = k.info.dtype;
  k.rules.packedRows = false;
  k.rules.align = k.info.align;
  k.rules.int32Sizes = true;

  auto d = driver();
  if (!d)
    return d.error();
  // Load now, so that a bad image or a wrong arch is reported here.
  int device = 0;
  CUcontext current = nullptr;
  if (Status s = ATTNC_CU(**d, cuCtxGetCurrent, &current); !s)
    return s;
  if (current) {
    CUdevice dev = 0;
    if (Status s = ATTNC_CU(**d, cuCtxGetDevice, &dev); !s)
      return s;
    device = dev;
  }
  ScopedDeviceContext scope;
  if (Status s = scope.enter(**d, device); !s)
    return s;
  if (auto fn = k.function(**d, scope.context(), device); !fn)
    return fn.error();
  return kernel;
}

//===----------------------------------------------------------------------===//
// Launch
//===----------------------------------------------------------------------===//

namespace {
/// `view` must be device memory of `device` (or managed memory).
Status checkPointer(const Driver &d, const char *what, const detail::TensorView &view, int device) {
  if (view.numel() == 0)
    return Status::ok();
  unsigned memoryType = 0;
  int ordinal = -1;
  int attributes[] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
  void *data[] = {&memoryType, &ordinal};
  if (Status s = ATTNC_CU(d, cuPointerGetAttributes, 2, attributes, data,
                          CUdeviceptr(reinterpret_cast<uintptr_t>(view.data)));
      !s)
    return Status::error(std::string(what) + ": " + s.message());
  if (memoryType == CU_MEMORYTYPE_HOST)
    return Status::error(std::string(what) +
                         ": points to host memory; the CUDA kernel needs device memory");
  if (memoryType != CU_MEMORYTYPE_DEVICE && memoryType != CU_MEMORYTYPE_UNIFIED)
    return Status::error(std::string(what) +
                         ": is not memory the CUDA driver knows (not a device allocation)");
  if (ordinal != device)
    return Status::error(std::string(what) + ": the memory is on device " +
                         std::to_string(ordinal) + ", but the tensor says device " +
                         std::to_string(device));
  return Status::ok();
}

/// checkPointer on `tensors` (LSE only when the plan has one) and on the
/// plan's tensor parameters.
Status
checkPointers(const Driver &d, const detail::LaunchPlan &p,
              std::initializer_list<std::pair<const char *, const detail::TensorView *>> tensors,
              int device) {
  for (auto [what, view] : tensors)
    if (view != &p.lse || p.hasLse)
      if (Status s = checkPointer(d, what, *view, device); !s)
        return s;
  for (const detail::ParamValue &v : p.params)
    if (v.info->isTensor)
      if (Status s =
              checkPointer(d, ("parameter '" + v.info->name + "'").c_str(), v.tensor, device);
          !s)
        return s;
  return Status::ok();
}

/// Sets every element of `view` (innermost stride 1) to the 16- or 32-bit
/// `word`: one memset per run of dimensions that collapse into a 2-D
/// region (pitch = the stride of the second-innermost kept dimension).
Status fillView(const Driver &d, const detail::TensorView &view, unsigned elemBytes, uint32_t word,
                CUstream stream) {
  if (view.numel() == 0)
    return Status::ok();
  // Drop extent-1 dimensions, then merge neighbours that are contiguous.
  std::vector<int64_t> shape, strides;
  for (size_t i = 0; i < view.shape.size(); ++i)
    if (view.shape[i] != 1) {
      shape.push_back(view.shape[i]);
      strides.push_back(view.strides[i]);
    }
  if (shape.empty() || strides.back() != 1) {
    shape.push_back(1);
    strides.push_back(1);
  }
  for (size_t i = shape.size() - 1; i > 0; --i)
    if (strides[i - 1] == shape[i] * strides[i]) {
      shape[i - 1] *= shape[i];
      strides[i - 1] = strides[i];
      shape.erase(shape.begin() + i);
      strides.erase(strides.begin() + i);
    }
  size_t r = shape.size();
  int64_t width = shape[r - 1], height = r >= 2 ? shape[r - 2] : 1;
  size_t pitch = size_t(r >= 2 ? strides[r - 2] : width) * elemBytes;
  int64_t outer = 1;
  for (size_t i = 0; i + 2 < r; ++i)
    outer *= shape[i];
  for (int64_t o = 0; o < outer; ++o) {
    int64_t offset = 0;
    for (int64_t i = int64_t(r) - 3, rest = o; i >= 0; --i) {
      offset += (rest % shape[i]) * strides[i];
      rest /= shape[i];
    }
    auto ptr = CUdeviceptr(reinterpret_cast<uintptr_t>(view.data + offset * elemBytes));
    Status s = Status::ok();
    if (height == 1)
      s = elemBytes == 2 ? ATTNC_CU(d, cuMemsetD16Async, ptr, uint16_t(word), width, stream)
                         : ATTNC_CU(d, cuMemsetD32Async, ptr, word, width, stream);
    else
      s = elemBytes == 2
              ? ATTNC_CU(d, cuMemsetD2D16Async, ptr, pitch, uint16_t(word), width, height, stream)
              : ATTNC_CU(d, cuMemsetD2D32Async, ptr, pitch, word, width, height, stream);
    if (!s)
      return s;
  }
  return Status::ok();
}

/// Kernel arguments in ABI order (docs/cuda.md), one 8-byte slot each, and
/// the pointer array cuLaunchKernel takes.
struct KernelArgs {
  std::vector<uint64_t> slots;
  template <typename T> void push(const T &value) {
    static_assert(sizeof(value) <= sizeof(uint64_t));
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(value));
    slots.push_back(bits);
  }
  /// The runtime parameters: a scalar as its type's bytes, a tensor as its
  /// address and i32 extents.
  void pushParams(const std::vector<detail::ParamValue> &params) {
    for (const detail::ParamValue &v : params) {
      if (!v.info->isTensor) {
        slots.push_back(v.scalarBits);
        continue;
      }
      push(address(v.tensor));
      for (int64_t extent : v.tensor.shape)
        push(int32_t(extent));
    }
  }
  std::vector<void *> pointers() {
    std::vector<void *> ptrs(slots.size());
    for (size_t i = 0; i < slots.size(); ++i)
      ptrs[i] = &slots[i];
    return ptrs;
  }
  static uint64_t address(const detail::TensorView &t) { return uint64_t(uintptr_t(t.data)); }
  /// The prefill kernel's fixed arguments in ABI order (docs/cuda.md) for
  /// `p`, with these Nk and q_offset: Q, K, V, O, LSE; sizes; strides;
  /// write_lse.
  void pushPrefill(const detail::LaunchPlan &p, int64_t Nk, int64_t qOffset) {
    for (const detail::TensorView *t : {&p.q, &p.k, &p.v, &p.o})
      push(address(*t));
    push(p.hasLse ? address(p.lse) : uint64_t(0));
    for (int64_t x : {p.B, p.Hq, p.Hkv, p.Nq, Nk, qOffset})
      push(int32_t(x));
    for (const detail::TensorView *t : {&p.q, &p.k, &p.v, &p.o})
      for (int i = 0; i < 3; ++i)
        push(int64_t(t->strides[i]));
    push(int64_t(p.hasLse ? p.lse.strides[0] : 0));
    push(int64_t(p.hasLse ? p.lse.strides[1] : 0));
    push(int32_t(p.hasLse ? 1 : 0));
  }
};
} // namespace

Status CudaKernel::launch(const LaunchArgs &args, void *stream) const {
  const CudaKernelInfo &ki = impl->info;
  auto plan = detail::planLaunch(ki, args, impl->rules);
  if (!plan)
    return plan.error();
  const detail::LaunchPlan &p = *plan;
  if (p.B == 0 || p.Hq == 0 || p.Nq == 0)
    return Status::ok(); // no output element
  int64_t tilesQ = (p.Nq + ki.blockQ - 1) / ki.blockQ;
  if (p.Hq > 65535 || p.B > 65535)
    return Status::error("cuda: grid (" + std::to_string(tilesQ) + ", " + std::to_string(p.Hq) +
                         ", " + std::to_string(p.B) +
                         ") exceeds the launch limits (Hq and B at most 65535)");

  auto d = driver();
  if (!d)
    return d.error();
  const Driver &drv = **d;
  int device = p.q.device;
  if (Status s = checkPointers(
          drv, p, {{"q", &p.q}, {"k", &p.k}, {"v", &p.v}, {"o", &p.o}, {"lse", &p.lse}}, device);
      !s)
    return s;

  ScopedDeviceContext scope;
  if (Status s = scope.enter(drv, device); !s)
    return s;
  auto cuStream = static_cast<CUstream>(stream);

  if (p.Nk == 0) {
    // No keys: every row is fully masked (O = 0, LSE = -inf, DESIGN.md).
    // bf16 and f16 zero are both all-zero bits; -inf in f32 is 0xff800000.
    if (Status s = fillView(drv, p.o, 2, 0, cuStream); !s)
      return s;
    if (p.hasLse)
      if (Status s = fillView(drv, p.lse, 4, 0xff800000u, cuStream); !s)
        return s;
    return Status::ok();
  }

  auto fn = impl->function(drv, scope.context(), device);
  if (!fn)
    return fn.error();

  // Arguments in ABI order (docs/cuda.md).
  KernelArgs abi;
  abi.pushPrefill(p, p.Nk, p.qOffset);
  abi.pushParams(p.params);
  std::vector<void *> params = abi.pointers();

  return ATTNC_CU(drv, cuLaunchKernel, *fn, unsigned(tilesQ), unsigned(p.Hq), unsigned(p.B),
                  unsigned(ki.threads), 1u, 1u, unsigned(ki.sharedBytes), cuStream, params.data(),
                  nullptr);
}

//===----------------------------------------------------------------------===//
// Decode over a device KV cache
//===----------------------------------------------------------------------===//

namespace {
/// A dense row-major tensor on kDLCUDA `device` (detail::denseTensor).
Expected<detail::TensorView> denseDeviceTensor(const char *what, const DLTensor *t,
                                               const std::string &dtype, std::vector<int64_t> shape,
                                               int device) {
  return detail::denseTensor(what, t, dtype, std::move(shape), {kDLCUDA, device});
}
} // namespace

namespace {
/// A cache launch's pools and scales (detail::cachePoolViews) and their
/// slot metadata (CudaCacheView::slotScores / slotPositions: none, or
/// both, f32 / i32 [pages, P] like the pools), on `device`.
struct SlotMetadata {
  std::optional<detail::TensorView> scores, positions;
};
struct CacheViews {
  detail::PoolViews pools;
  SlotMetadata meta;
};
Expected<CacheViews> cacheViews(const CudaKernelInfo &ki, const CudaCacheView &c, int device) {
  auto pools = detail::cachePoolViews(ki, c, {kDLCUDA, device});
  if (!pools)
    return pools.error();
  CacheViews v{*pools, {}};
  if (!c.slotScores && !c.slotPositions)
    return v;
  if (!c.slotScores || !c.slotPositions)
    return Status::error("slot scores and slot positions go together (give both or neither)");
  const int64_t pages = v.pools.rows / std::max<int64_t>(v.pools.P, 1);
  auto scores = denseDeviceTensor("slot scores", c.slotScores, "f32", {pages, v.pools.P}, device);
  if (!scores)
    return scores.error();
  auto positions =
      denseDeviceTensor("slot positions", c.slotPositions, "i32", {pages, v.pools.P}, device);
  if (!positions)
    return positions.error();
  v.meta.scores = *scores, v.meta.positions = *positions;
  return v;
}

/// checkPointer on each view that is given (absent ones skipped).
Status checkGivenPointers(
    const Driver &d,
    std::initializer_list<std::pair<const char *, const std::optional<detail::TensorView> *>> views,
    int device) {
  for (auto [what, view] : views)
    if (*view)
      if (Status s = checkPointer(d, what, **view, device); !s)
        return s;
  return Status::ok();
}
} // namespace

Status CudaKernel::writeCacheRows(const CudaCacheView &pools, const DLTensor *k, const DLTensor *v,
                                  const DLTensor *rows, void *stream) const {
  return launchCacheRows(true, pools, k, v, rows, stream);
}

Status CudaKernel::moveCacheRows(const CudaCacheView &pools, const DLTensor *rows,
                                 void *stream) const {
  return launchCacheRows(false, pools, nullptr, nullptr, rows, stream);
}

Status CudaKernel::launchCacheRows(bool append, const CudaCacheView &c, const DLTensor *k,
                                   const DLTensor *v, const DLTensor *rows, void *stream) const {
  const CudaKernelInfo &ki = impl->info;
  if (!ki.cache)
    return Status::error("kernel '" + ki.name + "' was not compiled for a KV cache");
  // Appends: (row, pool row, position); moves: (from, to).
  const int64_t width = append ? 3 : 2;
  if (!rows || rows->ndim != 2)
    return Status::error("cache rows: expected an i32 [count, " + std::to_string(width) +
                         "] tensor");
  const int device = rows->device.device_id;
  auto pairs = denseDeviceTensor("cache rows", rows, "i32", {-1, width}, device);
  if (!pairs)
    return pairs.error();
  auto views = cacheViews(ki, c, device);
  if (!views)
    return views.error();
  detail::PoolViews *pools = &views->pools;
  const SlotMetadata *meta = &views->meta;
  // New rows: dense, innermost D / Dv, the kernel's dtype.
  std::optional<detail::TensorView> kNew, vNew;
  if (append) {
    for (auto [what, t, dim, out] :
         {std::tuple{"k", k, ki.headDim, &kNew}, std::tuple{"v", v, ki.headDimV, &vNew}}) {
      if (!t || t->ndim < 1 || t->shape[t->ndim - 1] != dim)
        return Status::error(std::string("cache append: ") + what + " must end in " +
                             std::to_string(dim) + " elements");
      std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
      auto view = denseDeviceTensor(what, t, ki.dtype, shape, device);
      if (!view)
        return view.error();
      *out = *view;
    }
  }
  const int64_t count = rows->shape[0];
  if (count == 0)
    return Status::ok();
  auto d = driver();
  if (!d)
    return d.error();
  const Driver &drv = **d;
  for (auto [what, view] : {std::pair{"cache rows", &*pairs},
                            {"key pool", &*pools->kPool},
                            {"value pool", &*pools->vPool}})
    if (Status s = checkPointer(drv, what, *view, device); !s)
      return s;
  if (Status s = checkGivenPointers(
          drv, {{"slot scores", &meta->scores}, {"slot positions", &meta->positions}}, device);
      !s)
    return s;
  ScopedDeviceContext scope;
  auto fns = impl->enter(drv, scope, device);
  if (!fns)
    return fns.error();
  KernelArgs abi;
  auto address = &KernelArgs::address;
  auto scale = [&](const std::optional<detail::TensorView> &t) {
    return t ? address(*t) : uint64_t(0);
  };
  // CacheUpdateKernels.h in the compiler.
  if (append) {
    abi.push(address(*kNew));
    abi.push(address(*vNew));
  }
  for (uint64_t ptr : {address(*pools->kPool), address(*pools->vPool), scale(pools->kScales),
                       scale(pools->vScales)})
    abi.push(ptr);
  auto pushMetadata = [&]() {
    abi.push(scale(meta->scores));
    abi.push(scale(meta->positions));
  };
  // Appends take the rows before the metadata, moves after.
  if (append) {
    abi.push(address(*pairs));
    pushMetadata();
  } else {
    pushMetadata();
    abi.push(address(*pairs));
  }
  abi.push(int32_t(count));
  auto params = abi.pointers();
  const unsigned blocks = unsigned((count + 3) / 4);
  return ATTNC_CU(drv, cuLaunchKernel, append ? fns->append : fns->move, blocks, 1u, 1u, 128u, 1u,
                  1u, 0u, static_cast<CUstream>(stream), params.data(), nullptr);
}

namespace {
/// Threads of a CTA of the cache's small kernels (victims, pool).
constexpr unsigned kSmallThreads = 128;
/// Launches one of a kernel's small cache kernels (`fn` of its loaded
/// functions, VictimsKernel.h / PoolKernel.h) on `device`: the pointers
/// checked, then passed in order, then the i32 `scalars`; a grid of
/// (gridX, gridY) CTAs of kSmallThreads, enqueued on `stream`.
template <typename Impl, typename Loaded>
Status launchCacheKernel(
    Impl &impl, int device, CUfunction Loaded::*fn,
    std::initializer_list<std::pair<const char *, const detail::TensorView *>> pointers,
    std::initializer_list<int64_t> scalars, unsigned gridX, unsigned gridY, void *stream) {
  auto d = driver();
  if (!d)
    return d.error();
  const Driver &drv = **d;
  for (auto [what, view] : pointers)
    if (Status s = checkPointer(drv, what, *view, device); !s)
      return s;
  ScopedDeviceContext scope;
  auto fns = impl.enter(drv, scope, device);
  if (!fns)
    return fns.error();
  KernelArgs abi;
  for (auto [what, view] : pointers)
    abi.push(KernelArgs::address(*view));
  for (int64_t v : scalars)
    abi.push(int32_t(v));
  auto params = abi.pointers();
  return ATTNC_CU(drv, cuLaunchKernel, (*fns).*fn, gridX, gridY, 1u, kSmallThreads, 1u, 1u, 0u,
                  static_cast<CUstream>(stream), params.data(), nullptr);
}
} // namespace

Status CudaKernel::chooseVictims(const CudaCacheView &c, const DLTensor *pages, DLTensor *requests,
                                 DLTensor *victims, void *stream) const {
  const CudaKernelInfo &ki = impl->info;
  if (!ki.cache || !ki.cache->scoresSlots())
    return Status::error("kernel '" + ki.name + "' keeps no budget: no victims to choose");
  if (!requests || requests->ndim != 2)
    return Status::error("victim requests: expected an i32 [count, 5] tensor");
  const int device = requests->device.device_id;
  auto req = denseDeviceTensor("victim requests", requests, "i32", {-1, 5}, device);
  if (!req)
    return req.error();
  auto pageList = denseDeviceTensor("victim pages", pages, "i32", {-1}, device);
  if (!pageList)
    return pageList.error();
  auto out = denseDeviceTensor("victims", victims, "i32", {-1}, device);
  if (!out)
    return out.error();
  auto views = cacheViews(ki, c, device);
  if (!views)
    return views.error();
  detail::PoolViews *pools = &views->pools;
  const SlotMetadata *meta = &views->meta;
  if (!meta->scores)
    return Status::error("chooseVictims: the pools carry no slot scores and positions");
  const int64_t count = requests->shape[0];
  if (count == 0)
    return Status::ok();
  if (count > INT32_MAX)
    return Status::error("chooseVictims: too many requests");
  // VictimsKernel.h in the compiler.
  return launchCacheKernel(*impl, device, &CudaKernel::Impl::Loaded::victims,
                           {{"slot scores", &*meta->scores},
                            {"slot positions", &*meta->positions},
                            {"victim pages", &*pageList},
                            {"victim requests", &*req},
                            {"victims", &*out}},
                           {count, pools->P}, unsigned(count), 1u, stream);
}

Status CudaKernel::poolScores(const CudaCacheView &c, const DLTensor *mass, const DLTensor *order,
                              const DLTensor *pages, int64_t half, void *stream) const {
  const CudaKernelInfo &ki = impl->info;
  if (!ki.cache || !ki.cache->poolsScores())
    return Status::error("kernel '" + ki.name + "' keeps no SnapKV budget: no scores to pool");
  if (!mass || mass->ndim != 2 || !order || order->ndim != 2 || !pages || pages->ndim != 2)
    return Status::error("poolScores: expected f32 mass [rows, pitch], i32 order [rows, pitch] "
                         "and i32 pages [rows, pages_pitch] tensors");
  if (half < 0 || half > INT32_MAX)
    return Status::error("poolScores: half must be in [0, INT32_MAX]");
  const int device = mass->device.device_id;
  const int64_t rows = mass->shape[0], pitch = mass->shape[1];
  auto massV = denseDeviceTensor("pool mass", mass, "f32", {-1, -1}, device);
  if (!massV)
    return massV.error();
  auto orderV = denseDeviceTensor("pool order", order, "i32", {rows, pitch}, device);
  if (!orderV)
    return orderV.error();
  auto pagesV = denseDeviceTensor("pool pages", pages, "i32", {rows, -1}, device);
  if (!pagesV)
    return pagesV.error();
  auto views = cacheViews(ki, c, device);
  if (!views)
    return views.error();
  const SlotMetadata *meta = &views->meta;
  if (!meta->scores)
    return Status::error("poolScores: the pools carry no slot scores");
  if (rows == 0 || pitch == 0)
    return Status::ok();
  if (rows > 65535 || pitch > INT32_MAX || pages->shape[1] > INT32_MAX)
    return Status::error("poolScores: too many rows or slots");
  // PoolKernel.h in the compiler.
  return launchCacheKernel(*impl, device, &CudaKernel::Impl::Loaded::pool,
                           {{"pool mass", &*massV},
                            {"pool order", &*orderV},
                            {"pool pages", &*pagesV},
                            {"slot scores", &*meta->scores}},
                           {pitch, pages->shape[1], views->pools.P, half},
                           unsigned((pitch + kSmallThreads - 1) / kSmallThreads), unsigned(rows),
                           stream);
}

/// The decode entry for `rows` packed rows (G x Nq): -1 for the kernel's
/// own, else the index of the first twin that holds them (K/V read once per
/// row tile), or of the widest.
static int decodeEntry(const CudaKernelInfo &ki, int64_t rows) {
  if (rows <= ki.blockQ || ki.decodeTwins.empty())
    return -1;
  for (size_t i = 0; i < ki.decodeTwins.size(); ++i)
    if (rows <= ki.decodeTwins[i].blockQ)
      return int(i);
  return int(ki.decodeTwins.size()) - 1;
}

/// Whether the prefill-shaped entry may split a chunk's keys: only with
/// ATTNC_CUDA_PREFILL_SPLITS=1 until the split has run correctly on a GPU
/// (built in session 20 and tested by lit and the fake driver only; no
/// device time was left to run it: bench/NOTES.md).
static bool prefillSplitsEnabled() {
  const char *env = std::getenv("ATTNC_CUDA_PREFILL_SPLITS");
  return env && std::string(env) == "1";
}

/// The key splits with which a launch of Nq queries over the cache without
/// a positions table runs the kernel's prefill-shaped entry (which reads no
/// positions: a table given may drop slots, which the decode kernel
/// honours); 0: the decode kernel runs it. Enough queries, and then either
/// query tiles (x Hq x B) enough to give half the entry's resident CTAs
/// one each (one split), or keys enough to split each tile's keys into
/// runs of at least kCachePrefillMinSplitSlots until the CTAs fill the
/// resident slots once. A CTA of the entry runs at about twice the decode
/// kernel's rate (H100, session 19, B = 1, 32 query heads over 8192 keys:
/// 512 queries 0.385 ms on the decode kernel, 0.206 on the entry's 128
/// CTAs); unsplit, 128 queries (32 CTAs) took 0.196 ms against the decode
/// kernel's 0.116.
static Expected<int64_t> prefillSplits(const CudaKernelInfo &ki, const Driver &drv,
                                       CUfunction entry, int64_t B, int64_t Hq, int64_t Nq,
                                       int64_t maxLength, int device) {
  const EntryShape &shape = ki.cachePrefill;
  if (!shape.blockQ || Nq < kCachePrefillMinQueries)
    return 0;
  int perSm = 0;
  if (Status s = ATTNC_CU(drv, cuOccupancyMaxActiveBlocksPerMultiprocessor, &perSm, entry,
                          int(shape.threads), size_t(shape.sharedBytes));
      !s)
    return s;
  auto sms = deviceAttribute(drv, device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  if (!sms)
    return sms.error();
  const int64_t resident = std::max<int64_t>(1, int64_t(perSm) * *sms);
  const int64_t tiles = (Nq + shape.blockQ - 1) / shape.blockQ * Hq * B;
  if (2 * tiles >= resident)
    return 1;
  if (!prefillSplitsEnabled())
    return 0;
  const int64_t splits = std::min(resident / tiles, maxLength / kCachePrefillMinSplitSlots);
  return splits >= 2 ? splits : 0;
}

/// The launch shape of decode entry `entry` (decodeEntry).
static DecodeTwin decodeLaunchShape(const CudaKernelInfo &ki, int entry) {
  if (entry < 0)
    return DecodeTwin{ki.blockQ, ki.threads, ki.sharedBytes};
  return ki.decodeTwins[size_t(entry)];
}

Expected<DecodePlan> CudaKernel::decodePlan(int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq,
                                            int64_t maxLength, int device, int64_t splits) const {
  const CudaKernelInfo &ki = impl->info;
  if (!ki.cache || ki.tileK <= 0)
    return Status::error("kernel '" + ki.name + "' is not a KV-cache decode kernel");
  if (B <= 0 || Hkv <= 0 || Hq % Hkv || Nq <= 0)
    return Status::error("decode plan: need B, Nq > 0 and Hq a multiple of Hkv");
  const int64_t tile = ki.tileK;
  // More packed rows than a CTA of the default kernel holds: a twin.
  const int entry = decodeEntry(ki, (Hq / Hkv) * Nq);
  const DecodeTwin shape = decodeLaunchShape(ki, entry);
  const int64_t blockQ = shape.blockQ;
  const int64_t rowTiles = ((Hq / Hkv) * Nq + blockQ - 1) / blockQ;
  const int64_t pairs = rowTiles * Hkv * B;
  const int64_t tiles = std::max<int64_t>(1, (maxLength + tile - 1) / tile);
  DecodePlan plan;
  plan.blockQ = blockQ;
  auto d = driver();
  if (!d)
    return d.error();
  ScopedDeviceContext scope;
  auto fns = impl->enter(**d, scope, device);
  if (!fns)
    return fns.error();
  if (splits <= 0) {
    // Resident CTAs of the GPU (occupancy of this kernel x SMs): split the
    // keys until the grid fills them in whole waves, every split keeping
    // at least 256 slots (4 tiles) so the merge stays small.
    int perSm = 0;
    if (Status s = ATTNC_CU(**d, cuOccupancyMaxActiveBlocksPerMultiprocessor, &perSm,
                            entry < 0 ? fns->function : fns->twins[size_t(entry)],
                            int(shape.threads), size_t(shape.sharedBytes));
        !s)
      return s;
    auto sms = deviceAttribute(**d, device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
    if (!sms)
      return sms.error();
    const int64_t resident = std::max<int64_t>(1, int64_t(perSm) * *sms);
    const int64_t most = std::max<int64_t>(1, tiles * tile / 256);
    // Time ~ waves x (tiles per split + the CTA's fixed cost: Q load,
    // pipeline fill, combine; about 2 tiles' worth). More splits than one
    // wave needs only add that fixed cost and the merge.
    double best = 0;
    splits = 1;
    for (int64_t s = 1; s <= std::min<int64_t>(most, 256); ++s) {
      int64_t ctas = pairs * s, waves = (ctas + resident - 1) / resident;
      double time = double(waves) * double((tiles + s - 1) / s + 2);
      if (best == 0 || time < best) {
        best = time;
        splits = s;
      }
    }
  }
  auto prefill = prefillSplits(ki, **d, fns->prefill, B, Hq, Nq, maxLength, device);
  if (!prefill)
    return prefill.error();
  plan.prefill = *prefill > 0;
  plan.prefillSplits = std::max<int64_t>(1, *prefill);
  const int64_t perSplit = (tiles + splits - 1) / splits;
  plan.splitSlots = perSplit * tile;
  plan.splits = (tiles + perSplit - 1) / perSplit;
  // The splits' parts of O and LSE (f32 rows of Dv and 1); budget policies
  // also keep their scores there for the mass kernel, f32 [B * Hkv, G * Nq,
  // splits * split_slots] after the parts (MassKernel.h in the compiler),
  // so they need a workspace even with one split.
  const bool scores = ki.cache->scoresSlots();
  if (plan.splits > 1 || scores)
    plan.workspaceBytes = size_t(plan.splits) * size_t(B * Hq * Nq) *
                          size_t(ki.headDimV + 1 + (scores ? plan.splitSlots : 0)) * sizeof(float);
  // The prefill entry's splits keep their parts in the same layout (a
  // launch takes one kernel or the other: room for either).
  if (plan.prefillSplits > 1)
    plan.workspaceBytes =
        std::max(plan.workspaceBytes, size_t(plan.prefillSplits) * size_t(B * Hq * Nq) *
                                          size_t(ki.headDimV + 1) * sizeof(float));
  return plan;
}

Status CudaKernel::launch(const CudaCacheLaunchArgs &a, void *stream) const {
  const CudaKernelInfo &ki = impl->info;
  if (!ki.cache)
    return Status::error("kernel '" + ki.name +
                         "' was not compiled for a KV cache (compile it with kvCache)");
  const CachePolicyInfo &policy = *ki.cache;
  const CudaCacheView &c = a.cache;
  if (!a.q || a.q->ndim != 4)
    return Status::error("q: expected a [B, Hq, Nq, D] tensor");
  const int device = a.q->device.device_id;
  const int64_t B = a.q->shape[0], Nq = a.q->shape[2];
  auto views = cacheViews(ki, c, device);
  if (!views)
    return views.error();
  detail::PoolViews *pools = &views->pools;
  const SlotMetadata *meta = &views->meta;
  const bool quant = pools->quant;
  const int64_t P = pools->P;
  std::optional<detail::TensorView> &kPool = pools->kPool, &vPool = pools->vPool,
                                    &kScales = pools->kScales, &vScales = pools->vScales;
  if (B == 0 || Nq == 0)
    return Status::ok(); // no output element
  if (!c.lengths || c.lengths->ndim != 1 || c.lengths->shape[0] == 0 || c.lengths->shape[0] % B)
    return Status::error("cache lengths: expected an i32 [B * Hkv] tensor");
  const int64_t Hkv = c.lengths->shape[0] / B;
  auto len = denseDeviceTensor("cache lengths", c.lengths, "i32", {B * Hkv}, device);
  auto pages = denseDeviceTensor("cache pages", c.pages, "i32", {B * Hkv, -1}, device);
  auto qpos = denseDeviceTensor("query positions", c.queryPositions, "i32", {B}, device);
  for (auto *e : {&len, &pages, &qpos})
    if (!*e)
      return e->error();
  // No positions table: slot j holds position j, and a row's slots are
  // its pages' (the kernel reads kv_pos = null that way).
  std::optional<detail::TensorView> pos;
  if (!c.positions && !policy.retainsAll())
    return Status::error("policy '" + policy.name + "' " +
                         (policy.headPolicies.empty() ? "retains " + policy.retention
                                                      : std::string("has heads that drop "
                                                                    "positions")) +
                         ": slots do not follow positions, give the cache positions");
  if (c.positions) {
    auto given = denseDeviceTensor("cache positions", c.positions, "i32", {B * Hkv, -1}, device);
    if (!given)
      return given.error();
    pos = *given;
  }
  const int64_t maxPages = pages->shape[1], maxSlots = pos ? pos->shape[1] : maxPages * P;
  if (maxSlots > maxPages * P)
    return Status::error("cache positions have " + std::to_string(maxSlots) + " slots per row, " +
                         "more than the " + std::to_string(maxPages) + " pages of " +
                         std::to_string(P) + " slots hold");
  const int64_t maxLength = c.maxLength > 0 ? c.maxLength : maxSlots;
  if (maxLength > maxSlots)
    return Status::error("maxLength " + std::to_string(maxLength) + " exceeds the " +
                         std::to_string(maxSlots) + " slots of the " +
                         (pos ? "positions table" : "page table"));

  // Q, O, LSE and parameters as for a plain launch, with K/V stand-ins of a
  // page's shape (the pools' dtype is checked above).
  int64_t kShape[4] = {B, Hkv, P, ki.headDim}, vShape[4] = {B, Hkv, P, ki.headDimV};
  int64_t kStrides[4] = {0, 0, ki.headDim, 1}, vStrides[4] = {0, 0, ki.headDimV, 1};
  DLTensor fk = *a.q, fv = *a.q;
  fk.data = kPool->data, fv.data = vPool->data;
  fk.byte_offset = fv.byte_offset = 0;
  fk.shape = kShape, fk.strides = kStrides;
  fv.shape = vShape, fv.strides = vStrides;
  LaunchArgs la;
  la.q = a.q, la.k = &fk, la.v = &fv, la.o = a.o, la.lse = a.lse;
  la.params = a.params;
  auto planned = detail::planLaunch(ki, la, impl->rules);
  if (!planned)
    return planned.error();
  const detail::LaunchPlan &p = *planned;
  if (p.Hq > 65535 || B > 65535 || Hkv > 65535)
    return Status::error("cuda: Hq, Hkv and B must be at most 65535");
  auto split = decodePlan(B, p.Hq, Hkv, Nq, maxLength, device, a.splits);
  if (!split)
    return split.error();
  // The prefill-shaped entry (the plan's prefillSplits) or the decode kernel.
  const bool prefill = split->prefill && !pos;
  const int64_t splits = prefill ? split->prefillSplits : split->splits;
  // Budget policies: the mass table the _mass kernel adds to, or the
  // pool rows' scores.
  std::optional<detail::TensorView> mass;
  const bool massPass = policy.scoresSlots();
  if (massPass) {
    if (!a.mass && !meta->scores)
      return Status::error("policy '" + policy.name +
                           "' keeps a budget: give the mass table (f32 [B * Hkv, max_slots]) "
                           "its eviction scores are added to, or the pools' slot scores");
    if (a.mass && meta->scores)
      return Status::error("give the mass table or the slot scores, not both");
    if (a.mass) {
      auto m = denseDeviceTensor("mass", a.mass, "f32", {B * Hkv, maxSlots}, device);
      if (!m)
        return m.error();
      mass = *m;
    }
    if (!a.lse)
      return Status::error("policy '" + policy.name +
                           "' keeps a budget: its mass kernel reads the LSE, give lse");
    if (a.massRows < 0)
      return Status::error("massRows must be 0 (all queries) or positive");
  } else if (a.mass || meta->scores) {
    return Status::error(std::string(a.mass ? "a mass table was" : "slot scores were") +
                         " given, but policy '" + policy.name + "' keeps no budget");
  }
  if (split->workspaceBytes && (!a.workspace || a.workspaceBytes < split->workspaceBytes))
    return Status::error(std::string(prefill ? "prefill-shaped entry" : "decode") + " over " +
                         std::to_string(splits) + " split(s)" +
                         (massPass ? " with a mass pass" : "") + " needs a " +
                         std::to_string(split->workspaceBytes) + "-byte workspace, got " +
                         std::to_string(a.workspace ? a.workspaceBytes : 0) + " (see decodePlan)");

  auto d = driver();
  if (!d)
    return d.error();
  const Driver &drv = **d;
  if (Status s = checkPointers(drv, p,
                               {{"q", &p.q},
                                {"o", &p.o},
                                {"lse", &p.lse},
                                {"key pool", &*kPool},
                                {"value pool", &*vPool},
                                {"cache pages", &*pages},
                                {"cache lengths", &*len},
                                {"query positions", &*qpos}},
                               device);
      !s)
    return s;
  if (Status s = checkGivenPointers(drv,
                                    {{"cache positions", &pos},
                                     {"key scales", &kScales},
                                     {"value scales", &vScales},
                                     {"mass", &mass},
                                     {"slot scores", &meta->scores},
                                     {"slot positions", &meta->positions}},
                                    device);
      !s)
    return s;
  ScopedDeviceContext scope;
  auto fns = impl->enter(drv, scope, device);
  if (!fns)
    return fns.error();
  auto cuStream = static_cast<CUstream>(stream);

  KernelArgs abi;
  auto push = [&](const auto &value) { abi.push(value); };
  auto address = &KernelArgs::address;
  const uint64_t lse = p.hasLse ? address(p.lse) : 0;
  // The splits' parts in the workspace: O (f32 [splits, B * Hq * Nq, Dv])
  // then LSE (f32 [splits, B * Hq * Nq]).
  const uint64_t oPart = uint64_t(uintptr_t(a.workspace));
  const uint64_t lPart = oPart ? oPart + uint64_t(splits) * uint64_t(B * p.Hq * Nq) *
                                             uint64_t(ki.headDimV) * sizeof(float)
                               : 0;
  // The decode kernel's ABI (DecodeKernel.h in the compiler); the mass
  // kernel's adds the mass table and mass_rows before the parameters.
  auto pushDecodeAbi = [&](bool withMass) {
    abi.slots.clear();
    for (uint64_t ptr :
         {address(p.q), address(*kPool), address(*vPool), address(p.o), lse, oPart, lPart})
      push(ptr);
    for (int64_t x : {B, p.Hq, Hkv, Nq, P, maxPages, maxSlots, split->splits, split->splitSlots})
      push(int32_t(x));
    for (const detail::TensorView *t : {&p.q, &p.o})
      for (int i = 0; i < 3; ++i)
        push(int64_t(t->strides[i]));
    push(int64_t(p.hasLse ? p.lse.strides[0] : 0));
    push(int64_t(p.hasLse ? p.lse.strides[1] : 0));
    for (uint64_t ptr :
         {address(*pages), pos ? address(*pos) : uint64_t(0), address(*len), address(*qpos)})
      push(ptr);
    push(quant ? address(*kScales) : uint64_t(0));
    push(quant ? address(*vScales) : uint64_t(0));
    push(int32_t(p.hasLse ? 1 : 0));
    if (withMass) {
      push(mass ? address(*mass) : uint64_t(0));
      push(int32_t(a.massRows > 0 ? std::min(a.massRows, Nq) : Nq));
      push(meta->scores ? address(*meta->scores) : uint64_t(0));
    }
    abi.pushParams(p.params);
  };
  // After the decode (and merge): attnc_<K>_mass, a thread per slot, grid
  // (slots / threads, Hkv, B), no shared memory (it reads the scores the
  // decode stored).
  auto launchMass = [&]() -> Status {
    if (!massPass)
      return Status::ok();
    pushDecodeAbi(true);
    auto massParams = abi.pointers();
    const int64_t slotBlocks =
        (split->splits * split->splitSlots + ki.threads - 1) / std::max<int64_t>(1, ki.threads);
    return ATTNC_CU(drv, cuLaunchKernel, fns->mass, unsigned(slotBlocks), unsigned(Hkv),
                    unsigned(B), unsigned(ki.threads), 1u, 1u, 0u, cuStream, massParams.data(),
                    nullptr);
  };
  // attnc_<K>_merge: O and LSE from the splits' parts.
  auto launchMerge = [&]() -> Status {
    abi.slots.clear();
    for (uint64_t ptr : {oPart, lPart, address(p.o), lse})
      push(ptr);
    for (int64_t x : {B, p.Hq, Nq, splits})
      push(int32_t(x));
    for (int i = 0; i < 3; ++i)
      push(int64_t(p.o.strides[i]));
    push(int64_t(p.hasLse ? p.lse.strides[0] : 0));
    push(int64_t(p.hasLse ? p.lse.strides[1] : 0));
    push(int32_t(p.hasLse ? 1 : 0));
    auto mergeParams = abi.pointers();
    // A merge that waits on the decode (or prefill) grid itself launches
    // while that grid still runs (programmatic dependent launch, sm_90+;
    // drivers without cuLaunchKernelEx launch it after, as any kernel).
    if (ki.mergeWaits && drv.cuLaunchKernelEx) {
      CUlaunchAttribute early{};
      early.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
      early.value.programmaticStreamSerializationAllowed = 1;
      CUlaunchConfig config{};
      config.gridDimX = unsigned(Nq), config.gridDimY = unsigned(p.Hq),
      config.gridDimZ = unsigned(B);
      config.blockDimX = unsigned(ki.headDimV), config.blockDimY = config.blockDimZ = 1;
      config.hStream = cuStream, config.attrs = &early, config.numAttrs = 1;
      if (Status s =
              ATTNC_CU(drv, cuLaunchKernelEx, &config, fns->merge, mergeParams.data(), nullptr);
          !s)
        return s;
    } else if (Status s = ATTNC_CU(drv, cuLaunchKernel, fns->merge, unsigned(Nq), unsigned(p.Hq),
                                   unsigned(B), unsigned(ki.headDimV), 1u, 1u, 0u, cuStream,
                                   mergeParams.data(), nullptr);
               !s) {
      return s;
    }
    return Status::ok();
  };
  if (prefill) {
    // attnc_<K>_prefill: the prefill kernel's ABI (CudaPipeline.h) over
    // the pools (K/V: the page-shaped stand-ins above, strides 0, 0, row;
    // Nk the table's slots, q_offset unused), then the tables
    // (CachePrefillKernel.h in the compiler).
    abi.pushPrefill(p, maxLength, 0);
    for (uint64_t ptr : {address(*pages), address(*len), address(*qpos), oPart, lPart})
      push(ptr);
    for (int64_t x : {maxPages, P, splits})
      push(int32_t(x));
    abi.pushParams(p.params);
    auto prefillParams = abi.pointers();
    const EntryShape &shape = ki.cachePrefill;
    // A query tile's splits are adjacent in x (CachePrefillKernel.h).
    if (Status s = ATTNC_CU(drv, cuLaunchKernel, fns->prefill,
                            unsigned((Nq + shape.blockQ - 1) / shape.blockQ * splits),
                            unsigned(p.Hq), unsigned(B), unsigned(shape.threads), 1u, 1u,
                            unsigned(shape.sharedBytes), cuStream, prefillParams.data(), nullptr);
        !s)
      return s;
    return splits > 1 ? launchMerge() : Status::ok();
  }
  pushDecodeAbi(false);
  // The decode entry the plan chose (a twin for many packed rows).
  const int entry = decodeEntry(ki, (p.Hq / Hkv) * Nq);
  const DecodeTwin shape = decodeLaunchShape(ki, entry);
  const int64_t rowTiles = ((p.Hq / Hkv) * Nq + shape.blockQ - 1) / shape.blockQ;
  auto decodeParams = abi.pointers();
  // Bulk tensor copies (metadata decode_tma): the decode entries end with
  // tensor maps over the pools as [pages * P, row] matrices (bf16 / f16
  // values, or a quantized row's bytes), boxes of tmaBoxRows slot rows x
  // one 128-byte line swizzled by 128 bytes, as the kernel's shared tiles
  // are (DecodeKernel.cpp in the compiler).
  CUtensorMap kMap{}, vMap{};
  if (ki.tmaBoxRows) {
    if (!drv.cuTensorMapEncodeTiled)
      return Status::error("kernel '" + ki.name +
                           "' copies pages with bulk tensor copies, but the CUDA driver has no "
                           "cuTensorMapEncodeTiled (CUDA 12 or later)");
    const CachePolicyInfo &sp = policy.storagePolicy();
    const int type = quant                  ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                     : sp.storage == "bf16" ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                            : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    const int64_t bytes = quant ? 1 : 2, perByte = sp.valuesPerByte();
    // The pools' 16-byte alignment, which the copy engine needs, is the
    // kernel's (checked with K/V above).
    for (auto [map, pool, cols] : {std::tuple{&kMap, &*kPool, ki.headDim / perByte},
                                   std::tuple{&vMap, &*vPool, ki.headDimV / perByte}}) {
      const uint64_t dims[2] = {uint64_t(cols), uint64_t(pools->rows)};
      const uint64_t strides[1] = {uint64_t(cols * bytes)};
      const uint32_t box[2] = {uint32_t(128 / bytes), uint32_t(ki.tmaBoxRows)}, unit[2] = {1, 1};
      if (Status s =
              ATTNC_CU(drv, cuTensorMapEncodeTiled, map, type, 2u, pool->data, dims, strides, box,
                       unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                       CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
          !s)
        return s;
    }
    decodeParams.push_back(&kMap);
    decodeParams.push_back(&vMap);
  }
  if (Status s = ATTNC_CU(
          drv, cuLaunchKernel, entry < 0 ? fns->function : fns->twins[size_t(entry)],
          unsigned(rowTiles * split->splits), unsigned(Hkv), unsigned(B), unsigned(shape.threads),
          1u, 1u, unsigned(shape.sharedBytes), cuStream, decodeParams.data(), nullptr);
      !s)
    return s;
  if (split->splits > 1)
    if (Status s = launchMerge(); !s)
      return s;
  return launchMass();
}
