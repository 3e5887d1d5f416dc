//===- CudaTestSupport.h - Helpers of the CUDA tests ------------*- C++ -*-===//
//
// What the CUDA executor's tests (CudaTest.cpp) and the CUDA JIT's tests
// (CudaJitTest.cpp) share: which environment ctest runs them in (the fake
// driver, a missing driver, a real GPU), the fake driver's test hooks, and
// strided views of device buffers.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TESTS_RUNTIME_CUDATESTSUPPORT_H
#define ATTNC_TESTS_RUNTIME_CUDATESTSUPPORT_H

#include "FakeCuda.h"

#include "attnc/Runtime/Cuda.h"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

namespace attnc::test {

using namespace attnc::rt;

inline std::string env(const char *name) {
  const char *v = std::getenv(name);
  return v ? v : "";
}

inline bool underFakeDriver() { return env("ATTNC_LIBCUDA") == ATTNC_FAKE_CUDA; }

#define REQUIRE_FAKE_DRIVER()                                                                      \
  if (!underFakeDriver())                                                                          \
  GTEST_SKIP() << "needs ATTNC_LIBCUDA=" ATTNC_FAKE_CUDA " (as ctest runs it)"

#define REQUIRE_GPU()                                                                              \
  do {                                                                                             \
    std::string why;                                                                               \
    if (!env("ATTNC_LIBCUDA").empty())                                                             \
      GTEST_SKIP() << "ATTNC_LIBCUDA is set: not the real driver";                                 \
    if (!cudaAvailable(&why))                                                                      \
      GTEST_SKIP() << "no GPU: " << why;                                                           \
  } while (0)

/// The fake driver's test hooks (same handle as the runtime's dlopen).
struct FakeHooks {
  void *handle = dlopen(ATTNC_FAKE_CUDA, RTLD_NOW | RTLD_LOCAL);
  template <typename F> F get(const char *name) {
    void *p = handle ? dlsym(handle, name) : nullptr;
    EXPECT_TRUE(p) << name;
    return reinterpret_cast<F>(p);
  }
  int launches() { return get<int (*)()>("attnc_fake_cuda_launch_count")(); }
  int memsets() { return get<int (*)()>("attnc_fake_cuda_memsets")(); }
  int moduleLoads() { return get<int (*)()>("attnc_fake_cuda_module_loads")(); }
  int moduleUnloads() { return get<int (*)()>("attnc_fake_cuda_module_unloads")(); }
  int sharedAttribute() { return get<int (*)()>("attnc_fake_cuda_dynamic_shared_attribute")(); }
  void setCapability(int cc) { get<void (*)(int)>("attnc_fake_cuda_set_capability")(cc); }
  void registerHost(void *p, size_t n) {
    get<void (*)(void *, size_t)>("attnc_fake_cuda_register_host")(p, n);
  }
  int tensorMapCount() { return get<int (*)()>("attnc_fake_cuda_tensor_map_count")(); }
  attnc_fake_tensor_map tensorMap(int i) {
    attnc_fake_tensor_map t{};
    EXPECT_EQ(0, get<int (*)(int, attnc_fake_tensor_map *)>("attnc_fake_cuda_tensor_map")(i, &t));
    return t;
  }
  attnc_fake_launch last() {
    attnc_fake_launch l{};
    EXPECT_EQ(0, get<int (*)(attnc_fake_launch *)>("attnc_fake_cuda_last_launch")(&l));
    return l;
  }
  void setLaunchHook(attnc_fake_launch_hook hook, void *user) {
    get<void (*)(attnc_fake_launch_hook, void *)>("attnc_fake_cuda_set_launch_hook")(hook, user);
  }
  attnc_fake_launch previous() {
    attnc_fake_launch l{};
    EXPECT_EQ(0, get<int (*)(attnc_fake_launch *)>("attnc_fake_cuda_previous_launch")(&l));
    return l;
  }
  void *currentContext() {
    void *ctx = nullptr;
    get<int (*)(void **)>("cuCtxGetCurrent")(&ctx);
    return ctx;
  }
  void setCurrentContext(void *ctx) { get<int (*)(void *)>("cuCtxSetCurrent")(ctx); }
  void *primaryContext(int device) {
    void *ctx = nullptr;
    get<int (*)(void **, int)>("cuDevicePrimaryCtxRetain")(&ctx, device);
    return ctx;
  }
};

/// `what` must fail with a message containing `substring`.
inline void expectError(const Status &s, const std::string &substring) {
  EXPECT_FALSE(s) << "expected an error containing '" << substring << "'";
  EXPECT_NE(s.message().find(substring), std::string::npos) << s.message();
}

inline const DLDataType kBF16{kDLBfloat, 16, 1}, kF16{kDLFloat, 16, 1}, kF32{kDLFloat, 32, 1},
    kI64{kDLInt, 64, 1};

//===----------------------------------------------------------------------===//
// Device tensors
//===----------------------------------------------------------------------===//

/// A strided view of a device buffer (fake or real device memory).
struct DevTensor {
  CudaBuffer buffer;
  std::vector<int64_t> shape, strides;
  DLTensor t{};
  size_t elemBytes = 0;
  size_t storage = 0; // elements in the buffer

  /// Storage for `shape` with `strides` (default: dense), starting
  /// `offset` elements into the buffer; filled with `poison` bytes.
  DevTensor(std::vector<int64_t> shp, DLDataType dt, std::vector<int64_t> str = {},
            int64_t offset = 0, int device = 0, uint8_t poison = 0xff)
      : shape(std::move(shp)), strides(std::move(str)) {
    if (strides.empty()) {
      strides.resize(shape.size());
      int64_t dense = 1;
      for (int i = int(shape.size()) - 1; i >= 0; --i) {
        strides[i] = dense;
        dense *= shape[i];
      }
    }
    elemBytes = dt.bits / 8;
    int64_t span = offset + 1;
    for (size_t i = 0; i < shape.size(); ++i)
      span += (std::max<int64_t>(shape[i], 1) - 1) * strides[i];
    storage = size_t(span);
    auto b = CudaBuffer::allocate(device, storage * elemBytes);
    EXPECT_TRUE(bool(b)) << b.message();
    if (b)
      buffer = std::move(*b);
    std::vector<uint8_t> fill(storage * elemBytes, poison);
    EXPECT_TRUE(buffer.upload(fill.data(), fill.size()));
    t.data = buffer.data();
    t.byte_offset = uint64_t(offset) * elemBytes;
    t.device = {kDLCUDA, device};
    t.ndim = int(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
    t.strides = strides.data();
  }
  DLTensor *operator&() { return &t; }
  uint64_t address() const { return buffer.address() + t.byte_offset; }
  int64_t index(std::initializer_list<int64_t> idx) const {
    int64_t i = int64_t(t.byte_offset / elemBytes), d = 0;
    for (int64_t x : idx)
      i += x * strides[d++];
    return i;
  }
  template <typename T> std::vector<T> download() {
    std::vector<T> out(storage * elemBytes / sizeof(T));
    EXPECT_TRUE(buffer.download(out.data(), out.size() * sizeof(T)));
    return out;
  }
  template <typename T> void upload(const std::vector<T> &v) {
    EXPECT_TRUE(buffer.upload(v.data(), v.size() * sizeof(T)));
  }
};

} // namespace attnc::test

#endif // ATTNC_TESTS_RUNTIME_CUDATESTSUPPORT_H
