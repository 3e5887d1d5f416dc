//===- CudaKvStore.cpp - A KV cache's pools on a GPU ----------------------===//
//
// The pools of a KvCache in device memory (Cuda.h): KvCache decides which
// pool rows change, this store runs the kernel's generated append and move
// kernels on them, and decode() launches attention over the cache with its
// tables uploaded.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/Cuda.h"

#include "Validate.h"

#include <algorithm>

using namespace attnc::rt;

namespace {
const DLDataType kI32{kDLInt, 32, 1}, kF32{kDLFloat, 32, 1};

/// A dense DLTensor over `buffer` (shape kept by the caller).
DLTensor tensorOf(const CudaBuffer &buffer, std::vector<int64_t> &shape, DLDataType dtype) {
  DLTensor t{};
  t.data = buffer.data();
  t.device = {kDLCUDA, buffer.device()};
  t.ndim = int(shape.size());
  t.dtype = dtype;
  t.shape = shape.data();
  return t;
}

/// `buffer` holding at least `bytes` on `device`.
Status ensure(CudaBuffer &buffer, size_t bytes, int device) {
  bytes = std::max<size_t>(bytes, 4);
  if (buffer.size() >= bytes)
    return Status::ok();
  auto b = CudaBuffer::allocate(device, bytes);
  if (!b)
    return b.error();
  buffer = std::move(*b);
  return Status::ok();
}
} // namespace

struct CudaKvStore::Buffers {
  CudaBuffer kPool, vPool, kScales, vScales;
  // Scratch reused across calls: row pairs, tables, workspace, mass, LSE.
  CudaBuffer rows, pages, positions, lengths, queryPositions, workspace, mass, lse;
  std::vector<int64_t> kShape, vShape, ksShape, vsShape;
  DLTensor k{}, v{}, ks{}, vs{}; // over the pools (which never move)
};

CudaKvStore::~CudaKvStore() = default;

Expected<std::shared_ptr<CudaKvStore>> CudaKvStore::create(std::shared_ptr<const CudaKernel> kernel,
                                                           int64_t numPages, int device) {
  if (!kernel)
    return Status::error("CudaKvStore: no kernel");
  const CudaKernelInfo &ki = kernel->info();
  auto pageSize = detail::storePageSize(ki, "CudaKvStore", numPages);
  if (!pageSize)
    return pageSize.error();
  const int64_t P = *pageSize;
  // The storage the policy's heads share.
  const CachePolicyInfo &sp = ki.cache->storagePolicy();
  std::shared_ptr<CudaKvStore> s(new CudaKvStore());
  s->kernel = std::move(kernel);
  s->bufs = std::make_unique<Buffers>();
  s->dev = device;
  s->numPages = numPages;
  s->P = P;
  s->quant = sp.quantized();
  const int64_t D = ki.headDim, Dv = ki.headDimV, per = sp.valuesPerByte();
  const int64_t elem = s->quant ? 1 : 2;
  s->kRowBytes = D / per * elem;
  s->vRowBytes = Dv / per * elem;
  if (s->quant) {
    s->gK = sp.scaleGroups(D);
    s->gV = sp.scaleGroups(Dv);
  }
  Buffers &b = *s->bufs;
  const DLDataType poolType = s->quant              ? DLDataType{kDLInt, 8, 1}
                              : sp.storage == "f16" ? DLDataType{kDLFloat, 16, 1}
                                                    : DLDataType{kDLBfloat, 16, 1};
  b.kShape = {numPages, P, D / per};
  b.vShape = {numPages, P, Dv / per};
  b.ksShape = {numPages, P, s->gK};
  b.vsShape = {numPages, P, s->gV};
  const size_t rows = size_t(numPages * P);
  for (auto [buffer, bytes] : {std::pair{&b.kPool, rows * size_t(s->kRowBytes)},
                               {&b.vPool, rows * size_t(s->vRowBytes)},
                               {&b.kScales, s->quant ? rows * s->gK * 4 : 0},
                               {&b.vScales, s->quant ? rows * s->gV * 4 : 0}}) {
    if (!bytes)
      continue;
    // Whole 32-bit words, zeroed: empty slots read as zeros.
    if (Status st = ensure(*buffer, (bytes + 3) / 4 * 4, device); !st)
      return st;
    if (Status st = buffer->fill32(0); !st)
      return st;
  }
  b.k = tensorOf(b.kPool, b.kShape, poolType);
  b.v = tensorOf(b.vPool, b.vShape, poolType);
  if (s->quant) {
    b.ks = tensorOf(b.kScales, b.ksShape, kF32);
    b.vs = tensorOf(b.vScales, b.vsShape, kF32);
  }
  return s;
}

CudaCacheView CudaKvStore::pools() const {
  CudaCacheView c;
  c.keyPool = &bufs->k, c.valuePool = &bufs->v;
  if (quant)
    c.keyScales = &bufs->ks, c.valueScales = &bufs->vs;
  return c;
}

namespace {
/// `pairs` uploaded into `buffer` as an i32 [count, 2] tensor.
Status uploadPairs(CudaBuffer &buffer, const std::vector<std::pair<int32_t, int32_t>> &pairs,
                   int device, std::vector<int64_t> &shape, DLTensor &out) {
  std::vector<int32_t> flat;
  for (auto [a, b] : pairs)
    flat.push_back(a), flat.push_back(b);
  if (Status s = ensure(buffer, flat.size() * 4, device); !s)
    return s;
  if (Status s = buffer.upload(flat.data(), flat.size() * 4); !s)
    return s;
  shape = {int64_t(pairs.size()), 2};
  out = tensorOf(buffer, shape, kI32);
  return Status::ok();
}
} // namespace

Status CudaKvStore::move(const std::vector<std::pair<int32_t, int32_t>> &moves) {
  std::vector<int64_t> shape;
  DLTensor rows;
  if (Status s = uploadPairs(bufs->rows, moves, dev, shape, rows); !s)
    return s;
  if (Status s = kernel->moveCacheRows(pools(), &rows); !s)
    return s;
  return cudaSynchronize(dev);
}

Status CudaKvStore::write(const DLTensor *k, const DLTensor *v,
                          const std::vector<std::pair<int32_t, int32_t>> &pairs) {
  std::vector<int64_t> shape;
  DLTensor rows;
  if (Status s = uploadPairs(bufs->rows, pairs, dev, shape, rows); !s)
    return s;
  if (Status s = kernel->writeCacheRows(pools(), k, v, &rows); !s)
    return s;
  return cudaSynchronize(dev);
}

Status CudaKvStore::read(int32_t row, void *k, void *v, float *kScales, float *vScales) const {
  if (row < 0 || row >= rows())
    return Status::error("CudaKvStore: no pool row " + std::to_string(row));
  if (Status s = bufs->kPool.download(k, size_t(kRowBytes), size_t(row) * kRowBytes); !s)
    return s;
  if (Status s = bufs->vPool.download(v, size_t(vRowBytes), size_t(row) * vRowBytes); !s)
    return s;
  if (!quant)
    return Status::ok();
  if (Status s = bufs->kScales.download(kScales, size_t(gK) * 4, size_t(row) * gK * 4); !s)
    return s;
  return bufs->vScales.download(vScales, size_t(gV) * 4, size_t(row) * gV * 4);
}

Status CudaKvStore::decode(KvCache &cache, const std::vector<int64_t> &sequences, const DLTensor *q,
                           DLTensor *o, DLTensor *lse, const std::map<std::string, Arg> &params) {
  if (cache.poolStore() != this)
    return Status::error("CudaKvStore::decode: the cache does not keep its pools in this store");
  if (!q || q->ndim != 4)
    return Status::error("q: expected a [B, Hq, Nq, D] tensor");
  const int64_t B = int64_t(sequences.size()), Hq = q->shape[1], Nq = q->shape[2];
  const int64_t Hkv = cache.options().numKvHeads;
  auto t = cache.tables(sequences, Nq);
  if (!t)
    return t.error();
  Buffers &b = *bufs;
  const int64_t rowsT = B * Hkv;
  std::vector<int64_t> pagesShape{rowsT, t->maxPages}, posShape{rowsT, t->maxSlots},
      lenShape{rowsT}, qposShape{B};
  for (auto [buffer, data, n] :
       {std::tuple{&b.pages, t->pages.data(), t->pages.size()},
        {&b.positions, t->positions.data(), t->positions.size()},
        {&b.lengths, t->lengths.data(), t->lengths.size()},
        {&b.queryPositions, t->queryPositions.data(), t->queryPositions.size()}}) {
    if (Status s = ensure(*buffer, n * 4, dev); !s)
      return s;
    if (n)
      if (Status s = buffer->upload(data, n * 4); !s)
        return s;
  }
  DLTensor pages = tensorOf(b.pages, pagesShape, kI32), pos = tensorOf(b.positions, posShape, kI32),
           len = tensorOf(b.lengths, lenShape, kI32),
           qpos = tensorOf(b.queryPositions, qposShape, kI32);
  CudaCacheLaunchArgs a;
  a.q = q, a.o = o, a.lse = lse;
  a.cache = pools();
  a.cache.pages = &pages, a.cache.positions = &pos, a.cache.lengths = &len;
  a.cache.queryPositions = &qpos;
  a.cache.maxLength = std::max<int64_t>(t->maxLength, 1);
  a.params = params;
  auto plan = kernel->decodePlan(B, Hq, Hkv, Nq, a.cache.maxLength, dev);
  if (!plan)
    return plan.error();
  if (plan->workspaceBytes) {
    if (Status s = ensure(b.workspace, plan->workspaceBytes, dev); !s)
      return s;
    a.workspace = b.workspace.data(), a.workspaceBytes = b.workspace.size();
  }
  // Budget policies: the mass table (zeroed) and an LSE if none is wanted.
  std::vector<int64_t> massShape{rowsT, t->maxSlots}, lseShape{B, Hq, Nq};
  DLTensor massT, lseT;
  const bool budget = cache.scoresSlots();
  if (budget) {
    if (Status s = ensure(b.mass, size_t(rowsT * t->maxSlots) * 4, dev); !s)
      return s;
    if (Status s = b.mass.fill32(0); !s)
      return s;
    massT = tensorOf(b.mass, massShape, kF32);
    a.mass = &massT;
    a.massRows = cache.scoringQueries(Nq);
    if (!lse) {
      if (Status s = ensure(b.lse, size_t(B * Hq * Nq) * 4, dev); !s)
        return s;
      lseT = tensorOf(b.lse, lseShape, kF32);
      a.lse = &lseT;
    }
  }
  if (Status s = kernel->launch(a); !s)
    return s;
  if (Status s = cudaSynchronize(dev); !s)
    return s;
  if (!budget)
    return Status::ok();
  std::vector<float> mass(size_t(rowsT * t->maxSlots));
  if (Status s = b.mass.download(mass.data(), mass.size() * 4); !s)
    return s;
  return cache.updateScores(sequences, mass, t->maxSlots);
}
