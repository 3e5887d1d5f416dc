//===- CudaKernel.cpp - Loading and launching CUDA kernels ----------------===//

#include "CudaDriver.h"
#include "Validate.h"
#include "attnc/Runtime/Cuda.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
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
  };
  std::mutex mutex;
  std::vector<Loaded> loaded; // one per context the kernel ran in

  /// The kernel's function in `ctx` (current, on `device`): loads the module
  /// there on first use.
  Expected<CUfunction> function(const Driver &d, CUcontext ctx, int device);
  ~Impl();
};

Expected<CUfunction> CudaKernel::Impl::function(const Driver &d, CUcontext ctx, int device) {
  std::lock_guard<std::mutex> lock(mutex);
  for (const Loaded &l : loaded)
    if (l.ctx == ctx)
      return l.function;
  auto cc = computeCapability(d, device);
  if (!cc)
    return cc.error();
  if (!archRunsOn(info.arch, *cc))
    return Status::error("cuda: kernel '" + info.name + "' was compiled for " + info.arch +
                         ", but device " + std::to_string(device) + " is " +
                         archForCapability(*cc) + " (compute capability " +
                         std::to_string(*cc / 10) + "." + std::to_string(*cc % 10) + ")");
  if (info.sharedBytes > kDefaultDynamicSharedBytes) {
    auto optin = deviceAttribute(d, device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    if (!optin)
      return optin.error();
    if (info.sharedBytes > *optin)
      return Status::error("cuda: kernel '" + info.name + "' needs " +
                           std::to_string(info.sharedBytes) +
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
  if (info.sharedBytes > kDefaultDynamicSharedBytes) {
    if (Status s = ATTNC_CU(d, cuFuncSetAttribute, l.function,
                            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(info.sharedBytes));
        !s) {
      (void)d.cuModuleUnload(l.module);
      return s;
    }
  }
  loaded.push_back(l);
  return l.function;
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

/// One kernel argument: its bytes, at most 8.
struct ArgSlot {
  uint64_t bits = 0;
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
  const std::pair<const char *, const detail::TensorView *> tensors[] = {
      {"q", &p.q}, {"k", &p.k}, {"v", &p.v}, {"o", &p.o}, {"lse", &p.lse}};
  for (auto [what, view] : tensors)
    if (view != &p.lse || p.hasLse)
      if (Status s = checkPointer(drv, what, *view, device); !s)
        return s;
  for (const detail::ParamValue &v : p.params)
    if (v.info->isTensor)
      if (Status s =
              checkPointer(drv, ("parameter '" + v.info->name + "'").c_str(), v.tensor, device);
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

  // Arguments in ABI order (docs/cuda.md); each slot holds one value.
  std::vector<ArgSlot> slots;
  slots.reserve(32 + 2 * p.params.size());
  auto push = [&](const auto &value) {
    static_assert(sizeof(value) <= sizeof(uint64_t));
    ArgSlot slot;
    std::memcpy(&slot.bits, &value, sizeof(value));
    slots.push_back(slot);
  };
  auto address = [](const detail::TensorView &t) { return uint64_t(uintptr_t(t.data)); };
  push(address(p.q));
  push(address(p.k));
  push(address(p.v));
  push(address(p.o));
  push(p.hasLse ? address(p.lse) : uint64_t(0));
  for (int64_t x : {p.B, p.Hq, p.Hkv, p.Nq, p.Nk, p.qOffset})
    push(int32_t(x));
  for (const detail::TensorView *t : {&p.q, &p.k, &p.v, &p.o})
    for (int i = 0; i < 3; ++i)
      push(int64_t(t->strides[i]));
  push(int64_t(p.hasLse ? p.lse.strides[0] : 0));
  push(int64_t(p.hasLse ? p.lse.strides[1] : 0));
  push(int32_t(p.hasLse ? 1 : 0));
  for (const detail::ParamValue &v : p.params) {
    if (!v.info->isTensor) {
      ArgSlot slot;
      slot.bits = v.scalarBits;
      slots.push_back(slot);
      continue;
    }
    push(address(v.tensor));
    for (int64_t extent : v.tensor.shape)
      push(int32_t(extent));
  }
  std::vector<void *> params(slots.size());
  for (size_t i = 0; i < slots.size(); ++i)
    params[i] = &slots[i].bits;

  return ATTNC_CU(drv, cuLaunchKernel, *fn, unsigned(tilesQ), unsigned(p.Hq), unsigned(p.B),
                  unsigned(ki.threads), 1u, 1u, unsigned(ki.sharedBytes), cuStream, params.data(),
                  nullptr);
}
