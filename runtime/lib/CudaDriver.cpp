//===- CudaDriver.cpp - The CUDA driver API, loaded at run time -----------===//

#include "CudaDriver.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

using namespace attnc::rt;
using namespace attnc::rt::cuda;

Status Driver::check(CUresult result, const char *call) const {
  if (result == CUDA_SUCCESS)
    return Status::ok();
  const char *name = nullptr, *text = nullptr;
  if (!cuGetErrorName || cuGetErrorName(result, &name) != CUDA_SUCCESS || !name)
    name = nullptr;
  if (!cuGetErrorString || cuGetErrorString(result, &text) != CUDA_SUCCESS || !text)
    text = nullptr;
  return Status::error(std::string("cuda: ") + call + ": " +
                       (name ? name : "CUDA_ERROR_" + std::to_string(result)) + ": " +
                       (text ? text : "unknown error"));
}

namespace {
/// dlopens the driver, resolves every entry point and runs cuInit.
Expected<Driver *> loadDriver() {
  const char *env = std::getenv("ATTNC_LIBCUDA");
  std::string path = env && *env ? env : "libcuda.so.1";
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *err = dlerror();
    return Status::error("cuda: cannot load the CUDA driver " + path + " (" + (err ? err : "?") +
                         "); is the NVIDIA driver installed?");
  }
  auto *d = new Driver();
  d->path = path;
  std::string missing;
  auto resolve = [&](void *&slot, const char *symbol, const char *fallback) {
    slot = dlsym(handle, symbol);
    if (!slot && fallback)
      slot = dlsym(handle, fallback);
    if (!slot)
      missing += std::string(missing.empty() ? "" : ", ") + symbol;
  };
#define ATTNC_CUDA_RESOLVE(member, symbol, fallback, params)                                       \
  resolve(reinterpret_cast<void *&>(d->member), symbol, fallback);
  ATTNC_CUDA_DRIVER_FUNCTIONS(ATTNC_CUDA_RESOLVE)
#undef ATTNC_CUDA_RESOLVE
#define ATTNC_CUDA_RESOLVE_OPTIONAL(member, symbol, fallback, params)                              \
  d->member = reinterpret_cast<decltype(d->member)>(dlsym(handle, symbol));
  ATTNC_CUDA_OPTIONAL_DRIVER_FUNCTIONS(ATTNC_CUDA_RESOLVE_OPTIONAL)
#undef ATTNC_CUDA_RESOLVE_OPTIONAL
  if (!missing.empty()) {
    delete d;
    dlclose(handle);
    return Status::error("cuda: " + path + " lacks " + missing + " (driver too old?)");
  }
  if (Status s = ATTNC_CU(*d, cuInit, 0); !s) {
    delete d;
    return s;
  }
  int count = 0;
  if (Status s = ATTNC_CU(*d, cuDeviceGetCount, &count); !s) {
    delete d;
    return s;
  }
  if (count <= 0) {
    delete d;
    return Status::error("cuda: the driver reports no CUDA device");
  }
  return d;
}

struct PrimaryContexts {
  std::mutex m;
  std::vector<CUcontext> byDevice;
};
PrimaryContexts &primaryContexts() {
  static auto *p = new PrimaryContexts();
  return *p;
}
} // namespace

Expected<const Driver *> attnc::rt::cuda::driver() {
  // Never destroyed: kernels may be released during static destruction.
  static Expected<Driver *> *loaded = new Expected<Driver *>(loadDriver());
  if (!*loaded)
    return loaded->error();
  return const_cast<const Driver *>(**loaded);
}

Expected<CUcontext> attnc::rt::cuda::primaryContext(const Driver &d, int device) {
  PrimaryContexts &p = primaryContexts();
  std::lock_guard<std::mutex> lock(p.m);
  if (device >= 0 && size_t(device) < p.byDevice.size() && p.byDevice[device])
    return p.byDevice[device];
  auto dev = deviceHandle(d, device);
  if (!dev)
    return dev.error();
  CUcontext ctx = nullptr;
  if (Status s = ATTNC_CU(d, cuDevicePrimaryCtxRetain, &ctx, *dev); !s)
    return s;
  if (p.byDevice.size() <= size_t(device))
    p.byDevice.resize(device + 1, nullptr);
  p.byDevice[device] = ctx;
  return ctx;
}

Status ScopedDeviceContext::enter(const Driver &d, int device) {
  drv = &d;
  if (Status s = ATTNC_CU(d, cuCtxGetCurrent, &previous); !s)
    return s;
  if (previous) {
    CUdevice current = -1;
    // A current context that is being destroyed fails here: use ours.
    if (d.cuCtxGetDevice(&current) == CUDA_SUCCESS && current == device) {
      ctx = previous;
      return Status::ok();
    }
  }
  auto primary = primaryContext(d, device);
  if (!primary)
    return primary.error();
  ctx = *primary;
  if (Status s = ATTNC_CU(d, cuCtxSetCurrent, ctx); !s)
    return s;
  restore = true;
  return Status::ok();
}

ScopedDeviceContext::~ScopedDeviceContext() {
  if (restore)
    (void)drv->cuCtxSetCurrent(previous);
}

Expected<CUdevice> attnc::rt::cuda::deviceHandle(const Driver &d, int device) {
  int count = 0;
  if (Status s = ATTNC_CU(d, cuDeviceGetCount, &count); !s)
    return s;
  if (device < 0 || device >= count)
    return Status::error("cuda: device " + std::to_string(device) + " does not exist (" +
                         std::to_string(count) + " device" + (count == 1 ? "" : "s") + ")");
  CUdevice dev = 0;
  if (Status s = ATTNC_CU(d, cuDeviceGet, &dev, device); !s)
    return s;
  return dev;
}

Expected<int> attnc::rt::cuda::deviceAttribute(const Driver &d, int device, int attribute) {
  auto dev = deviceHandle(d, device);
  if (!dev)
    return dev.error();
  int value = 0;
  if (Status s = ATTNC_CU(d, cuDeviceGetAttribute, &value, attribute, *dev); !s)
    return s;
  return value;
}

Expected<int> attnc::rt::cuda::computeCapability(const Driver &d, int device) {
  auto major = deviceAttribute(d, device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  if (!major)
    return major.error();
  auto minor = deviceAttribute(d, device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  if (!minor)
    return minor.error();
  return *major * 10 + *minor;
}

std::string attnc::rt::cuda::archForCapability(int cc) {
  return "sm_" + std::to_string(cc) + (cc >= 90 ? "a" : "");
}
