//===- FakeCuda.cpp - A CUDA driver stand-in for machines without a GPU ---===//
//
// Implements the driver entry points the runtime resolves (CudaDriver.h) on
// host memory; see FakeCuda.h. Only what the runtime's tests need, but with
// the real driver's rules where the runtime could get them wrong: a context
// must be current, a launch's dynamic shared memory above 48 KiB needs the
// function attribute, a module belongs to the context it was loaded in,
// memory accesses stay inside allocations.
//
//===----------------------------------------------------------------------===//

#include "FakeCuda.h"

#include "attnc/Runtime/Half.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {
using CUresult = int;
enum : int {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  INVALID_CONTEXT = 201,
  INVALID_PTX = 218,
  NOT_FOUND = 500,
  ILLEGAL_ADDRESS = 700,
};
const int kDevices = 2;

struct Context {
  int device;
};
Context contexts[kDevices] = {{0}, {1}};
thread_local Context *current = nullptr;

struct Allocation {
  size_t size;
  int device;
  bool host;
};

struct Function;
struct Module {
  Context *ctx;
  std::string image;
  std::vector<Function *> functions;
};
struct Function {
  Module *module;
  std::string name;
  std::vector<unsigned> paramSizes;
  int maxDynamicShared = 48 * 1024;
};

struct State {
  std::mutex m;
  std::map<uintptr_t, Allocation> allocations;
  int capability = 90;
  int launches = 0, moduleLoads = 0, moduleUnloads = 0, memsets = 0, sharedAttribute = 0;
  attnc_fake_launch last{}, previous{};  // the last launch and the one before
  attnc_fake_launch_hook hook = nullptr; // attnc_fake_cuda_set_launch_hook
  void *hookUser = nullptr;
  std::vector<attnc_fake_tensor_map> tensorMaps; // encoded so far
};
State &state() {
  static auto *s = new State();
  return *s;
}

/// True if [p, p + n) lies inside one allocation.
bool inside(uintptr_t p, size_t n, const Allocation **found = nullptr) {
  auto &allocs = state().allocations;
  auto it = allocs.upper_bound(p);
  if (it == allocs.begin())
    return false;
  --it;
  if (p < it->first || p + n > it->first + it->second.size)
    return false;
  if (found)
    *found = &it->second;
  return true;
}

/// Argument sizes of `.entry name(...)` in PTX text; false if absent.
bool entryParams(const std::string &ptx, const std::string &name, std::vector<unsigned> &sizes) {
  size_t pos = 0;
  for (;;) {
    pos = ptx.find(".entry " + name, pos);
    if (pos == std::string::npos)
      return false;
    size_t after = pos + 7 + name.size();
    if (after < ptx.size() && (ptx[after] == '(' || std::isspace(uint8_t(ptx[after]))))
      break;
    pos = after;
  }
  size_t open = ptx.find('(', pos), close = ptx.find(')', pos);
  if (open == std::string::npos || close == std::string::npos || close < open)
    return false;
  std::istringstream in(ptx.substr(open + 1, close - open - 1));
  for (std::string tok; in >> tok;) {
    if (tok != ".param")
      continue;
    std::string type;
    in >> type;
    if (type == ".align") { // .param .align A .b8 name[N]: N bytes (a tensor map)
      std::string align, name;
      in >> align >> type >> name;
      size_t open = name.find('[');
      int count = open == std::string::npos ? 1 : std::atoi(name.c_str() + open + 1);
      sizes.push_back(unsigned(std::max(std::atoi(type.c_str() + 2) / 8, 1) * count));
      continue;
    }
    int bits = std::atoi(type.c_str() + 2);
    sizes.push_back(unsigned(std::max(bits / 8, 1)));
  }
  return true;
}

/// The value of a `// <key> N` line of the PTX (0 if absent).
int ptxComment(const std::string &ptx, const std::string &key) {
  size_t pos = ptx.find("// " + key + " ");
  return pos == std::string::npos ? 0 : std::atoi(ptx.c_str() + pos + key.size() + 4);
}

//===----------------------------------------------------------------------===//
// Host execution of attnc_fake_attention_<dtype>
//===----------------------------------------------------------------------===//

struct Attention {
  const attnc_fake_launch &l;
  bool bf16;
  int D, blockQ;
  bool fault = false;

  uint64_t u64(int i) const { return l.values[i]; }
  int32_t i32(int i) const { return int32_t(uint32_t(l.values[i])); }
  int64_t i64(int i) const { return int64_t(l.values[i]); }

  float load16(uint64_t base, int64_t index) {
    uintptr_t p = uintptr_t(base + index * 2);
    if (!inside(p, 2)) {
      fault = true;
      return 0;
    }
    uint16_t h;
    std::memcpy(&h, reinterpret_cast<void *>(p), 2);
    return bf16 ? attnc::rt::bf16ToFloat(h) : attnc::rt::f16ToFloat(h);
  }
  void store16(uint64_t base, int64_t index, float f) {
    uintptr_t p = uintptr_t(base + index * 2);
    if (!inside(p, 2)) {
      fault = true;
      return;
    }
    uint16_t h = bf16 ? attnc::rt::floatToBf16(f) : attnc::rt::floatToF16(f);
    std::memcpy(reinterpret_cast<void *>(p), &h, 2);
  }
  void store32(uint64_t base, int64_t index, float f) {
    uintptr_t p = uintptr_t(base + index * 4);
    if (!inside(p, 4)) {
      fault = true;
      return;
    }
    std::memcpy(reinterpret_cast<void *>(p), &f, 4);
  }

  void run() {
    uint64_t Q = u64(0), K = u64(1), V = u64(2), O = u64(3), L = u64(4);
    int Hq = i32(6), Hkv = i32(7), Nq = i32(8), Nk = i32(9);
    int64_t s[14];
    for (int i = 0; i < 14; ++i)
      s[i] = i64(11 + i);
    bool writeLse = i32(25) != 0;
    int rows = std::min<int64_t>(Nq, int64_t(l.grid[0]) * blockQ);
    std::vector<double> p(Nk);
    for (unsigned b = 0; b < l.grid[2]; ++b)
      for (unsigned h = 0; h < l.grid[1]; ++h) {
        int64_t hk = h / (Hq / Hkv);
        for (int n = 0; n < rows; ++n) {
          double mx = -INFINITY;
          for (int j = 0; j < Nk; ++j) {
            double dot = 0;
            for (int d = 0; d < D; ++d)
              dot += double(load16(Q, b * s[0] + h * s[1] + n * s[2] + d)) *
                     load16(K, b * s[3] + hk * s[4] + j * s[5] + d);
            p[j] = dot / std::sqrt(double(D));
            mx = std::max(mx, p[j]);
          }
          double sum = 0;
          for (int j = 0; j < Nk; ++j)
            sum += (p[j] = std::exp(p[j] - mx));
          for (int d = 0; d < D; ++d) {
            double acc = 0;
            for (int j = 0; j < Nk; ++j)
              acc += p[j] * load16(V, b * s[6] + hk * s[7] + j * s[8] + d);
            store16(O, b * s[9] + h * s[10] + n * s[11] + d, float(acc / sum));
          }
          if (writeLse)
            store32(L, b * s[12] + h * s[13] + n, float(mx + std::log(sum)));
        }
      }
  }
};

CUresult memset2D(uintptr_t dst, size_t pitch, uint32_t word, unsigned bytes, size_t width,
                  size_t height) {
  std::lock_guard<std::mutex> lock(state().m);
  if (!current)
    return INVALID_CONTEXT;
  for (size_t r = 0; r < height; ++r)
    if (!inside(dst + r * pitch, width * bytes))
      return INVALID_VALUE;
  for (size_t r = 0; r < height; ++r)
    for (size_t i = 0; i < width; ++i)
      std::memcpy(reinterpret_cast<void *>(dst + r * pitch + i * bytes), &word, bytes);
  ++state().memsets;
  return SUCCESS;
}
} // namespace

extern "C" {

//===----------------------------------------------------------------------===//
// Driver entry points
//===----------------------------------------------------------------------===//

CUresult cuGetErrorName(CUresult r, const char **name) {
  static const std::map<int, const char *> names = {
      {SUCCESS, "CUDA_SUCCESS"},
      {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE"},
      {INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT"},
      {INVALID_PTX, "CUDA_ERROR_INVALID_PTX"},
      {NOT_FOUND, "CUDA_ERROR_NOT_FOUND"},
      {ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS"}};
  auto it = names.find(r);
  if (it == names.end())
    return INVALID_VALUE;
  *name = it->second;
  return SUCCESS;
}

CUresult cuGetErrorString(CUresult r, const char **text) {
  const char *name;
  if (cuGetErrorName(r, &name) != SUCCESS)
    return INVALID_VALUE;
  *text = "fake driver error";
  return SUCCESS;
}

CUresult cuInit(unsigned) { return SUCCESS; }
CUresult cuDriverGetVersion(int *v) {
  *v = 13000;
  return SUCCESS;
}
CUresult cuDeviceGetCount(int *n) {
  *n = kDevices;
  return SUCCESS;
}
CUresult cuDeviceGet(int *dev, int ordinal) {
  if (ordinal < 0 || ordinal >= kDevices)
    return INVALID_VALUE;
  *dev = ordinal;
  return SUCCESS;
}
CUresult cuDeviceGetName(char *name, int len, int dev) {
  std::snprintf(name, size_t(len), "attnc fake device %d", dev);
  return SUCCESS;
}
CUresult cuDeviceGetAttribute(int *value, int attribute, int dev) {
  if (dev < 0 || dev >= kDevices)
    return INVALID_VALUE;
  std::lock_guard<std::mutex> lock(state().m);
  switch (attribute) {
  case 1: // max threads per block
    *value = 1024;
    return SUCCESS;
  case 5:
    *value = 2147483647;
    return SUCCESS;
  case 6:
  case 7:
    *value = 65535;
    return SUCCESS;
  case 16:
    *value = 132;
    return SUCCESS;
  case 75:
    *value = state().capability / 10;
    return SUCCESS;
  case 76:
    *value = state().capability % 10;
    return SUCCESS;
  case 97:
    *value = 227 * 1024;
    return SUCCESS;
  default:
    return INVALID_VALUE;
  }
}
CUresult cuDevicePrimaryCtxRetain(Context **ctx, int dev) {
  if (dev < 0 || dev >= kDevices)
    return INVALID_VALUE;
  *ctx = &contexts[dev];
  return SUCCESS;
}
CUresult cuCtxGetCurrent(Context **ctx) {
  *ctx = current;
  return SUCCESS;
}
CUresult cuCtxSetCurrent(Context *ctx) {
  current = ctx;
  return SUCCESS;
}
CUresult cuCtxGetDevice(int *dev) {
  if (!current)
    return INVALID_CONTEXT;
  *dev = current->device;
  return SUCCESS;
}
CUresult cuCtxSynchronize() { return current ? SUCCESS : INVALID_CONTEXT; }
CUresult cuStreamSynchronize(void *) { return current ? SUCCESS : INVALID_CONTEXT; }

CUresult cuModuleLoadDataEx(Module **module, const void *image, unsigned numOptions, int *options,
                            void **values) {
  if (!current)
    return INVALID_CONTEXT;
  std::string text(static_cast<const char *>(image));
  if (text.find("FAKE_BAD_PTX") != std::string::npos) {
    char *log = nullptr;
    size_t size = 0;
    for (unsigned i = 0; i < numOptions; ++i) {
      if (options[i] == 5)
        log = static_cast<char *>(values[i]);
      if (options[i] == 6)
        size = reinterpret_cast<uintptr_t>(values[i]);
    }
    if (log && size)
      std::snprintf(log, size, "ptxas application ptx input, line 3; fatal : fake syntax error");
    return INVALID_PTX;
  }
  std::lock_guard<std::mutex> lock(state().m);
  *module = new Module{current, std::move(text), {}};
  ++state().moduleLoads;
  return SUCCESS;
}
CUresult cuModuleGetFunction(Function **fn, Module *module, const char *name) {
  std::vector<unsigned> sizes;
  if (!entryParams(module->image, name, sizes))
    return NOT_FOUND;
  *fn = new Function{module, name, std::move(sizes)};
  module->functions.push_back(*fn);
  return SUCCESS;
}
CUresult cuModuleUnload(Module *module) {
  if (current != module->ctx)
    return INVALID_CONTEXT;
  for (Function *f : module->functions)
    delete f;
  delete module;
  std::lock_guard<std::mutex> lock(state().m);
  ++state().moduleUnloads;
  return SUCCESS;
}
CUresult cuFuncSetAttribute(Function *fn, int attribute, int value) {
  if (attribute != 8 || value < 0 || value > 227 * 1024)
    return INVALID_VALUE;
  fn->maxDynamicShared = value;
  std::lock_guard<std::mutex> lock(state().m);
  state().sharedAttribute = value;
  return SUCCESS;
}

// Two CTAs per SM, as the decode kernel gets on an H100.
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, Function *fn, int threads,
                                                     size_t shared) {
  if (!blocks || !fn || threads <= 0 || threads > 1024)
    return INVALID_VALUE;
  *blocks = shared > 114 * 1024 ? 1 : 2;
  return SUCCESS;
}

CUresult cuLaunchKernel(Function *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream, void **params,
                        void **extra) {
  if (!current || current != fn->module->ctx)
    return INVALID_CONTEXT;
  if (extra || !gx || !gy || !gz || gy > 65535 || gz > 65535 || bx * by * bz > 1024 ||
      int(shared) > fn->maxDynamicShared || fn->paramSizes.size() > 96)
    return INVALID_VALUE;
  attnc_fake_launch l{};
  l.grid[0] = gx, l.grid[1] = gy, l.grid[2] = gz;
  l.block[0] = bx, l.block[1] = by, l.block[2] = bz;
  l.sharedBytes = shared;
  l.stream = stream;
  std::snprintf(l.entry, sizeof(l.entry), "%s", fn->name.c_str());
  l.numParams = int(fn->paramSizes.size());
  for (int i = 0; i < l.numParams; ++i) {
    l.sizes[i] = fn->paramSizes[i];
    std::memcpy(&l.values[i], params[i], std::min<size_t>(l.sizes[i], 8));
  }
  attnc_fake_launch_hook hook;
  void *hookUser;
  {
    std::lock_guard<std::mutex> lock(state().m);
    state().previous = state().last;
    state().last = l;
    ++state().launches;
    hook = state().hook, hookUser = state().hookUser;
  }
  // Outside the lock: the hook may read and write device memory.
  if (hook)
    hook(&l, hookUser);
  std::lock_guard<std::mutex> lock(state().m);
  const std::string &ptx = fn->module->image;
  for (const char *dtype : {"bf16", "f16"})
    if (fn->name == std::string("attnc_fake_attention_") + dtype) {
      Attention a{l, dtype[0] == 'b', ptxComment(ptx, "fake-head-dim"),
                  std::max(1, ptxComment(ptx, "fake-block-q"))};
      a.run();
      if (a.fault)
        return ILLEGAL_ADDRESS;
    }
  return SUCCESS;
}

// cuda.h's CUlaunchConfig and CUlaunchAttribute (72 bytes: id, padding,
// a 64-byte value).
struct LaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    int flag;
    void *alignAsPointer;
  } value;
};
struct LaunchConfig {
  unsigned gx, gy, gz, bx, by, bz, shared;
  void *stream;
  LaunchAttribute *attrs;
  unsigned numAttrs;
};

// Programmatic stream serialization (id 6) is recorded; other attributes
// are refused, so a test notices one it does not expect.
CUresult cuLaunchKernelEx(const LaunchConfig *c, Function *fn, void **params, void **extra) {
  if (!c || (c->numAttrs && !c->attrs))
    return INVALID_VALUE;
  int programmatic = 0;
  for (unsigned i = 0; i < c->numAttrs; ++i) {
    if (c->attrs[i].id != 6)
      return INVALID_VALUE;
    programmatic = c->attrs[i].value.flag != 0;
  }
  CUresult r = cuLaunchKernel(fn, c->gx, c->gy, c->gz, c->bx, c->by, c->bz, c->shared, c->stream,
                              params, extra);
  if (r == SUCCESS) {
    std::lock_guard<std::mutex> lock(state().m);
    state().last.programmatic = programmatic;
  }
  return r;
}

CUresult cuMemsetD16Async(uintptr_t dst, unsigned short v, size_t n, void *) {
  return memset2D(dst, 0, v, 2, n, 1);
}
CUresult cuMemsetD32Async(uintptr_t dst, unsigned v, size_t n, void *) {
  return memset2D(dst, 0, v, 4, n, 1);
}
CUresult cuMemsetD2D16Async(uintptr_t dst, size_t pitch, unsigned short v, size_t w, size_t h,
                            void *) {
  return memset2D(dst, pitch, v, 2, w, h);
}
CUresult cuMemsetD2D32Async(uintptr_t dst, size_t pitch, unsigned v, size_t w, size_t h, void *) {
  return memset2D(dst, pitch, v, 4, w, h);
}

CUresult cuPointerGetAttributes(unsigned n, int *attributes, void **data, uintptr_t ptr) {
  std::lock_guard<std::mutex> lock(state().m);
  const Allocation *a = nullptr;
  bool known = inside(ptr, 1, &a);
  for (unsigned i = 0; i < n; ++i) {
    if (attributes[i] == 2) // memory type
      *static_cast<unsigned *>(data[i]) = !known ? 0 : a->host ? 1 : 2;
    else if (attributes[i] == 9) // device ordinal
      *static_cast<int *>(data[i]) = known ? a->device : -2;
    else
      return INVALID_VALUE;
  }
  return SUCCESS;
}

CUresult cuMemAlloc_v2(uintptr_t *ptr, size_t bytes) {
  if (!current)
    return INVALID_CONTEXT;
  void *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p)
    return INVALID_VALUE;
  std::lock_guard<std::mutex> lock(state().m);
  state().allocations[uintptr_t(p)] = {bytes, current->device, false};
  *ptr = uintptr_t(p);
  return SUCCESS;
}
CUresult cuMemFree_v2(uintptr_t ptr) {
  std::lock_guard<std::mutex> lock(state().m);
  auto it = state().allocations.find(ptr);
  if (it == state().allocations.end() || it->second.host)
    return INVALID_VALUE;
  state().allocations.erase(it);
  std::free(reinterpret_cast<void *>(ptr));
  return SUCCESS;
}
// Page-locked host memory: host memory the pointer attributes call host.
CUresult cuMemAllocHost_v2(void **ptr, size_t bytes) {
  if (!current)
    return INVALID_CONTEXT;
  void *p = std::malloc(bytes);
  if (!p)
    return INVALID_VALUE;
  std::lock_guard<std::mutex> lock(state().m);
  state().allocations[uintptr_t(p)] = {bytes, current->device, true};
  *ptr = p;
  return SUCCESS;
}
CUresult cuMemFreeHost(void *ptr) {
  std::lock_guard<std::mutex> lock(state().m);
  auto it = state().allocations.find(uintptr_t(ptr));
  if (it == state().allocations.end() || !it->second.host)
    return INVALID_VALUE;
  state().allocations.erase(it);
  std::free(ptr);
  return SUCCESS;
}
CUresult cuMemcpyHtoD_v2(uintptr_t dst, const void *src, size_t n) {
  std::lock_guard<std::mutex> lock(state().m);
  if (!current || !inside(dst, n))
    return INVALID_VALUE;
  std::memcpy(reinterpret_cast<void *>(dst), src, n);
  return SUCCESS;
}
// Host to device rectangles only (what the runtime copies).
struct Memcpy2D {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void *srcHost;
  uintptr_t srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void *dstHost;
  uintptr_t dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
};
CUresult cuMemcpy2D_v2(const Memcpy2D *c) {
  std::lock_guard<std::mutex> lock(state().m);
  if (!current || !c || c->srcMemoryType != 1 || c->dstMemoryType != 2 || !c->Height ||
      c->WidthInBytes > c->dstPitch || c->WidthInBytes > c->srcPitch)
    return INVALID_VALUE;
  uintptr_t first = c->dstDevice + c->dstY * c->dstPitch + c->dstXInBytes;
  if (!inside(first, (c->Height - 1) * c->dstPitch + c->WidthInBytes))
    return INVALID_VALUE;
  for (size_t row = 0; row < c->Height; ++row)
    std::memcpy(reinterpret_cast<void *>(first + row * c->dstPitch),
                static_cast<const char *>(c->srcHost) + (c->srcY + row) * c->srcPitch +
                    c->srcXInBytes,
                c->WidthInBytes);
  return SUCCESS;
}
CUresult cuMemcpyDtoH_v2(void *dst, uintptr_t src, size_t n) {
  std::lock_guard<std::mutex> lock(state().m);
  if (!current || !inside(src, n))
    return INVALID_VALUE;
  std::memcpy(dst, reinterpret_cast<void *>(src), n);
  return SUCCESS;
}

struct Event {
  double ms = 0;
};
CUresult cuEventCreate(Event **e, unsigned) {
  *e = new Event();
  return current ? SUCCESS : INVALID_CONTEXT;
}
CUresult cuEventDestroy_v2(Event *e) {
  delete e;
  return SUCCESS;
}
CUresult cuEventRecord(Event *e, void *) {
  e->ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
  return SUCCESS;
}
CUresult cuEventSynchronize(Event *) { return SUCCESS; }
CUresult cuEventElapsedTime_v2(float *ms, Event *a, Event *b) {
  *ms = float(b->ms - a->ms);
  return SUCCESS;
}

//===----------------------------------------------------------------------===//
// Test hooks
//===----------------------------------------------------------------------===//

int attnc_fake_cuda_launch_count(void) {
  std::lock_guard<std::mutex> lock(state().m);
  return state().launches;
}
int attnc_fake_cuda_last_launch(attnc_fake_launch *out) {
  std::lock_guard<std::mutex> lock(state().m);
  if (!state().launches)
    return 1;
  *out = state().last;
  return 0;
}
void attnc_fake_cuda_set_launch_hook(attnc_fake_launch_hook hook, void *user) {
  std::lock_guard<std::mutex> lock(state().m);
  state().hook = hook, state().hookUser = user;
}
int attnc_fake_cuda_previous_launch(attnc_fake_launch *out) {
  std::lock_guard<std::mutex> lock(state().m);
  if (state().launches < 2)
    return 1;
  *out = state().previous;
  return 0;
}
int attnc_fake_cuda_module_loads(void) {
  std::lock_guard<std::mutex> lock(state().m);
  return state().moduleLoads;
}
int attnc_fake_cuda_module_unloads(void) {
  std::lock_guard<std::mutex> lock(state().m);
  return state().moduleUnloads;
}
int attnc_fake_cuda_memsets(void) {
  std::lock_guard<std::mutex> lock(state().m);
  return state().memsets;
}
int attnc_fake_cuda_dynamic_shared_attribute(void) {
  std::lock_guard<std::mutex> lock(state().m);
  return state().sharedAttribute;
}
void attnc_fake_cuda_set_capability(int cc) {
  std::lock_guard<std::mutex> lock(state().m);
  state().capability = cc;
}
void attnc_fake_cuda_register_host(void *p, size_t n) {
  std::lock_guard<std::mutex> lock(state().m);
  state().allocations[uintptr_t(p)] = {n, 0, true};
}
int attnc_fake_cuda_tensor_map_count(void) {
  std::lock_guard<std::mutex> lock(state().m);
  return int(state().tensorMaps.size());
}
int attnc_fake_cuda_tensor_map(int i, attnc_fake_tensor_map *out) {
  std::lock_guard<std::mutex> lock(state().m);
  if (i < 0 || size_t(i) >= state().tensorMaps.size())
    return 1;
  *out = state().tensorMaps[size_t(i)];
  return 0;
}

// The driver's checks of a 2-D tiled map that attnc encodes (cuda.h's
// cuTensorMapEncodeTiled; u8, f16 or bf16): a 16-byte aligned device
// address, strides of
// 16-byte multiples, boxes of at most 256 rows and, with the 128-byte
// swizzle (3), inner boxes of at most 128 bytes. The map holds the address
// in its first 8 bytes (what a launch records) and the encode is kept.
CUresult cuTensorMapEncodeTiled(void *map, int type, uint32_t rank, void *address,
                                const uint64_t *dims, const uint64_t *strides, const uint32_t *box,
                                const uint32_t *unit, int interleave, int swizzle, int l2,
                                int oobFill) {
  const int bytes = type == 6 || type == 9 ? 2 : type == 0 ? 1 : 0; // f16, bf16; u8
  if (!map || rank != 2 || !bytes || uintptr_t(address) % 16 || strides[0] % 16 || box[0] > 256 ||
      box[1] > 256 || (swizzle == 3 && box[0] * bytes > 128) || unit[0] != 1 || unit[1] != 1 ||
      interleave != 0)
    return INVALID_VALUE;
  std::lock_guard<std::mutex> lock(state().m);
  if (!inside(uintptr_t(address), dims[1] * strides[0]))
    return INVALID_VALUE;
  attnc_fake_tensor_map t{};
  t.address = address;
  t.type = type, t.swizzle = swizzle, t.l2Promotion = l2, t.oobFill = oobFill;
  for (int i = 0; i < 2; ++i)
    t.dims[i] = dims[i], t.box[i] = box[i];
  t.rowBytes = strides[0];
  state().tensorMaps.push_back(t);
  std::memset(map, 0, 128);
  std::memcpy(map, &address, sizeof(address));
  return SUCCESS;
}

} // extern "C"
