//===- Validate.h - Launch argument checks shared by the executors -*- C++ -*-===//
//
// Private to the light runtime. One validation for every executor: the CPU
// and CUDA kernels differ only in the rules below (device, the type of O,
// which strides their code can follow). Everything here runs before any
// kernel or driver call, and every error names the argument at fault.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_VALIDATE_H
#define ATTNC_RUNTIME_VALIDATE_H

#include "attnc/Runtime/Runtime.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace attnc::rt {
class KvCache;
} // namespace attnc::rt

namespace attnc::rt::detail {

/// What one executor accepts.
struct TargetRules {
  /// Device type of every tensor (kDLCPU or kDLCUDA) and why, for errors.
  DLDeviceType device = kDLCPU;
  const char *deviceName = "kDLCPU";
  const char *deviceReason = "the CPU kernel reads host memory";
  /// Element type of O (LSE is always f32).
  std::string outDtype = "f32";
  /// The row stride of Q/K/V/O must equal the row length (the CPU kernel's
  /// memref types fix it); otherwise only the innermost stride is fixed (1).
  bool packedRows = true;
  /// Byte alignment of Q/K/V/O's first element and of their outer strides
  /// (0: the element size).
  int64_t align = 0;
  /// B, Hq, Hkv, Nq, Nk and tensor parameter extents must fit int32 (the
  /// CUDA ABI passes them as i32).
  bool int32Sizes = false;
};

/// A validated tensor: the address of its first element and its extents and
/// strides in elements (filled in for compact tensors).
struct TensorView {
  char *data = nullptr;
  std::vector<int64_t> shape, strides;
  int device = 0;
  int64_t numel() const;
};

/// A validated runtime parameter.
struct ParamValue {
  const ParamInfo *info = nullptr;
  TensorView tensor; // tensors
  /// Scalars: the value in the parameter's type, little-endian in the first
  /// `scalarBytes` bytes.
  uint64_t scalarBits = 0;
  unsigned scalarBytes = 0;
};

/// Everything a launch needs, checked.
struct LaunchPlan {
  int64_t B = 0, Hq = 0, Hkv = 0, Nq = 0, Nk = 0, D = 0, Dv = 0, qOffset = 0;
  TensorView q, k, v, o, lse;
  bool hasLse = false;            // false: lse is empty and its data null
  std::vector<ParamValue> params; // in kernel order
};

/// Checks `args` against kernel `ki` under `rules` (docs/cpu-runtime.md,
/// docs/cuda.md).
Expected<LaunchPlan> planLaunch(const KernelInfo &ki, const LaunchArgs &args,
                                const TargetRules &rules);

/// A dense row-major tensor of `dtype` on `device` (kDLCPU: any id), with
/// shape[i] >= 0 checked (-1: any extent). Returns its view.
Expected<TensorView> denseTensor(const char *what, const DLTensor *t, const std::string &dtype,
                                 std::vector<int64_t> shape, DLDevice device);

/// A kvCache kernel's pools and scales, checked against its policy.
struct PoolViews {
  std::optional<TensorView> kPool, vPool, kScales, vScales;
  bool quant = false;
  int64_t P = 0, rows = 0; // slots per page, pool rows
};

/// Checks `pools` (CachePools in Runtime.h) against kernel `ki`'s policy:
/// [pages, P, D] / [pages, P, Dv] of its storage, scales if quantized.
Expected<PoolViews> cachePoolViews(const KernelInfo &ki, const CachePools &pools, DLDevice device);

/// The page size of a store of `numPages` pages for kernel `ki`'s cache
/// policy (every head's paged, one size); errors name `store`.
Expected<int64_t> storePageSize(const KernelInfo &ki, const std::string &store, int64_t numPages);

/// True if `t` matches the metadata type name (f32, bf16, i32, ...).
bool sameType(DLDataType t, const std::string &name);

/// Bytes of one element of metadata type `name` (0 if unknown).
unsigned typeBytes(const std::string &name);

/// Runs launch(q, o, lse, queriesAfter, leading) over a step's queries:
/// once (0, false), or, where `cache`'s heads score by h2o and by snapkv
/// and the step has more queries than the observation window
/// (KvCache::scoringSplit), over the leading queries (window, true) and
/// then the window's (0, false), on views of q, o and lse (null stays
/// null). Both executors launch over a cache through it. The launches
/// check the same arguments, so the second fails only where the first did
/// not on a device error, which leaves the first's h2o mass added.
using QueriesLaunch = std::function<Status(const DLTensor *q, DLTensor *o, DLTensor *lse,
                                           int64_t queriesAfter, bool leading)>;
Status launchScoringParts(const KvCache &cache, const DLTensor *q, DLTensor *o, DLTensor *lse,
                          const QueriesLaunch &launch);

} // namespace attnc::rt::detail

#endif // ATTNC_RUNTIME_VALIDATE_H
