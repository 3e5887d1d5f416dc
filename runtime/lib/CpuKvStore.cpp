//===- CpuKvStore.cpp - A KV cache's pools written by generated code ------===//
//
// The pools of a KvCache in host memory (KvCache.h), written only through
// the kernel's generated append and move functions: KvCache decides which
// pool rows change, this store hands the rows to the kernel.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/KvCache.h"

#include "Validate.h"

#include <cstring>

using namespace attnc::rt;

namespace {
/// A dense DLTensor over host `data` (shape kept by the caller).
DLTensor hostTensor(void *data, const std::vector<int64_t> &shape, DLDataType dtype) {
  DLTensor t{};
  t.data = data;
  t.device = {kDLCPU, 0};
  t.ndim = int(shape.size());
  t.dtype = dtype;
  t.shape = const_cast<int64_t *>(shape.data());
  return t;
}

/// `pairs` as the i32 [count, 2] table the cache functions take, over
/// `flat`.
DLTensor pairTable(const std::vector<std::pair<int32_t, int32_t>> &pairs,
                   std::vector<int32_t> &flat, std::vector<int64_t> &shape) {
  flat.clear();
  for (auto [a, b] : pairs)
    flat.push_back(a), flat.push_back(b);
  shape = {int64_t(pairs.size()), 2};
  return hostTensor(flat.data(), shape, {kDLInt, 32, 1});
}
} // namespace

Expected<std::shared_ptr<CpuKvStore>> CpuKvStore::create(std::shared_ptr<const CpuKernel> kernel,
                                                         int64_t numPages) {
  if (!kernel)
    return Status::error("CpuKvStore: no kernel");
  const KernelInfo &ki = kernel->info();
  auto pageSize = detail::storePageSize(ki, "CpuKvStore", numPages);
  if (!pageSize)
    return pageSize.error();
  const int64_t P = *pageSize;
  // The storage the policy's heads share.
  const CachePolicyInfo &sp = ki.cache->storagePolicy();
  std::shared_ptr<CpuKvStore> s(new CpuKvStore());
  s->kernel = std::move(kernel);
  s->numPages = numPages;
  s->P = P;
  const bool quant = sp.quantized();
  const int64_t D = ki.headDim, Dv = ki.headDimV, per = sp.valuesPerByte();
  const int64_t elemBytes = quant ? 1 : detail::typeBytes(sp.storage);
  HostPools &h = s->host;
  h.storage = sp.storage;
  h.keyRowBytes = D / per * elemBytes;
  h.valueRowBytes = Dv / per * elemBytes;
  const DLDataType poolType = quant                 ? DLDataType{kDLInt, 8, 1}
                              : sp.storage == "f32" ? DLDataType{kDLFloat, 32, 1}
                              : sp.storage == "f16" ? DLDataType{kDLFloat, 16, 1}
                                                    : DLDataType{kDLBfloat, 16, 1};
  s->kShape = {numPages, P, D / per};
  s->vShape = {numPages, P, Dv / per};
  const size_t rows = size_t(numPages * P);
  s->kPool.assign(rows * size_t(h.keyRowBytes), 0);
  s->vPool.assign(rows * size_t(h.valueRowBytes), 0);
  h.keyPool = s->kPool.data();
  h.valuePool = s->vPool.data();
  if (quant) {
    h.keyGroups = sp.scaleGroups(D);
    h.valueGroups = sp.scaleGroups(Dv);
    s->ksShape = {numPages, P, h.keyGroups};
    s->vsShape = {numPages, P, h.valueGroups};
    h.scaleBytes = sp.scaleBytes();
    s->kScales.assign(rows * size_t(h.keyGroups * h.scaleBytes), 0);
    s->vScales.assign(rows * size_t(h.valueGroups * h.scaleBytes), 0);
    h.keyScales = s->kScales.data();
    h.valueScales = s->vScales.data();
    const DLDataType scaleType{kDLFloat, uint8_t(8 * h.scaleBytes), 1};
    s->ksView = hostTensor(h.keyScales, s->ksShape, scaleType);
    s->vsView = hostTensor(h.valueScales, s->vsShape, scaleType);
  }
  // Views over the pools, which never move.
  s->kView = hostTensor(h.keyPool, s->kShape, poolType);
  s->vView = hostTensor(h.valuePool, s->vShape, poolType);
  return s;
}

CachePools CpuKvStore::pools() const {
  CachePools c;
  c.keyPool = &kView, c.valuePool = &vView;
  if (host.keyScales)
    c.keyScales = &ksView, c.valueScales = &vsView;
  return c;
}

Status CpuKvStore::move(const std::vector<std::pair<int32_t, int32_t>> &moves) {
  std::vector<int32_t> flat;
  std::vector<int64_t> shape;
  DLTensor table = pairTable(moves, flat, shape);
  return kernel->moveCacheRows(pools(), &table);
}

Status CpuKvStore::write(const DLTensor *k, const DLTensor *v,
                         const std::vector<std::pair<int32_t, int32_t>> &rows,
                         const std::vector<int32_t> &) {
  std::vector<int32_t> flat;
  std::vector<int64_t> shape;
  DLTensor table = pairTable(rows, flat, shape);
  return kernel->writeCacheRows(pools(), k, v, &table);
}

Status CpuKvStore::read(int32_t row, void *k, void *v, void *kScales, void *vScales) const {
  if (row < 0 || row >= rows())
    return Status::error("CpuKvStore: no pool row " + std::to_string(row));
  const size_t kBytes = size_t(host.keyRowBytes), vBytes = size_t(host.valueRowBytes);
  std::memcpy(k, kPool.data() + size_t(row) * kBytes, kBytes);
  std::memcpy(v, vPool.data() + size_t(row) * vBytes, vBytes);
  if (!host.keyScales)
    return Status::ok();
  const size_t kS = size_t(host.keyGroups * host.scaleBytes),
               vS = size_t(host.valueGroups * host.scaleBytes);
  std::memcpy(kScales, &this->kScales[size_t(row) * kS], kS);
  std::memcpy(vScales, &this->vScales[size_t(row) * vS], vS);
  return Status::ok();
}
