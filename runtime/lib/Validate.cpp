//===- Validate.cpp - Launch argument checks shared by the executors ------===//

#include "Validate.h"

#include "attnc/Runtime/KvCache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

using namespace attnc::rt;
using namespace attnc::rt::detail;

bool attnc::rt::detail::sameType(DLDataType t, const std::string &name) {
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
  if (name == "i16")
    return t.code == kDLInt && t.bits == 16;
  if (name == "i32")
    return t.code == kDLInt && t.bits == 32;
  if (name == "i64")
    return t.code == kDLInt && t.bits == 64;
  return false;
}

unsigned attnc::rt::detail::typeBytes(const std::string &name) {
  if (name == "i1" || name == "i8")
    return 1;
  if (name == "f16" || name == "bf16" || name == "i16")
    return 2;
  if (name == "f32" || name == "i32")
    return 4;
  if (name == "f64" || name == "i64")
    return 8;
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

namespace {
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

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string shapeString(const DLTensor &t) {
  return shapeString(std::vector<int64_t>(t.shape, t.shape + t.ndim));
}

/// Common checks of one tensor argument; fills its view.
Status checkTensor(const std::string &w, const DLTensor *t, int rank, const std::string &dtype,
                   const TargetRules &rules, TensorView &view) {
  if (!t)
    return Status::error(w + ": tensor is null");
  if (t->device.device_type != rules.device)
    return Status::error(w + ": device type " + std::to_string(int(t->device.device_type)) +
                         " is not " + rules.deviceName + " (" + rules.deviceReason + ")");
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
    if (rules.int32Sizes && t->shape[i] > std::numeric_limits<int32_t>::max())
      return Status::error(w + ": extent " + std::to_string(t->shape[i]) +
                           " does not fit int32 (the kernel takes i32 extents)");
    numel *= t->shape[i];
  }
  if (!t->data && numel > 0)
    return Status::error(w + ": data pointer is null");
  size_t elemBytes = std::max(1, t->dtype.bits / 8);
  char *base = static_cast<char *>(t->data) + t->byte_offset;
  if (reinterpret_cast<uintptr_t>(base) % elemBytes)
    return Status::error(w + ": data + byte_offset is not aligned to the element size");
  view.data = base;
  view.device = t->device.device_id;
  view.shape.assign(t->shape, t->shape + rank);
  view.strides.resize(rank);
  int64_t dense = 1;
  for (int i = rank - 1; i >= 0; --i) {
    view.strides[i] = t->strides ? t->strides[i] : dense;
    dense *= std::max<int64_t>(t->shape[i], 1);
    if (view.strides[i] < 0)
      return Status::error(w + ": negative strides are not supported");
  }
  return Status::ok();
}

/// The innermost dimension is contiguous; with `rowLen`, rows are packed too.
Status checkInnerStrides(const char *what, const TensorView &t, int64_t rowLen) {
  size_t r = t.shape.size();
  bool ok = t.strides[r - 1] == 1 || t.shape[r - 1] <= 1;
  if (rowLen > 0)
    ok = ok && (t.strides[r - 2] == rowLen || t.shape[r - 2] <= 1);
  if (!ok)
    return Status::error(std::string(what) +
                         ": unsupported strides; the innermost dimension must be "
                         "contiguous" +
                         (rowLen > 0 ? " and rows packed (stride of dim " + std::to_string(r - 2) +
                                           " == " + std::to_string(rowLen) + ")"
                                     : std::string()));
  return Status::ok();
}

/// The first element and every outer stride (of a dimension longer than 1)
/// are multiples of `align` bytes.
Status checkAlignment(const char *what, const TensorView &t, unsigned elemBytes, int64_t align,
                      const std::string &kernel) {
  if (align <= int64_t(elemBytes))
    return Status::ok();
  if (reinterpret_cast<uintptr_t>(t.data) % align)
    return Status::error(std::string(what) + ": data + byte_offset is not " +
                         std::to_string(align) + "-byte aligned (kernel '" + kernel +
                         "' needs it)");
  for (size_t i = 0; i + 1 < t.shape.size(); ++i)
    if (t.shape[i] > 1 && (t.strides[i] * int64_t(elemBytes)) % align)
      return Status::error(std::string(what) + ": stride " + std::to_string(t.strides[i]) +
                           " of dim " + std::to_string(i) + " is not a multiple of " +
                           std::to_string(align) + " bytes (kernel '" + kernel + "' needs it)");
  return Status::ok();
}

bool isDense(const TensorView &t) {
  int64_t dense = 1;
  for (int i = int(t.shape.size()) - 1; i >= 0; --i) {
    if (t.shape[i] > 1 && t.strides[i] != dense)
      return false;
    dense *= t.shape[i];
  }
  return true;
}

/// Converts a scalar argument to the parameter's type.
Status encodeScalar(const ParamInfo &p, double v, ParamValue &out) {
  bool isInt = p.type[0] == 'i';
  if (isInt && (v != std::floor(v) || std::isnan(v)))
    return Status::error("parameter '" + p.name + "' is " + p.type + ", got " + std::to_string(v));
  auto store = [&](const auto &x) {
    static_assert(sizeof(x) <= sizeof(out.scalarBits));
    std::memcpy(&out.scalarBits, &x, sizeof(x));
    out.scalarBytes = sizeof(x);
    return Status::ok();
  };
  auto range = [&](double lo, double hi) {
    return v >= lo && v <= hi
               ? Status::ok()
               : Status::error("parameter '" + p.name + "' is out of the " + p.type + " range");
  };
  if (p.type == "f32")
    return store(float(v));
  if (p.type == "f64")
    return store(v);
  if (p.type == "i1")
    return store(uint8_t(v != 0));
  if (p.type == "i8") {
    if (Status s = range(INT8_MIN, INT8_MAX); !s)
      return s;
    return store(int8_t(v));
  }
  if (p.type == "i16") {
    if (Status s = range(INT16_MIN, INT16_MAX); !s)
      return s;
    return store(int16_t(v));
  }
  if (p.type == "i32") {
    if (Status s = range(INT32_MIN, INT32_MAX); !s)
      return s;
    return store(int32_t(v));
  }
  if (p.type == "i64") {
    // 2^63 is the first double past INT64_MAX.
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
      return range(1, 0);
    return store(int64_t(v));
  }
  return Status::error("parameter '" + p.name + "' has unsupported type " + p.type);
}
} // namespace

Expected<LaunchPlan> attnc::rt::detail::planLaunch(const KernelInfo &ki, const LaunchArgs &a,
                                                   const TargetRules &rules) {
  LaunchPlan plan;
  if (Status s = checkTensor("q", a.q, 4, ki.dtype, rules, plan.q); !s)
    return s;
  if (Status s = checkTensor("k", a.k, 4, ki.dtype, rules, plan.k); !s)
    return s;
  if (Status s = checkTensor("v", a.v, 4, ki.dtype, rules, plan.v); !s)
    return s;
  if (Status s = checkTensor("o", a.o, 4, rules.outDtype, rules, plan.o); !s)
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
  const std::pair<const char *, const TensorView *> qkvo[] = {
      {"q", &plan.q}, {"k", &plan.k}, {"v", &plan.v}, {"o", &plan.o}};
  for (auto [what, view] : qkvo) {
    int64_t rowLen = what[0] == 'q' || what[0] == 'k' ? D : Dv;
    if (Status s = checkInnerStrides(what, *view, rules.packedRows ? rowLen : 0); !s)
      return s;
  }
  if (a.lse) {
    if (Status s = checkTensor("lse", a.lse, 3, "f32", rules, plan.lse); !s)
      return s;
    if (a.lse->shape[0] != B || a.lse->shape[1] != Hq || a.lse->shape[2] != Nq)
      return Status::error("lse: expected shape [" + std::to_string(B) + "," + std::to_string(Hq) +
                           "," + std::to_string(Nq) + "], got " + shapeString(*a.lse));
    if (Status s = checkInnerStrides("lse", plan.lse, 0); !s)
      return s;
    plan.hasLse = true;
  }
  if (a.qOffset < 0 || a.qOffset + Nq > std::numeric_limits<int32_t>::max())
    return Status::error("q_offset " + std::to_string(a.qOffset) +
                         " is negative or q_offset + Nq overflows int32");
  if (rules.device != kDLCPU) {
    // One kernel runs on one device.
    for (auto [what, view] : qkvo)
      if (view->device != plan.q.device)
        return Status::error(std::string(what) + ": on device " + std::to_string(view->device) +
                             ", but q is on device " + std::to_string(plan.q.device));
    if (plan.hasLse && plan.lse.device != plan.q.device)
      return Status::error("lse: on device " + std::to_string(plan.lse.device) +
                           ", but q is on device " + std::to_string(plan.q.device));
  }
  if (rules.align > 0) {
    unsigned qkvBytes = typeBytes(ki.dtype), oBytes = typeBytes(rules.outDtype);
    for (auto [what, view] : qkvo)
      if (Status s =
              checkAlignment(what, *view, what[0] == 'o' ? oBytes : qkvBytes, rules.align, ki.name);
          !s)
        return s;
  }
  plan.B = B, plan.Hq = Hq, plan.Hkv = Hkv, plan.Nq = Nq, plan.Nk = Nk, plan.D = D, plan.Dv = Dv;
  plan.qOffset = a.qOffset;

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
  plan.params.resize(ki.params.size());
  for (size_t i = 0; i < ki.params.size(); ++i) {
    const ParamInfo &p = ki.params[i];
    ParamValue &value = plan.params[i];
    value.info = &p;
    auto it = a.params.find(p.name);
    if (p.isTensor) {
      std::string what = "parameter '" + p.name + "'";
      if (it == a.params.end())
        return Status::error("tensor " + what + " is not bound");
      if (!it->second.isTensor)
        return Status::error(what + " is a tensor, but a scalar was given");
      const DLTensor *t = it->second.tensor;
      if (Status s = checkTensor(what, t, int(p.dims.size()), p.type, rules, value.tensor); !s)
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
                               (p.dims[d] == "N" ? " or more" : "") + " (shape " + shapeString(*t) +
                               ")");
      }
      if (!isDense(value.tensor))
        return Status::error(what + ": must be contiguous (row-major)");
      if (rules.device != kDLCPU && value.tensor.device != plan.q.device)
        return Status::error(what + ": on device " + std::to_string(value.tensor.device) +
                             ", but q is on device " + std::to_string(plan.q.device));
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
    if (Status s = encodeScalar(p, v, value); !s)
      return s;
  }
  return plan;
}

Expected<TensorView> attnc::rt::detail::denseTensor(const char *what, const DLTensor *t,
                                                    const std::string &dtype,
                                                    std::vector<int64_t> shape, DLDevice device) {
  if (!t)
    return Status::error(std::string(what) + ": missing");
  if (device.device_type == kDLCPU && t->device.device_type != kDLCPU)
    return Status::error(std::string(what) + ": expected a kDLCPU tensor (host memory)");
  if (device.device_type != kDLCPU &&
      (t->device.device_type != device.device_type || t->device.device_id != device.device_id))
    return Status::error(std::string(what) + ": expected a kDLCUDA tensor on device " +
                         std::to_string(device.device_id));
  if (!sameType(t->dtype, dtype))
    return Status::error(std::string(what) + ": expected " + dtype + " elements");
  if (t->ndim != int32_t(shape.size()))
    return Status::error(std::string(what) + ": expected rank " + std::to_string(shape.size()) +
                         ", got " + std::to_string(t->ndim));
  TensorView v;
  v.data = static_cast<char *>(t->data) + t->byte_offset;
  v.device = device.device_id;
  int64_t expect = 1;
  for (int i = t->ndim - 1; i >= 0; --i) {
    if (shape[i] >= 0 && t->shape[i] != shape[i])
      return Status::error(std::string(what) + ": dimension " + std::to_string(i) + " is " +
                           std::to_string(t->shape[i]) + ", expected " + std::to_string(shape[i]));
    if (t->strides && t->shape[i] > 1 && t->strides[i] != expect)
      return Status::error(std::string(what) + ": must be dense row-major");
    expect *= t->shape[i];
  }
  if (!v.data && expect > 0)
    return Status::error(std::string(what) + ": data pointer is null");
  v.shape.assign(t->shape, t->shape + t->ndim);
  v.strides.resize(t->ndim);
  for (int i = t->ndim - 1, s = 1; i >= 0; s *= int(t->shape[i]), --i)
    v.strides[i] = s;
  return v;
}

Expected<PoolViews> attnc::rt::detail::cachePoolViews(const KernelInfo &ki, const CachePools &c,
                                                      DLDevice device) {
  const CachePolicyInfo &policy = *ki.cache;
  if (!c.keyPool || !c.valuePool || c.keyPool->ndim != 3 || c.valuePool->ndim != 3)
    return Status::error("cache pools: expected [pages, P, D] and [pages, P, Dv] tensors");
  PoolViews v;
  const int64_t pagesN = c.keyPool->shape[0];
  v.P = c.keyPool->shape[1];
  v.rows = pagesN * v.P;
  if (policy.layout == "paged" && v.P != policy.pageSize)
    return Status::error("cache pools have pages of " + std::to_string(v.P) +
                         " slots, but policy '" + policy.name + "' pages hold " +
                         std::to_string(policy.pageSize));
  const CachePolicyInfo &sp = policy.storagePolicy();
  v.quant = sp.quantized();
  const int64_t perByte = sp.valuesPerByte();
  const std::string poolType = v.quant ? "i8" : sp.storage;
  auto kPool = denseTensor("key pool", c.keyPool, poolType, {-1, -1, ki.headDim / perByte}, device);
  if (!kPool)
    return kPool.error();
  auto vPool = denseTensor("value pool", c.valuePool, poolType,
                           {pagesN, v.P, ki.headDimV / perByte}, device);
  if (!vPool)
    return vPool.error();
  v.kPool = *kPool, v.vPool = *vPool;
  if (v.quant) {
    const int64_t kGroups = sp.scaleGroups(ki.headDim), vGroups = sp.scaleGroups(ki.headDimV);
    auto ks = denseTensor("key scales", c.keyScales, sp.scaleType, {pagesN, v.P, kGroups}, device);
    if (!ks)
      return ks.error();
    auto vs =
        denseTensor("value scales", c.valueScales, sp.scaleType, {pagesN, v.P, vGroups}, device);
    if (!vs)
      return vs.error();
    v.kScales = *ks, v.vScales = *vs;
  } else if (c.keyScales || c.valueScales) {
    return Status::error("cache scales given, but policy '" + sp.name + "' stores " + sp.storage);
  }
  return v;
}

Expected<int64_t> attnc::rt::detail::storePageSize(const KernelInfo &ki, const std::string &store,
                                                   int64_t numPages) {
  if (!ki.cache)
    return Status::error(store + ": the kernel was not compiled for a KV cache");
  const CachePolicyInfo &policy = *ki.cache;
  int64_t P = 0;
  for (const CachePolicyInfo &p :
       policy.headPolicies.empty() ? std::vector<CachePolicyInfo>{policy} : policy.headPolicies) {
    if (p.layout != "paged")
      return Status::error(store + ": policy '" + p.name + "' is not paged");
    P = p.pageSize;
  }
  if (numPages < 1 || P < 1)
    return Status::error(store + ": the pool needs at least one page");
  if (numPages > INT32_MAX / P)
    return Status::error(store + ": pool of " + std::to_string(numPages) +
                         " pages is too large (pool rows are i32)");
  return P;
}

/// Queries [first, first + count) of a [B, H, N, ...] tensor, with its
/// strides (the view's shape and strides live here: not copyable).
namespace {
struct QueryRows {
  int64_t shape[4] = {}, strides[4] = {};
  DLTensor t{};
  QueryRows(const DLTensor &from, int64_t first, int64_t count) : t(from) {
    int64_t dense = 1;
    for (int i = from.ndim - 1; i >= 0; --i) {
      shape[i] = from.shape[i];
      strides[i] = from.strides ? from.strides[i] : dense;
      dense *= from.shape[i];
    }
    shape[2] = count;
    t.shape = shape, t.strides = strides;
    t.byte_offset += uint64_t(first * strides[2] * ((from.dtype.bits * from.dtype.lanes + 7) / 8));
  }
  QueryRows(const QueryRows &) = delete;
};
} // namespace

Status attnc::rt::detail::launchScoringParts(const KvCache &cache, const DLTensor *q, DLTensor *o,
                                             DLTensor *lse, const QueriesLaunch &launch) {
  const bool shaped = q && q->ndim == 4 && o && o->ndim == 4 && (!lse || lse->ndim == 3);
  const int64_t last = shaped ? cache.scoringSplit(q->shape[2]) : 0;
  if (last == 0)
    return launch(q, o, lse, 0, /*leading=*/false);
  const int64_t Nq = q->shape[2];
  if (o->shape[2] != Nq || (lse && lse->shape[2] != Nq))
    return Status::error("o and lse must have q's " + std::to_string(Nq) + " queries");
  for (int part = 0; part < 2; ++part) {
    const int64_t first = part ? Nq - last : 0, count = part ? last : Nq - last;
    QueryRows qp(*q, first, count), op(*o, first, count);
    std::optional<QueryRows> lp;
    if (lse)
      lp.emplace(*lse, first, count);
    if (Status s = launch(&qp.t, &op.t, lp ? &lp->t : nullptr, part ? 0 : last, part == 0); !s)
      return s;
  }
  return Status::ok();
}
