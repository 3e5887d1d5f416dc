//===- CudaDevice.cpp - Devices, memory and timing for tests and tools ----===//

#include "CudaDriver.h"
#include "attnc/Runtime/Cuda.h"

#include <algorithm>
#include <utility>

using namespace attnc::rt;
using namespace attnc::rt::cuda;

bool attnc::rt::cudaAvailable(std::string *whyNot) {
  auto d = driver();
  if (!d && whyNot)
    *whyNot = d.message();
  return bool(d);
}

Expected<int> attnc::rt::cudaDeviceCount() {
  auto d = driver();
  if (!d)
    return d.error();
  int count = 0;
  if (Status s = ATTNC_CU(**d, cuDeviceGetCount, &count); !s)
    return s;
  return count;
}

Expected<std::string> attnc::rt::deviceArch(int device) {
  auto d = driver();
  if (!d)
    return d.error();
  auto cc = computeCapability(**d, device);
  if (!cc)
    return cc.error();
  return archForCapability(*cc);
}

Expected<std::string> attnc::rt::deviceName(int device) {
  auto d = driver();
  if (!d)
    return d.error();
  auto dev = deviceHandle(**d, device);
  if (!dev)
    return dev.error();
  char name[256] = {0};
  if (Status s = ATTNC_CU(**d, cuDeviceGetName, name, int(sizeof(name) - 1), *dev); !s)
    return s;
  return std::string(name);
}

namespace {
/// Runs `fn(driver)` with a context of `device` current.
template <typename Fn> Status inDevice(int device, Fn &&fn) {
  auto d = driver();
  if (!d)
    return d.error();
  ScopedDeviceContext scope;
  if (Status s = scope.enter(**d, device); !s)
    return s;
  return fn(**d);
}

Status checkRange(const char *what, size_t offset, size_t n, size_t size) {
  if (offset > size || n > size - offset)
    return Status::error(std::string("cuda: ") + what + " of " + std::to_string(n) +
                         " bytes at offset " + std::to_string(offset) + " outside a buffer of " +
                         std::to_string(size));
  return Status::ok();
}
} // namespace

//===----------------------------------------------------------------------===//
// CudaBuffer
//===----------------------------------------------------------------------===//

Expected<CudaBuffer> CudaBuffer::allocate(int device, size_t bytes) {
  CudaBuffer b;
  b.dev = device;
  b.bytes = bytes;
  CUdeviceptr ptr = 0;
  if (Status s = inDevice(device,
                          [&](const Driver &d) {
                            return ATTNC_CU(d, cuMemAlloc, &ptr, std::max<size_t>(bytes, 1));
                          });
      !s)
    return s;
  b.ptr = ptr;
  return b;
}

CudaBuffer::CudaBuffer(CudaBuffer &&other) noexcept
    : ptr(std::exchange(other.ptr, 0)), bytes(std::exchange(other.bytes, 0)), dev(other.dev) {}

CudaBuffer &CudaBuffer::operator=(CudaBuffer &&other) noexcept {
  if (this != &other) {
    this->~CudaBuffer();
    ptr = std::exchange(other.ptr, 0);
    bytes = std::exchange(other.bytes, 0);
    dev = other.dev;
  }
  return *this;
}

CudaBuffer::~CudaBuffer() {
  if (ptr)
    (void)inDevice(dev, [&](const Driver &d) { return ATTNC_CU(d, cuMemFree, ptr); });
  ptr = 0;
}

Status CudaBuffer::upload(const void *src, size_t n, size_t offset) {
  if (Status s = checkRange("upload", offset, n, bytes); !s)
    return s;
  return inDevice(dev, [&](const Driver &d) {
    return n ? ATTNC_CU(d, cuMemcpyHtoD, ptr + offset, src, n) : Status::ok();
  });
}

Status CudaBuffer::uploadRect(const void *src, size_t srcPitch, size_t width, size_t height,
                              size_t offset, size_t dstPitch) {
  if (!width || !height)
    return Status::ok();
  if (width > srcPitch || width > dstPitch)
    return Status::error("upload: rows of " + std::to_string(width) + " bytes, pitches " +
                         std::to_string(srcPitch) + " / " + std::to_string(dstPitch));
  if (Status s = checkRange("upload", offset, (height - 1) * dstPitch + width, bytes); !s)
    return s;
  CUDA_MEMCPY2D c{};
  c.srcMemoryType = CU_MEMORYTYPE_HOST, c.srcHost = src, c.srcPitch = srcPitch;
  c.dstMemoryType = CU_MEMORYTYPE_DEVICE, c.dstDevice = ptr + offset, c.dstPitch = dstPitch;
  c.WidthInBytes = width, c.Height = height;
  return inDevice(dev, [&](const Driver &d) { return ATTNC_CU(d, cuMemcpy2D, &c); });
}

Status CudaBuffer::download(void *dst, size_t n, size_t offset) const {
  if (Status s = checkRange("download", offset, n, bytes); !s)
    return s;
  return inDevice(dev, [&](const Driver &d) {
    return n ? ATTNC_CU(d, cuMemcpyDtoH, dst, ptr + offset, n) : Status::ok();
  });
}

//===----------------------------------------------------------------------===//
// CudaHostBuffer
//===----------------------------------------------------------------------===//

Expected<CudaHostBuffer> CudaHostBuffer::allocate(int device, size_t bytes) {
  CudaHostBuffer b;
  b.dev = device;
  b.bytes = bytes;
  void *ptr = nullptr;
  if (Status s = inDevice(device,
                          [&](const Driver &d) {
                            return ATTNC_CU(d, cuMemAllocHost, &ptr, std::max<size_t>(bytes, 1));
                          });
      !s)
    return s;
  b.ptr = ptr;
  return b;
}

CudaHostBuffer::CudaHostBuffer(CudaHostBuffer &&other) noexcept
    : ptr(std::exchange(other.ptr, nullptr)), bytes(std::exchange(other.bytes, 0)), dev(other.dev) {
}

CudaHostBuffer &CudaHostBuffer::operator=(CudaHostBuffer &&other) noexcept {
  if (this != &other) {
    this->~CudaHostBuffer();
    ptr = std::exchange(other.ptr, nullptr);
    bytes = std::exchange(other.bytes, 0);
    dev = other.dev;
  }
  return *this;
}

CudaHostBuffer::~CudaHostBuffer() {
  if (ptr)
    (void)inDevice(dev, [&](const Driver &d) { return ATTNC_CU(d, cuMemFreeHost, ptr); });
  ptr = nullptr;
}

Status CudaBuffer::fill32(uint32_t word) {
  if (bytes % 4)
    return Status::error("cuda: fill32 of a buffer of " + std::to_string(bytes) + " bytes");
  return inDevice(dev, [&](const Driver &d) {
    if (Status s = ATTNC_CU(d, cuMemsetD32Async, ptr, word, bytes / 4, nullptr); !s)
      return s;
    return ATTNC_CU(d, cuStreamSynchronize, nullptr);
  });
}

Status attnc::rt::cudaSynchronize(int device) {
  return inDevice(device, [](const Driver &d) { return ATTNC_CU(d, cuCtxSynchronize); });
}

//===----------------------------------------------------------------------===//
// CudaTimer
//===----------------------------------------------------------------------===//

Expected<CudaTimer> CudaTimer::create(int device) {
  CudaTimer t;
  t.dev = device;
  if (Status s = inDevice(device,
                          [&](const Driver &d) {
                            CUevent a = nullptr, b = nullptr;
                            if (Status s = ATTNC_CU(d, cuEventCreate, &a, 0); !s)
                              return s;
                            t.begin = a;
                            if (Status s = ATTNC_CU(d, cuEventCreate, &b, 0); !s)
                              return s;
                            t.end = b;
                            return Status::ok();
                          });
      !s)
    return s;
  return t;
}

CudaTimer::CudaTimer(CudaTimer &&other) noexcept
    : begin(std::exchange(other.begin, nullptr)), end(std::exchange(other.end, nullptr)),
      dev(other.dev) {}

CudaTimer &CudaTimer::operator=(CudaTimer &&other) noexcept {
  if (this != &other) {
    this->~CudaTimer();
    begin = std::exchange(other.begin, nullptr);
    end = std::exchange(other.end, nullptr);
    dev = other.dev;
  }
  return *this;
}

CudaTimer::~CudaTimer() {
  if (!begin && !end)
    return;
  (void)inDevice(dev, [&](const Driver &d) {
    for (void *e : {begin, end})
      if (e)
        (void)d.cuEventDestroy(static_cast<CUevent>(e));
    return Status::ok();
  });
  begin = end = nullptr;
}

Status CudaTimer::start(void *stream) {
  return inDevice(dev, [&](const Driver &d) {
    return ATTNC_CU(d, cuEventRecord, static_cast<CUevent>(begin), static_cast<CUstream>(stream));
  });
}

Status CudaTimer::stop(void *stream) {
  return inDevice(dev, [&](const Driver &d) {
    return ATTNC_CU(d, cuEventRecord, static_cast<CUevent>(end), static_cast<CUstream>(stream));
  });
}

Expected<float> CudaTimer::elapsedMs() {
  float ms = 0;
  if (Status s =
          inDevice(dev,
                   [&](const Driver &d) {
                     if (Status s = ATTNC_CU(d, cuEventSynchronize, static_cast<CUevent>(end)); !s)
                       return s;
                     return ATTNC_CU(d, cuEventElapsedTime, &ms, static_cast<CUevent>(begin),
                                     static_cast<CUevent>(end));
                   });
      !s)
    return s;
  return ms;
}
