//===- CudaDriver.h - The CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// Private to the light runtime. libcuda.so.1 is dlopen'ed on first use (never
// linked), so the runtime builds, links and runs its tests on machines
// without a GPU or a CUDA toolkit. The few driver types and constants used
// are declared here: cuda.h is not needed to build.
//
// $ATTNC_LIBCUDA, when set, names the library to load instead of
// libcuda.so.1 (the tests point it at a fake driver, or at a missing file).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_CUDADRIVER_H
#define ATTNC_RUNTIME_CUDADRIVER_H

#include "attnc/Runtime/Runtime.h"

#include <cstddef>
#include <cstdint>

namespace attnc::rt::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;

enum : int {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_NOT_INITIALIZED = 3,
  CUDA_ERROR_NO_DEVICE = 100,
  CUDA_ERROR_NOT_FOUND = 500,
};

// CUdevice_attribute
enum : int {
  CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,
  CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X = 5,
  CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y = 6,
  CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z = 7,
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

// CUfunction_attribute
enum : int { CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8 };

// CUpointer_attribute and CUmemorytype
enum : int { CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9 };
enum : unsigned { CU_MEMORYTYPE_HOST = 1, CU_MEMORYTYPE_DEVICE = 2, CU_MEMORYTYPE_UNIFIED = 4 };

// CUjit_option
enum : int { CU_JIT_ERROR_LOG_BUFFER = 5, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6 };

// cuLaunchKernelEx's configuration (CUDA 12.0 on): attribute ids of
// CUlaunchAttributeID, the value a 64-byte union.
enum : int { CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6 };
struct CUlaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    int programmaticStreamSerializationAllowed;
    void *alignAsPointer;
  } value;
};
struct CUlaunchConfig {
  unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
  CUstream hStream;
  CUlaunchAttribute *attrs;
  unsigned numAttrs;
};
static_assert(sizeof(CUlaunchAttribute) == 72 && sizeof(CUlaunchConfig) == 56,
              "the driver's layouts (cuda.h)");

// cuMemcpy2D's description (CUDA_MEMCPY2D_v2 of cuda.h): a rectangle of
// WidthInBytes x Height between pitched host or device memory (memory
// types CU_MEMORYTYPE_*, above).
struct CUDA_MEMCPY2D {
  size_t srcXInBytes, srcY;
  unsigned srcMemoryType;
  const void *srcHost;
  CUdeviceptr srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  unsigned dstMemoryType;
  void *dstHost;
  CUdeviceptr dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
};
static_assert(sizeof(CUDA_MEMCPY2D) == 128, "the driver's layout (cuda.h)");

/// Largest dynamic shared memory a launch gets without opting in.
constexpr int64_t kDefaultDynamicSharedBytes = 48 * 1024;

// X(member, symbol, fallback symbol or nullptr, parameter list). Every entry
// point returns CUresult. The `_v2` names are what cuda.h maps the plain
// names to; a fallback covers drivers older than the preferred symbol.
#define ATTNC_CUDA_DRIVER_FUNCTIONS(X)                                                             \
  X(cuGetErrorName, "cuGetErrorName", nullptr, (CUresult, const char **))                          \
  X(cuGetErrorString, "cuGetErrorString", nullptr, (CUresult, const char **))                      \
  X(cuInit, "cuInit", nullptr, (unsigned))                                                         \
  X(cuDriverGetVersion, "cuDriverGetVersion", nullptr, (int *))                                    \
  X(cuDeviceGetCount, "cuDeviceGetCount", nullptr, (int *))                                        \
  X(cuDeviceGet, "cuDeviceGet", nullptr, (CUdevice *, int))                                        \
  X(cuDeviceGetName, "cuDeviceGetName", nullptr, (char *, int, CUdevice))                          \
  X(cuDeviceGetAttribute, "cuDeviceGetAttribute", nullptr, (int *, int, CUdevice))                 \
  X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", nullptr, (CUcontext *, CUdevice))        \
  X(cuCtxGetCurrent, "cuCtxGetCurrent", nullptr, (CUcontext *))                                    \
  X(cuCtxSetCurrent, "cuCtxSetCurrent", nullptr, (CUcontext))                                      \
  X(cuCtxGetDevice, "cuCtxGetDevice", nullptr, (CUdevice *))                                       \
  X(cuCtxSynchronize, "cuCtxSynchronize", nullptr, ())                                             \
  X(cuModuleLoadDataEx, "cuModuleLoadDataEx", nullptr,                                             \
    (CUmodule *, const void *, unsigned, int *, void **))                                          \
  X(cuModuleGetFunction, "cuModuleGetFunction", nullptr, (CUfunction *, CUmodule, const char *))   \
  X(cuModuleUnload, "cuModuleUnload", nullptr, (CUmodule))                                         \
  X(cuFuncSetAttribute, "cuFuncSetAttribute", nullptr, (CUfunction, int, int))                     \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor",    \
    nullptr, (int *, CUfunction, int, size_t))                                                     \
  X(cuLaunchKernel, "cuLaunchKernel", nullptr,                                                     \
    (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,   \
     void **, void **))                                                                            \
  X(cuMemsetD16Async, "cuMemsetD16Async", nullptr,                                                 \
    (CUdeviceptr, unsigned short, size_t, CUstream))                                               \
  X(cuMemsetD32Async, "cuMemsetD32Async", nullptr, (CUdeviceptr, unsigned, size_t, CUstream))      \
  X(cuMemsetD2D16Async, "cuMemsetD2D16Async", nullptr,                                             \
    (CUdeviceptr, size_t, unsigned short, size_t, size_t, CUstream))                               \
  X(cuMemsetD2D32Async, "cuMemsetD2D32Async", nullptr,                                             \
    (CUdeviceptr, size_t, unsigned, size_t, size_t, CUstream))                                     \
  X(cuPointerGetAttributes, "cuPointerGetAttributes", nullptr,                                     \
    (unsigned, int *, void **, CUdeviceptr))                                                       \
  X(cuMemAlloc, "cuMemAlloc_v2", nullptr, (CUdeviceptr *, size_t))                                 \
  X(cuMemFree, "cuMemFree_v2", nullptr, (CUdeviceptr))                                             \
  X(cuMemAllocHost, "cuMemAllocHost_v2", nullptr, (void **, size_t))                               \
  X(cuMemFreeHost, "cuMemFreeHost", nullptr, (void *))                                             \
  X(cuMemcpyHtoD, "cuMemcpyHtoD_v2", nullptr, (CUdeviceptr, const void *, size_t))                 \
  X(cuMemcpyDtoH, "cuMemcpyDtoH_v2", nullptr, (void *, CUdeviceptr, size_t))                       \
  X(cuMemcpy2D, "cuMemcpy2D_v2", nullptr, (const CUDA_MEMCPY2D *))                                 \
  X(cuStreamSynchronize, "cuStreamSynchronize", nullptr, (CUstream))                               \
  X(cuEventCreate, "cuEventCreate", nullptr, (CUevent *, unsigned))                                \
  X(cuEventDestroy, "cuEventDestroy_v2", "cuEventDestroy", (CUevent))                              \
  X(cuEventRecord, "cuEventRecord", nullptr, (CUevent, CUstream))                                  \
  X(cuEventSynchronize, "cuEventSynchronize", nullptr, (CUevent))                                  \
  X(cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime", (float *, CUevent, CUevent))

// A tensor map of the bulk tensor copy engine (CUtensorMap of cuda.h, an
// opaque 128 bytes) and the enum values cuTensorMapEncodeTiled takes here.
struct CUtensorMap {
  alignas(128) uint64_t opaque[16];
};
enum : int {
  CU_TENSOR_MAP_DATA_TYPE_UINT8 = 0,
  CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = 6,
  CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9
};
enum : int { CU_TENSOR_MAP_INTERLEAVE_NONE = 0 };
enum : int { CU_TENSOR_MAP_SWIZZLE_128B = 3 };
enum : int { CU_TENSOR_MAP_L2_PROMOTION_L2_128B = 2 };
enum : int { CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0 };

// Entry points the runtime uses where the driver has them (null otherwise).
#define ATTNC_CUDA_OPTIONAL_DRIVER_FUNCTIONS(X)                                                    \
  X(cuLaunchKernelEx, "cuLaunchKernelEx", nullptr,                                                 \
    (const CUlaunchConfig *, CUfunction, void **, void **))                                        \
  X(cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled", nullptr,                                     \
    (CUtensorMap *, int, uint32_t, void *, const uint64_t *, const uint64_t *, const uint32_t *,   \
     const uint32_t *, int, int, int, int))

/// The driver's entry points. Obtained through driver(); never unloaded.
struct Driver {
#define ATTNC_CUDA_DECLARE(member, symbol, fallback, params) CUresult(*member) params = nullptr;
  ATTNC_CUDA_DRIVER_FUNCTIONS(ATTNC_CUDA_DECLARE)
  ATTNC_CUDA_OPTIONAL_DRIVER_FUNCTIONS(ATTNC_CUDA_DECLARE)
#undef ATTNC_CUDA_DECLARE

  /// The library that was loaded (libcuda.so.1 or $ATTNC_LIBCUDA).
  std::string path;

  /// Status::ok() for CUDA_SUCCESS, else "cuda: <call>: <name>: <string>".
  Status check(CUresult result, const char *call) const;
};

/// Loads and initializes the driver on first use (thread safe); later calls
/// return the same driver or the same error.
Expected<const Driver *> driver();

/// Calls `fn` of driver `d` and turns its result into a Status naming the
/// call: `if (Status s = ATTNC_CU(d, cuCtxSynchronize); !s) return s;`.
#define ATTNC_CU(d, fn, ...) (d).check((d).fn(__VA_ARGS__), #fn)

/// The primary context of `device` (retained on first use, kept for the
/// process's lifetime).
Expected<CUcontext> primaryContext(const Driver &d, int device);

/// Makes a context of `device` current on this thread for its lifetime and
/// restores the previous one: the calling thread's current context if it
/// belongs to `device` (the caller's own, e.g. PyTorch's), else the device's
/// primary context.
class ScopedDeviceContext {
public:
  ScopedDeviceContext() = default;
  ScopedDeviceContext(const ScopedDeviceContext &) = delete;
  ScopedDeviceContext &operator=(const ScopedDeviceContext &) = delete;
  ~ScopedDeviceContext();
  Status enter(const Driver &d, int device);
  CUcontext context() const { return ctx; }

private:
  const Driver *drv = nullptr;
  CUcontext ctx = nullptr, previous = nullptr;
  bool restore = false;
};

/// The handle of device ordinal `device`, or an error naming the devices.
Expected<CUdevice> deviceHandle(const Driver &d, int device);

/// A CUdevice_attribute of `device`.
Expected<int> deviceAttribute(const Driver &d, int device, int attribute);

/// The PTX target for compute capability `cc` (major * 10 + minor):
/// sm_<cc>, with the `a` suffix from 9.0 on (docs/cuda.md).
std::string archForCapability(int cc);

/// Compute capability of `device` as major * 10 + minor.
Expected<int> computeCapability(const Driver &d, int device);

} // namespace attnc::rt::cuda

#endif // ATTNC_RUNTIME_CUDADRIVER_H
