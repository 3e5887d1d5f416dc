//===- CacheKernel.h - JIT a lib/ kernel for a KV cache (examples) --*- C++ -*-===//

#ifndef ATTNC_EXAMPLES_CACHEKERNEL_H
#define ATTNC_EXAMPLES_CACHEKERNEL_H

#include "attnc/JIT.h"
#include "attnc/Runtime/KvCache.h"

#include "attnc/Runtime/Half.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

/// Kernel `name` of lib/`file` compiled for bf16, head dim `D`, reading K/V
/// through its cache policy (KernelSpec::kvCache); null after printing why.
inline std::shared_ptr<attnc::rt::CpuKernel> cacheKernel(attnc::Compiler &compiler,
                                                         const std::string &file,
                                                         const std::string &name, int64_t D) {
  if (auto s = compiler.loadSource(std::string(ATTNC_LIB_DIR) + "/" + file); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return nullptr;
  }
  attnc::KernelSpec spec;
  spec.dtype = "bf16";
  spec.headDim = D;
  spec.kvCache = true;
  auto kernel = compiler.getKernel(name, spec);
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.message().c_str());
    return nullptr;
  }
  return *kernel;
}

/// A dense host view of `data` (`shape` must outlive it).
inline DLTensor hostView(void *data, DLDataType dtype, std::vector<int64_t> &shape) {
  DLTensor t{};
  t.data = data;
  t.device = {kDLCPU, 0};
  t.ndim = int(shape.size());
  t.dtype = dtype;
  t.shape = shape.data();
  return t;
}

/// A KV cache for `o`; null after printing why.
inline std::unique_ptr<attnc::rt::KvCache> makeCache(const attnc::rt::KvCacheOptions &o) {
  auto cache = attnc::rt::KvCache::create(o);
  if (!cache) {
    std::fprintf(stderr, "%s\n", cache.message().c_str());
    return nullptr;
  }
  return std::move(*cache);
}

/// Relative error of one output row `out` [D] against float64 attention of
/// the bf16 query `q` [D] over the keys at positions `kept`, whose bf16 K
/// and V rows `kAt(p)` and `vAt(p)` return.
inline double rowError(const float *out, const uint16_t *q, int64_t D,
                       const std::vector<int32_t> &kept,
                       const std::function<const uint16_t *(int32_t)> &kAt,
                       const std::function<const uint16_t *(int32_t)> &vAt) {
  using attnc::rt::bf16ToFloat;
  std::vector<double> s(kept.size()), ref(D, 0.0);
  double m = -INFINITY, sum = 0;
  for (size_t j = 0; j < kept.size(); ++j) {
    const uint16_t *k = kAt(kept[j]);
    double dot = 0;
    for (int64_t d = 0; d < D; ++d)
      dot += double(bf16ToFloat(q[d])) * bf16ToFloat(k[d]);
    s[j] = dot / std::sqrt(double(D));
    m = std::max(m, s[j]);
  }
  for (size_t j = 0; j < kept.size(); ++j) {
    double p = std::exp(s[j] - m);
    sum += p;
    const uint16_t *v = vAt(kept[j]);
    for (int64_t d = 0; d < D; ++d)
      ref[d] += p * bf16ToFloat(v[d]);
  }
  double diff = 0, norm = 0;
  for (int64_t d = 0; d < D; ++d) {
    double r = ref[d] / sum;
    diff += (out[d] - r) * (out[d] - r);
    norm += r * r;
  }
  return std::sqrt(diff / norm);
}

#endif // ATTNC_EXAMPLES_CACHEKERNEL_H
