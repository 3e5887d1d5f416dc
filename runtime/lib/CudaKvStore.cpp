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
  // H2O: each pool row's eviction score and logical position.
  CudaBuffer slotScores, slotPositions;
  std::vector<int64_t> slotShape;
  DLTensor scoresView{}, positionsView{};
  // chooseVictims' requests, victims and page lists, and the page-locked
  // memory the victims come down into.
  CudaBuffer victims;
  CudaHostBuffer victimsHost;
  // Scratch reused across calls: row pairs, tables, workspace, mass, LSE.
  CudaBuffer rows, pages, positions, lengths, queryPositions, workspace, mass, lse;
  // SnapKV: each row's slots in position order (KvCache::slotsByPosition).
  CudaBuffer order;
  std::vector<int32_t> hostOrder;
  std::vector<int64_t> kShape, vShape, ksShape, vsShape;
  DLTensor k{}, v{}, ks{}, vs{}; // over the pools (which never move)

  // The tables of the last decode on the device, mirrored here with the
  // same row pitches: a row per (sequence, KV head) of `sequences`.
  struct TableRow {
    uint64_t stamp = 0;           // KvCache::SequenceView::layoutStamp seen
    int64_t slots = 0, pages = 0; // uploaded
  };
  std::vector<int64_t> sequences;
  int64_t pagesPitch = 0, slotsPitch = 0;
  std::vector<TableRow> tableRows;
  std::vector<int32_t> hostPages, hostPositions, hostLengths, hostQueryPositions;
  int64_t maxLength = 0;
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
    s->scaleBytes = sp.scaleBytes();
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
                               {&b.kScales, s->quant ? rows * s->gK * s->scaleBytes : 0},
                               {&b.vScales, s->quant ? rows * s->gV * s->scaleBytes : 0}}) {
    if (!bytes)
      continue;
    // Whole 32-bit words, zeroed: empty slots read as zeros.
    if (Status st = ensure(*buffer, (bytes + 3) / 4 * 4, device); !st)
      return st;
    if (Status st = buffer->fill32(0); !st)
      return st;
  }
  // Budget scores live here, by pool row: H2O's added by the mass kernel,
  // SnapKV's pooled from the launch's mass table by the pool kernel (over
  // the slots in position order, which the host's tables give). A policy
  // with budgets of both kinds keeps them on the host (KvCache updates
  // them from each launch's mass table).
  s->slotMetadata = ki.cache->scoresSlots() && !(ki.cache->addsScores() && ki.cache->poolsScores());
  s->pooledScores = s->slotMetadata && ki.cache->poolsScores();
  if (s->slotMetadata) {
    b.slotShape = {numPages, P};
    for (CudaBuffer *buffer : {&b.slotScores, &b.slotPositions}) {
      if (Status st = ensure(*buffer, rows * 4, device); !st)
        return st;
      if (Status st = buffer->fill32(0); !st)
        return st;
    }
    b.scoresView = tensorOf(b.slotScores, b.slotShape, kF32);
    b.positionsView = tensorOf(b.slotPositions, b.slotShape, kI32);
  }
  b.k = tensorOf(b.kPool, b.kShape, poolType);
  b.v = tensorOf(b.vPool, b.vShape, poolType);
  if (s->quant) {
    const DLDataType scaleType{kDLFloat, uint8_t(8 * s->scaleBytes), 1};
    b.ks = tensorOf(b.kScales, b.ksShape, scaleType);
    b.vs = tensorOf(b.vScales, b.vsShape, scaleType);
  }
  return s;
}

CudaCacheView CudaKvStore::pools() const {
  CudaCacheView c;
  c.keyPool = &bufs->k, c.valuePool = &bufs->v;
  if (quant)
    c.keyScales = &bufs->ks, c.valueScales = &bufs->vs;
  if (slotMetadata)
    c.slotScores = &bufs->scoresView, c.slotPositions = &bufs->positionsView;
  return c;
}

namespace {
/// `flat` (rows of `width` i32) uploaded into `buffer` as an i32 [count,
/// width] tensor.
Status uploadTable(CudaBuffer &buffer, const std::vector<int32_t> &flat, int64_t width, int device,
                   std::vector<int64_t> &shape, DLTensor &out) {
  if (Status s = ensure(buffer, flat.size() * 4, device); !s)
    return s;
  if (Status s = buffer.upload(flat.data(), flat.size() * 4); !s)
    return s;
  shape = {int64_t(flat.size()) / width, width};
  out = tensorOf(buffer, shape, kI32);
  return Status::ok();
}
} // namespace

Status CudaKvStore::move(const std::vector<std::pair<int32_t, int32_t>> &moves) {
  std::vector<int32_t> flat;
  for (auto [from, to] : moves)
    flat.push_back(from), flat.push_back(to);
  std::vector<int64_t> shape;
  DLTensor rows;
  if (Status s = uploadTable(bufs->rows, flat, 2, dev, shape, rows); !s)
    return s;
  if (Status s = kernel->moveCacheRows(pools(), &rows); !s)
    return s;
  return cudaSynchronize(dev);
}

Status CudaKvStore::write(const DLTensor *k, const DLTensor *v,
                          const std::vector<std::pair<int32_t, int32_t>> &pairs,
                          const std::vector<int32_t> &positions) {
  if (positions.size() != pairs.size())
    return Status::error("CudaKvStore::write: a position per row");
  std::vector<int32_t> flat;
  for (size_t i = 0; i < pairs.size(); ++i)
    flat.insert(flat.end(), {pairs[i].first, pairs[i].second, positions[i]});
  std::vector<int64_t> shape;
  DLTensor rows;
  if (Status s = uploadTable(bufs->rows, flat, 3, dev, shape, rows); !s)
    return s;
  if (Status s = kernel->writeCacheRows(pools(), k, v, &rows); !s)
    return s;
  return cudaSynchronize(dev);
}

Status CudaKvStore::read(int32_t row, void *k, void *v, void *kScales, void *vScales) const {
  if (row < 0 || row >= rows())
    return Status::error("CudaKvStore: no pool row " + std::to_string(row));
  if (Status s = bufs->kPool.download(k, size_t(kRowBytes), size_t(row) * kRowBytes); !s)
    return s;
  if (Status s = bufs->vPool.download(v, size_t(vRowBytes), size_t(row) * vRowBytes); !s)
    return s;
  if (!quant)
    return Status::ok();
  const size_t kS = size_t(gK * scaleBytes), vS = size_t(gV * scaleBytes);
  if (Status s = bufs->kScales.download(kScales, kS, size_t(row) * kS); !s)
    return s;
  return bufs->vScales.download(vScales, vS, size_t(row) * vS);
}

Status CudaKvStore::chooseVictims(const std::vector<VictimRequest> &requests,
                                  std::vector<std::vector<int32_t>> &victims) {
  if (!slotMetadata)
    return KvStore::chooseVictims(requests, victims);
  victims.assign(requests.size(), {});
  if (requests.empty())
    return Status::ok();
  Buffers &b = *bufs;
  // One upload and one download (each a round trip, per append): the
  // buffer holds the requests (first page, slots, recent_from, keep,
  // cursor), then the page lists, then the victims. Only the requests and
  // pages go up (a prompt chunk's victims, 64 heads x 4096 slots, are 1 MB
  // the kernel writes); they come down into page-locked memory with the
  // cursors that count them.
  const size_t count = requests.size();
  int64_t total = 0;
  size_t pages = 0;
  for (const VictimRequest &r : requests)
    total += r.drop, pages += r.pages.size();
  const size_t pagesAt = count * 5, victimsAt = pagesAt + pages;
  std::vector<int32_t> flat(pagesAt);
  flat.reserve(victimsAt);
  int64_t cursor = 0;
  for (size_t i = 0; i < count; ++i) {
    const VictimRequest &r = requests[i];
    int32_t *row = &flat[i * 5];
    row[0] = int32_t(flat.size() - pagesAt); // its first page in the page lists
    row[1] = int32_t(r.slots), row[2] = int32_t(r.recentFrom), row[3] = int32_t(r.keep);
    row[4] = int32_t(cursor);
    flat.insert(flat.end(), r.pages.begin(), r.pages.end());
    cursor += r.drop;
  }
  if (Status s = ensure(b.victims, (victimsAt + size_t(total)) * 4, dev); !s)
    return s;
  if (Status s = b.victims.upload(flat.data(), victimsAt * 4); !s)
    return s;
  std::vector<int64_t> requestsShape{int64_t(count), 5}, victimsShape{total},
      pagesShape{int64_t(pages)};
  auto view = [&](size_t at, std::vector<int64_t> &shape) {
    DLTensor t = tensorOf(b.victims, shape, kI32);
    t.data = static_cast<int32_t *>(t.data) + at;
    return t;
  };
  DLTensor requestsT = view(0, requestsShape), victimsT = view(victimsAt, victimsShape),
           pagesT = view(pagesAt, pagesShape);
  if (Status s = kernel->chooseVictims(pools(), &pagesT, &requestsT, &victimsT); !s)
    return s;
  if (Status s = cudaSynchronize(dev); !s)
    return s;
  const size_t downBytes = (victimsAt + size_t(total)) * 4;
  if (b.victimsHost.size() < downBytes) {
    auto host = CudaHostBuffer::allocate(dev, downBytes);
    if (!host)
      return host.error();
    b.victimsHost = std::move(*host);
  }
  if (Status s = b.victims.download(b.victimsHost.data(), downBytes); !s)
    return s;
  // Each head's victims, checked (as many as asked, distinct, in range)
  // and put in ascending order by marking its slots in a bit set and
  // reading the set bits back (a sort per head was the likely bulk of a
  // 4.7 ms call for 64 heads dropping 4096 slots each on the H100, session
  // 17; a byte per slot still took 0.75 ms of the 1.9, session 18).
  const auto *cursors = static_cast<const int32_t *>(b.victimsHost.data()),
             *out = cursors + victimsAt;
  std::vector<uint64_t> marked;
  int64_t at = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const VictimRequest &r = requests[i];
    const int64_t chose = cursors[i * 5 + 4] - at;
    bool valid = chose == r.drop;
    marked.assign(size_t((r.slots + 63) / 64), 0);
    for (int64_t j = 0; valid && j < r.drop; ++j) {
      const int32_t slot = out[at + j];
      const uint64_t bit = uint64_t(1) << (slot & 63);
      valid = slot >= 0 && slot < r.slots && !(marked[size_t(slot >> 6)] & bit);
      if (valid)
        marked[size_t(slot >> 6)] |= bit;
    }
    at += r.drop;
    if (!valid)
      return Status::error("CudaKvStore: the victims kernel chose " + std::to_string(chose) +
                           " slots of " + std::to_string(r.slots) + " where " +
                           std::to_string(r.drop) + " distinct ones were to go");
    std::vector<int32_t> &v = victims[i];
    v.reserve(size_t(r.drop));
    for (size_t w = 0; w < marked.size(); ++w)
      for (uint64_t bits = marked[w]; bits; bits &= bits - 1)
        v.push_back(int32_t(w * 64 + size_t(__builtin_ctzll(bits))));
  }
  return Status::ok();
}

Status CudaKvStore::readScores(const std::vector<int32_t> &rows, std::vector<float> &scores) const {
  if (!slotMetadata)
    return KvStore::readScores(rows, scores);
  scores.assign(rows.size(), 0.f);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= this->rows())
      return Status::error("CudaKvStore: no pool row " + std::to_string(rows[i]));
    if (Status s = bufs->slotScores.download(&scores[i], 4, size_t(rows[i]) * 4); !s)
      return s;
  }
  return Status::ok();
}

Status CudaKvStore::syncTables(KvCache &cache, const std::vector<int64_t> &sequences, int64_t Nq,
                               int64_t queriesAfter) {
  Buffers &b = *bufs;
  const int64_t Hkv = cache.options().numKvHeads, B = int64_t(sequences.size());
  const int64_t rowsT = B * Hkv;
  std::vector<KvCache::SequenceView> views;
  int64_t maxPages = 1;
  b.maxLength = 0;
  for (int64_t seq : sequences) {
    for (int64_t h = 0; h < Hkv; ++h) {
      auto v = cache.view(seq, h);
      if (!v)
        return v.error();
      if (v->length < Nq)
        return Status::error("sequence " + std::to_string(seq) + " has " +
                             std::to_string(v->length) + " tokens, fewer than the " +
                             std::to_string(Nq) + " queries (append them first)");
      maxPages = std::max<int64_t>(maxPages, int64_t(v->pages->size()));
      b.maxLength = std::max(b.maxLength, v->slots);
      views.push_back(*v);
    }
  }
  tableUploadBytes = 0;
  // Caches whose slots are their positions launch without a positions
  // table (the kernel reads none): none is kept here either.
  const bool withPositions = !cache.slotsArePositions();
  // Other sequences, or rows past the pitch: every row again, with room
  // for a quarter more pages, so that decode steps append in place.
  if (sequences != b.sequences || maxPages > b.pagesPitch) {
    b.sequences = sequences;
    b.pagesPitch = maxPages + maxPages / 4 + 1;
    b.slotsPitch = b.pagesPitch * P;
    b.hostPages.assign(size_t(rowsT * b.pagesPitch), 0);
    b.hostPositions.assign(withPositions ? size_t(rowsT * b.slotsPitch) : 0, -1);
    b.tableRows.assign(size_t(rowsT), Buffers::TableRow{});
    if (Status s = ensure(b.pages, b.hostPages.size() * 4, dev); !s)
      return s;
    if (withPositions)
      if (Status s = ensure(b.positions, b.hostPositions.size() * 4, dev); !s)
        return s;
    for (int64_t r = 0; r < rowsT; ++r) {
      const KvCache::SequenceView &v = views[r];
      std::copy(v.pages->begin(), v.pages->end(), b.hostPages.begin() + r * b.pagesPitch);
      if (withPositions)
        std::copy(v.pos->begin(), v.pos->begin() + v.slots,
                  b.hostPositions.begin() + r * b.slotsPitch);
      b.tableRows[r] = {v.layoutStamp, v.slots, int64_t(v.pages->size())};
    }
    if (Status s = b.pages.upload(b.hostPages.data(), b.hostPages.size() * 4); !s)
      return s;
    if (withPositions)
      if (Status s = b.positions.upload(b.hostPositions.data(), b.hostPositions.size() * 4); !s)
        return s;
    tableUploadBytes = (b.hostPages.size() + b.hostPositions.size()) * 4;
  } else {
    // Per row, the range [from, to) of its pages and positions that
    // changed: past the uploaded ones while the layout stamp stays, else
    // the whole row (dropped and moved slots; the old tail back to -1).
    // Rows with equal ranges (a sequence's heads, as a rule) go up in one
    // rectangle.
    struct Range {
      int64_t from = 0, to = 0;
    };
    std::vector<Range> pageRanges(static_cast<size_t>(rowsT)),
        posRanges(static_cast<size_t>(rowsT));
    for (int64_t r = 0; r < rowsT; ++r) {
      const KvCache::SequenceView &v = views[r];
      Buffers::TableRow &row = b.tableRows[r];
      const int64_t pages = int64_t(v.pages->size());
      int32_t *hp = b.hostPages.data() + r * b.pagesPitch;
      int32_t *hs = withPositions ? b.hostPositions.data() + r * b.slotsPitch : nullptr;
      const bool appended =
          v.layoutStamp == row.stamp && v.slots >= row.slots && pages >= row.pages;
      Range pr{appended ? row.pages : 0, std::max(pages, row.pages)};
      Range sr{appended ? row.slots : 0, std::max(v.slots, row.slots)};
      std::fill(hp + pr.from, hp + pr.to, 0);
      std::copy(v.pages->begin() + pr.from, v.pages->end(), hp + pr.from);
      if (hs) {
        std::fill(hs + sr.from, hs + sr.to, -1);
        std::copy(v.pos->begin() + sr.from, v.pos->begin() + v.slots, hs + sr.from);
      }
      pageRanges[r] = pr, posRanges[r] = sr;
      row = {v.layoutStamp, v.slots, pages};
    }
    auto upload = [&](CudaBuffer &buffer, const std::vector<int32_t> &host, int64_t pitch,
                      const std::vector<Range> &ranges) -> Status {
      // Most of the table changed (rows of a sliding window drop a slot
      // each step): one copy of all of it beats a rectangle per sequence.
      size_t changed = 0;
      for (const Range &g : ranges)
        changed += size_t(g.to - g.from);
      if (2 * changed > host.size()) {
        tableUploadBytes += host.size() * 4;
        return buffer.upload(host.data(), host.size() * 4);
      }
      for (int64_t r = 0; r < rowsT;) {
        int64_t end = r + 1;
        while (end < rowsT && ranges[end].from == ranges[r].from && ranges[end].to == ranges[r].to)
          ++end;
        const Range &g = ranges[r];
        if (g.to > g.from) {
          const size_t offset = size_t(r * pitch + g.from) * 4, width = size_t(g.to - g.from) * 4;
          if (Status s = buffer.uploadRect(host.data() + r * pitch + g.from, size_t(pitch) * 4,
                                           width, size_t(end - r), offset, size_t(pitch) * 4);
              !s)
            return s;
          tableUploadBytes += width * size_t(end - r);
        }
        r = end;
      }
      return Status::ok();
    };
    if (Status s = upload(b.pages, b.hostPages, b.pagesPitch, pageRanges); !s)
      return s;
    if (withPositions)
      if (Status s = upload(b.positions, b.hostPositions, b.slotsPitch, posRanges); !s)
        return s;
  }
  // Lengths and query positions: a few words, every call.
  b.hostLengths.assign(size_t(rowsT), 0);
  b.hostQueryPositions.assign(size_t(B), 0);
  for (int64_t r = 0; r < rowsT; ++r) {
    b.hostLengths[r] = int32_t(views[r].slots);
    b.hostQueryPositions[r / Hkv] = int32_t(views[r].length - Nq - queriesAfter);
  }
  for (auto [buffer, host] :
       {std::pair{&b.lengths, &b.hostLengths}, {&b.queryPositions, &b.hostQueryPositions}}) {
    if (Status s = ensure(*buffer, host->size() * 4, dev); !s)
      return s;
    if (Status s = buffer->upload(host->data(), host->size() * 4); !s)
      return s;
  }
  return Status::ok();
}

Status CudaKvStore::decode(KvCache &cache, const std::vector<int64_t> &sequences, const DLTensor *q,
                           DLTensor *o, DLTensor *lse, const std::map<std::string, Arg> &params) {
  if (cache.poolStore() != this)
    return Status::error("CudaKvStore::decode: the cache does not keep its pools in this store");
  if (!q || q->ndim != 4)
    return Status::error("q: expected a [B, Hq, Nq, D] tensor");
  if (sequences.empty())
    return Status::error("CudaKvStore::decode: no sequences");
  return detail::launchScoringParts(
      cache, q, o, lse,
      [&](const DLTensor *q, DLTensor *o, DLTensor *lse, int64_t queriesAfter, bool leading) {
        return decodeQueries(cache, sequences, q, o, lse, params, queriesAfter, leading);
      });
}

Status CudaKvStore::decodeQueries(KvCache &cache, const std::vector<int64_t> &sequences,
                                  const DLTensor *q, DLTensor *o, DLTensor *lse,
                                  const std::map<std::string, Arg> &params, int64_t queriesAfter,
                                  bool leading) {
  const int64_t B = int64_t(sequences.size()), Hq = q->shape[1], Nq = q->shape[2];
  const int64_t Hkv = cache.options().numKvHeads;
  if (Status s = syncTables(cache, sequences, Nq, queriesAfter); !s) {
    bufs->sequences.clear(); // the device tables may be half updated
    return s;
  }
  Buffers &b = *bufs;
  const int64_t rowsT = B * Hkv, maxSlots = b.slotsPitch;
  std::vector<int64_t> pagesShape{rowsT, b.pagesPitch}, posShape{rowsT, maxSlots}, lenShape{rowsT},
      qposShape{B};
  DLTensor pages = tensorOf(b.pages, pagesShape, kI32), pos = tensorOf(b.positions, posShape, kI32),
           len = tensorOf(b.lengths, lenShape, kI32),
           qpos = tensorOf(b.queryPositions, qposShape, kI32);
  CudaCacheLaunchArgs a;
  a.q = q, a.o = o, a.lse = lse;
  a.cache = pools();
  a.cache.pages = &pages, a.cache.lengths = &len;
  // Positions the kernel would read as its slots' indices stay here.
  a.cache.positions = cache.slotsArePositions() ? nullptr : &pos;
  a.cache.queryPositions = &qpos;
  a.cache.maxLength = std::max<int64_t>(b.maxLength, 1);
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
  std::vector<int64_t> massShape{rowsT, maxSlots}, lseShape{B, Hq, Nq};
  DLTensor massT, lseT, orderT;
  const bool budget = cache.scoresSlots();
  // H2O: the mass goes to the pool rows' scores here (a.cache has them).
  // SnapKV: to the mass table, which the pool kernel pools into them over
  // the slots in position order (uploaded first: it does not depend on the
  // launch). A policy with budgets of both kinds sends the table to the
  // cache.
  const bool pool = budget && pooledScores;
  const bool massTable = budget && (!slotMetadata || pool);
  if (pool) {
    a.cache.slotScores = a.cache.slotPositions = nullptr;
    if (Status s = cache.slotsByPosition(sequences, maxSlots, b.hostOrder); !s)
      return s;
    if (Status s = ensure(b.order, b.hostOrder.size() * 4, dev); !s)
      return s;
    if (Status s = b.order.upload(b.hostOrder.data(), b.hostOrder.size() * 4); !s)
      return s;
    orderT = tensorOf(b.order, massShape, kI32);
  }
  if (massTable) {
    if (Status s = ensure(b.mass, size_t(rowsT * maxSlots) * 4, dev); !s)
      return s;
    if (Status s = b.mass.fill32(0); !s)
      return s;
    massT = tensorOf(b.mass, massShape, kF32);
    a.mass = &massT;
  }
  if (budget) {
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
  if (pool)
    if (Status s =
            kernel->poolScores(pools(), &massT, &orderT, &pages, cache.options().snapkvPooling / 2);
        !s)
      return s;
  if (Status s = cudaSynchronize(dev); !s)
    return s;
  if (!massTable || pool)
    return Status::ok();
  std::vector<float> mass(size_t(rowsT * maxSlots));
  if (Status s = b.mass.download(mass.data(), mass.size() * 4); !s)
    return s;
  return cache.updateScores(sequences, mass, maxSlots, leading);
}
