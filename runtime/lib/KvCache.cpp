//===- KvCache.cpp - KV caches for attention over cache policies ---------===//

#include "attnc/Runtime/KvCache.h"

#include "Validate.h"

#include "attnc/Runtime/Half.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

using namespace attnc::rt;

namespace {
/// Checks one (non per-head) policy's retention.
Status checkRetention(const CachePolicyInfo &p) {
  if (p.retention == "budget" && (p.budget < 1 || (p.evict != "h2o" && p.evict != "snapkv")))
    return Status::error("cache policy '" + p.name +
                         "': budget retention needs a positive budget and h2o or snapkv scores");
  if (p.retention != "all" && p.retention != "sink_window" && p.retention != "budget")
    return Status::error("cache policy '" + p.name + "': unknown retention '" + p.retention + "'");
  if (p.retention == "sink_window" && p.window < 1)
    return Status::error("cache policy '" + p.name + "': the window must hold a token");
  return Status::ok();
}
} // namespace

Expected<std::unique_ptr<KvCache>> KvCache::create(const KvCacheOptions &o) {
  const CachePolicyInfo &p = o.policy;
  if (o.numKvHeads < 1 || o.headDim < 1 || o.headDimV < 0)
    return Status::error("KV cache: numKvHeads and headDim must be positive");
  if (o.numPages < 1)
    return Status::error("KV cache: the pool needs at least one page");
  // The policies the heads follow: all the same, or per_head's choices.
  std::vector<const CachePolicyInfo *> used;
  if (p.layout == "per_head") {
    if (p.headPolicies.empty())
      return Status::error("cache policy '" + p.name + "': per_head without policies");
    if (int64_t(o.headKinds.size()) != o.numKvHeads)
      return Status::error("cache policy '" + p.name + "' is per head: headKinds must give " +
                           std::to_string(o.numKvHeads) + " entries (one per KV head), got " +
                           std::to_string(o.headKinds.size()));
    for (int32_t kind : o.headKinds) {
      if (kind < 0 || kind >= int32_t(p.headPolicies.size()))
        return Status::error("cache policy '" + p.name + "': head kind " + std::to_string(kind) +
                             " is not one of its " + std::to_string(p.headPolicies.size()) +
                             " policies");
      used.push_back(&p.headPolicies[kind]);
    }
  } else {
    if (!o.headKinds.empty())
      return Status::error("cache policy '" + p.name + "' is not per head: no headKinds");
    used.push_back(&p);
  }
  const CachePolicyInfo &first = *used.front();
  int64_t pageSize = 0;
  bool h2o = false, snapkv = false;
  for (const CachePolicyInfo *u : used) {
    if (Status s = checkRetention(*u); !s)
      return s;
    if (u->retention == "budget") {
      (u->evict == "snapkv" ? snapkv : h2o) = true;
      int64_t recent = o.recentTokens < 0 ? u->budget / 2 : o.recentTokens;
      if (recent > u->budget)
        return Status::error("KV cache: recentTokens " + std::to_string(recent) +
                             " exceeds the budget of '" + u->name + "' (" +
                             std::to_string(u->budget) + ")");
    }
    if (u->storage != first.storage || u->scale != first.scale || u->groupSize != first.groupSize)
      return Status::error("cache policy '" + p.name +
                           "': heads with different storage are not supported yet");
    if (u->layout == "paged") {
      if (u->pageSize < 1)
        return Status::error("cache policy '" + u->name + "': page size must be positive");
      if (pageSize && pageSize != u->pageSize)
        return Status::error("cache policy '" + p.name +
                             "': heads with different page sizes are not supported yet");
      pageSize = u->pageSize;
    } else if (u->layout != "contiguous") {
      return Status::error("cache policy '" + u->name + "': unknown layout '" + u->layout + "'");
    }
  }
  const std::string &storage = first.storage;
  const bool nibbles = first.valuesPerByte() == 2;
  const bool quant = first.quantized();
  unsigned bytes = quant ? 1 : detail::typeBytes(storage);
  if (storage != "f32" && storage != "bf16" && storage != "f16" && !quant)
    return Status::error("cache policy '" + p.name + "': storage '" + storage +
                         "' is not supported yet (f32, bf16, f16, i8, i4, f8e4m3)");
  if (nibbles && (o.headDim % 2 || (o.headDimV > 0 ? o.headDimV : o.headDim) % 2))
    return Status::error("cache policy '" + p.name + "': int4 storage needs even head dims");
  std::string input = o.inputDtype.empty() ? storage : o.inputDtype;
  if (input != "f32" && input != "bf16" && input != "f16")
    return Status::error("KV cache: inputDtype must be f32, bf16 or f16" +
                         std::string(quant ? " (int8 storage quantizes its input)" : ""));
  if (!quant && input != storage)
    return Status::error("KV cache: inputDtype " + input + " differs from the storage " + storage +
                         " (only int8 storage converts)");
  int64_t Dv = o.headDimV > 0 ? o.headDimV : o.headDim;
  if (quant && first.scale == "per_group" &&
      (first.groupSize < 1 || o.headDim % first.groupSize || Dv % first.groupSize))
    return Status::error("cache policy '" + p.name + "': scale groups of " +
                         std::to_string(first.groupSize) + " do not divide the head dims");

  std::unique_ptr<KvCache> c(new KvCache());
  c->opts = o;
  c->D = o.headDim;
  c->Dv = Dv;
  c->opts.headDimV = Dv;
  c->elemBytes = bytes;
  c->nibbles = nibbles;
  c->kRow = nibbles ? c->D / 2 : c->D * bytes;
  c->vRow = nibbles ? Dv / 2 : Dv * bytes;
  c->inBytes = detail::typeBytes(input);
  c->opts.inputDtype = input;
  c->quant = quant;
  c->fp8 = storage == "f8e4m3";
  c->snapkv = snapkv;
  c->mixedScores = snapkv && h2o;
  for (int64_t h = 0; h < o.numKvHeads; ++h) {
    const CachePolicyInfo &hp = c->headPolicy(h);
    c->retention.push_back({hp.retention == "sink_window" ? HeadRetention::SinkWindow
                            : hp.retention == "budget"    ? HeadRetention::Budget
                                                          : HeadRetention::All,
                            hp.sink, hp.window, hp.evict == "snapkv"});
  }
  if (o.pageRun < 1)
    return Status::error("KV cache: pageRun must be positive");
  if (c->snapkv && o.observationWindow < 1)
    return Status::error("KV cache: observationWindow must be positive");
  if (c->snapkv && (o.snapkvPooling < 1 || o.snapkvPooling % 2 == 0))
    return Status::error("KV cache: snapkvPooling must be a positive odd number");
  if (quant) {
    c->gK = first.scaleGroups(c->D);
    c->gV = first.scaleGroups(Dv);
    c->sB = first.scaleBytes();
  }
  // Pages of the paged policy's size; only contiguous heads: one page of
  // maxTokens per sequence and head (a per-head cache keeps contiguous
  // heads in the paged heads' pages).
  if (pageSize) {
    c->P = pageSize;
  } else {
    if (o.maxTokens < 1)
      return Status::error("KV cache with contiguous layout: maxTokens must be positive");
    c->P = o.maxTokens;
    c->contiguous = true;
  }
  int64_t pageK = c->P * c->kRow, pageV = c->P * c->vRow;
  if (o.numPages > (int64_t(1) << 40) / std::max(pageK, pageV) || o.numPages * c->P > INT32_MAX)
    return Status::error("KV cache: pool of " + std::to_string(o.numPages) + " pages is too large");
  if (o.store) {
    // The store's moves run in parallel; a contiguous head's compaction
    // moves rows into rows it reads.
    for (const CachePolicyInfo *u : used)
      if (u->layout != "paged")
        return Status::error("cache policy '" + u->name +
                             "': a KvStore holds paged layouts only (not contiguous)");
    if (o.store->rows() != o.numPages * c->P)
      return Status::error("KV cache: the store holds " + std::to_string(o.store->rows()) +
                           " pool rows, the cache needs " + std::to_string(o.numPages * c->P) +
                           " (" + std::to_string(o.numPages) + " pages of " + std::to_string(c->P) +
                           ")");
    // Host pools are read in place by the CPU kernels: they must hold
    // this policy's rows.
    if (const KvStore::HostPools *hp = o.store->hostPools()) {
      const int64_t groupsK = quant ? c->gK : 0, groupsV = quant ? c->gV : 0;
      if (hp->storage != storage || hp->keyRowBytes != c->kRow || hp->valueRowBytes != c->vRow ||
          hp->keyGroups != groupsK || hp->valueGroups != groupsV ||
          (quant && hp->scaleBytes != c->sB))
        return Status::error(
            "KV cache: the store's host pools hold " + hp->storage + " rows of " +
            std::to_string(hp->keyRowBytes) + "/" + std::to_string(hp->valueRowBytes) +
            " bytes with " + std::to_string(hp->keyGroups) + "/" + std::to_string(hp->valueGroups) +
            " scales, policy '" + p.name + "' stores " + storage + " rows of " +
            std::to_string(c->kRow) + "/" + std::to_string(c->vRow) + " bytes with " +
            std::to_string(groupsK) + "/" + std::to_string(groupsV) + " scales" +
            (quant && hp->scaleBytes != c->sB
                 ? " (of " + std::to_string(c->sB) + " bytes, the store's " +
                       std::to_string(hp->scaleBytes) + ")"
                 : ""));
    }
    c->store = o.store;
    c->pool = PagePool(o.numPages, o.pageRun);
    return c;
  }
  c->kPool.assign(size_t(o.numPages * pageK), 0);
  c->vPool.assign(size_t(o.numPages * pageV), 0);
  if (quant) {
    c->kScales.assign(size_t(o.numPages * c->P * c->gK * c->sB), 0);
    c->vScales.assign(size_t(o.numPages * c->P * c->gV * c->sB), 0);
  }
  c->pool = PagePool(o.numPages, o.pageRun);
  return c;
}

/// `field` of a store's host pools; null when they are not in host memory.
template <typename T> static T hostPool(const KvStore &store, T KvStore::HostPools::*field) {
  const KvStore::HostPools *pools = store.hostPools();
  return pools ? pools->*field : nullptr;
}

const void *KvCache::keyPool() const {
  return store ? hostPool(*store, &KvStore::HostPools::keyPool) : kPool.data();
}
const void *KvCache::valuePool() const {
  return store ? hostPool(*store, &KvStore::HostPools::valuePool) : vPool.data();
}
const void *KvCache::keyScales() const {
  return store ? hostPool(*store, &KvStore::HostPools::keyScales) : kScales.data();
}
const void *KvCache::valueScales() const {
  return store ? hostPool(*store, &KvStore::HostPools::valueScales) : vScales.data();
}

const CachePolicyInfo &KvCache::headPolicy(int64_t head) const {
  if (opts.policy.layout == "per_head")
    return opts.policy.headPolicies[opts.headKinds[head]];
  return opts.policy;
}

Expected<int64_t> KvCache::addSequence() {
  size_t i = 0;
  while (i < sequences.size() && sequences[i].live)
    ++i;
  if (i == sequences.size())
    sequences.emplace_back();
  sequences[i] = Sequence();
  sequences[i].heads.resize(size_t(opts.numKvHeads));
  for (Head &h : sequences[i].heads)
    h.layoutStamp = ++layoutClock;
  sequences[i].live = true;
  return int64_t(i);
}

Expected<KvCache::Sequence *> KvCache::find(int64_t seq) {
  if (seq < 0 || seq >= int64_t(sequences.size()) || !sequences[seq].live)
    return Status::error("KV cache: no sequence " + std::to_string(seq));
  return &sequences[seq];
}

const KvCache::Head *KvCache::headOf(int64_t seq, int64_t head) const {
  if (seq < 0 || seq >= int64_t(sequences.size()) || !sequences[seq].live || head < 0 ||
      head >= opts.numKvHeads)
    return nullptr;
  return &sequences[seq].heads[head];
}

Status KvCache::removeSequence(int64_t seq) {
  auto s = find(seq);
  if (!s)
    return s.error();
  for (Head &h : (*s)->heads)
    for (int32_t page : h.pages)
      pool.give(page);
  **s = Sequence();
  return Status::ok();
}

bool KvCache::retains(int64_t head, int64_t position, int64_t newLength) const {
  const HeadRetention &r = retention[size_t(head)];
  return r.kind != HeadRetention::SinkWindow || position < r.sink ||
         position >= newLength - r.window;
}

int64_t KvCache::bytesPerTokenPerHead() const { return kRow + vRow + (quant ? sB * (gK + gV) : 0); }

int64_t KvCache::bytesInUse() const { return pagesInUse() * P * bytesPerTokenPerHead(); }

int64_t KvCache::length(int64_t seq) const {
  if (seq < 0 || seq >= int64_t(sequences.size()) || !sequences[seq].live)
    return -1;
  return sequences[seq].length;
}

int64_t KvCache::pagesOf(int64_t seq, int64_t head) const {
  const Head *h = headOf(seq, head);
  return h ? int64_t(h->pages.size()) : 0;
}

/// (position, slot) of a head's retained slots, by position (budget heads
/// keep them out of order after compaction). A radix sort of the keys
/// position << 32 | slot by the position's bytes (as many passes as the
/// largest position has bytes): a SnapKV decode step orders every budget
/// head's slots (slotsByPosition), and std::sort of 64 heads x 257 slots
/// took 0.5 ms of a 0.6 ms step on the H100 machine's host (session 18).
static std::vector<std::pair<int32_t, int64_t>> retainedSlots(const std::vector<int32_t> &pos,
                                                              int64_t slots) {
  std::vector<uint64_t> keys, spare;
  keys.reserve(size_t(slots));
  uint32_t top = 0;
  for (int64_t i = 0; i < slots; ++i)
    if (pos[i] >= 0) {
      keys.push_back(uint64_t(uint32_t(pos[i])) << 32 | uint64_t(i));
      top = std::max(top, uint32_t(pos[i]));
    }
  spare.resize(keys.size());
  for (unsigned byte = 0; byte < 4 && (uint64_t(top) >> (8 * byte)) != 0; ++byte) {
    const unsigned shift = 32 + 8 * byte;
    std::array<size_t, 257> at{};
    for (uint64_t k : keys)
      ++at[((k >> shift) & 255) + 1];
    for (size_t d = 1; d < at.size(); ++d)
      at[d] += at[d - 1];
    for (uint64_t k : keys) // stable: earlier bytes' order kept
      spare[at[(k >> shift) & 255]++] = k;
    keys.swap(spare);
  }
  std::vector<std::pair<int32_t, int64_t>> out;
  out.reserve(keys.size());
  for (uint64_t k : keys)
    out.emplace_back(int32_t(k >> 32), int64_t(k & 0xffffffffu));
  return out;
}

Status KvCache::slotsByPosition(const std::vector<int64_t> &seqs, int64_t pitch,
                                std::vector<int32_t> &out) const {
  const int64_t Hkv = opts.numKvHeads;
  out.assign(size_t(int64_t(seqs.size()) * Hkv * pitch), -1);
  for (size_t b = 0; b < seqs.size(); ++b)
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      const Head *h = headOf(seqs[b], hd);
      if (!h)
        return Status::error("KV cache: no sequence " + std::to_string(seqs[b]));
      if (h->slots > pitch)
        return Status::error("slotsByPosition: sequence " + std::to_string(seqs[b]) + " holds " +
                             std::to_string(h->slots) + " slots, more than " +
                             std::to_string(pitch));
      int32_t *row = &out[size_t((int64_t(b) * Hkv + hd) * pitch)];
      for (auto [p, slot] : retainedSlots(h->pos, h->slots))
        *row++ = int32_t(slot);
    }
  return Status::ok();
}

std::vector<int32_t> KvCache::retainedPositions(int64_t seq, int64_t head) const {
  std::vector<int32_t> out;
  if (const Head *h = headOf(seq, head))
    for (auto [p, slot] : retainedSlots(h->pos, h->slots))
      out.push_back(p);
  return out;
}

std::vector<float> KvCache::scores(int64_t seq, int64_t head) const {
  std::vector<float> out;
  const Head *h = headOf(seq, head);
  if (!h)
    return out;
  // A store keeps the scores of budget heads; its kernels may write the
  // rows of other heads too, whose scores here stay 0 (they evict nothing).
  if (store && store->keepsScores() && retention[size_t(head)].kind == HeadRetention::Budget) {
    std::vector<int32_t> rows;
    for (auto [p, slot] : retainedSlots(h->pos, h->slots))
      rows.push_back(int32_t(poolRow(*h, slot)));
    if (!store->readScores(rows, out))
      out.clear();
    return out;
  }
  for (auto [p, slot] : retainedSlots(h->pos, h->slots))
    out.push_back(h->score[slot]);
  return out;
}

int64_t KvCache::scoringQueries(int64_t Nq) const {
  // Mixed scorers: a launch of at most the window's queries (scoringSplit)
  // counts all of them, as h2o does.
  return snapkv && !mixedScores ? std::min(Nq, opts.observationWindow) : Nq;
}

int64_t KvCache::scoringSplit(int64_t Nq) const {
  return mixedScores && Nq > opts.observationWindow ? opts.observationWindow : 0;
}

Status KvCache::updateScores(const std::vector<int64_t> &seqs, const std::vector<float> &mass,
                             int64_t maxSlots, bool leadingQueries) {
  const int64_t Hkv = opts.numKvHeads;
  if (store && store->keepsScores())
    return Status::error("updateScores: the cache's store keeps its eviction scores (its "
                         "launches update them there)");
  if (int64_t(mass.size()) != int64_t(seqs.size()) * Hkv * maxSlots)
    return Status::error("updateScores: mass must be [sequences * Hkv, maxSlots]");
  for (size_t b = 0; b < seqs.size(); ++b) {
    auto found = find(seqs[b]);
    if (!found)
      return found.error();
    for (int64_t hd = 0; hd < Hkv; ++hd)
      if ((*found)->heads[hd].slots > maxSlots)
        return Status::error("updateScores: sequence " + std::to_string(seqs[b]) + " holds " +
                             std::to_string((*found)->heads[hd].slots) + " slots, more than " +
                             std::to_string(maxSlots));
  }
  for (size_t b = 0; b < seqs.size(); ++b) {
    Sequence &s = sequences[seqs[b]];
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      const HeadRetention &r = retention[size_t(hd)];
      if (r.kind != HeadRetention::Budget || (r.snapkv && leadingQueries))
        continue;
      Head &h = s.heads[hd];
      const float *row = &mass[(int64_t(b) * Hkv + hd) * maxSlots];
      if (!r.snapkv) {
        for (int64_t i = 0; i < h.slots; ++i)
          h.score[i] += row[i];
        continue;
      }
      // SnapKV: the window's mass, max-pooled over neighbouring positions.
      auto bySlot = retainedSlots(h.pos, h.slots);
      const int64_t half = opts.snapkvPooling / 2, n = int64_t(bySlot.size());
      for (int64_t i = 0; i < n; ++i) {
        float best = 0;
        for (int64_t j = std::max<int64_t>(0, i - half); j <= std::min(n - 1, i + half); ++j)
          best = std::max(best, row[bySlot[j].second]);
        h.score[bySlot[i].second] = best;
      }
    }
  }
  return Status::ok();
}

Expected<KvCache::SequenceView> KvCache::view(int64_t seq, int64_t head) const {
  const Head *h = headOf(seq, head);
  if (!h)
    return Status::error("KV cache: no sequence " + std::to_string(seq));
  return SequenceView{&h->pages, &h->pos, h->slots, sequences[seq].length, h->layoutStamp};
}

/// Element d of a token row of the input type.
static float inputAt(const char *row, const std::string &dtype, int64_t d) {
  if (dtype == "f32")
    return reinterpret_cast<const float *>(row)[d];
  uint16_t bits = reinterpret_cast<const uint16_t *>(row)[d];
  return dtype == "bf16" ? bf16ToFloat(bits) : f16ToFloat(bits);
}

/// `dim` values of a token row of the input type as f32 (the type resolved
/// once a row: comparing the dtype's name per element made quantizing
/// appends 2x slower).
static void inputRow(const char *row, const std::string &dtype, int64_t dim, float *out) {
  if (dtype == "f32") {
    std::memcpy(out, row, size_t(dim) * sizeof(float));
    return;
  }
  const auto *bits = reinterpret_cast<const uint16_t *>(row);
  if (dtype == "bf16")
    for (int64_t d = 0; d < dim; ++d)
      out[d] = bf16ToFloat(bits[d]);
  else
    for (int64_t d = 0; d < dim; ++d)
      out[d] = f16ToFloat(bits[d]);
}

/// `n` elements of scratch for one row: on the stack up to 512 (any head
/// dim so far), else on the heap.
template <typename T> class RowScratch {
public:
  explicit RowScratch(int64_t n) {
    if (n > int64_t(stack.size()))
      heap.resize(size_t(n));
  }
  T *data() { return heap.empty() ? stack.data() : heap.data(); }

private:
  std::array<T, 512> stack;
  std::vector<T> heap;
};

/// Row `srcRow` of `src` (rows of `dim` elements of the input type: of
/// [Hkv, n, dim], head * n + token; of a batch's [B, Hkv, n, dim], (b * Hkv
/// + head) * n + token) into the storage row `dst` (and its scales).
void KvCache::storeRow(const DLTensor *src, int64_t srcRow, int64_t dim, int64_t groups, char *dst,
                       char *scales) const {
  const char *row =
      static_cast<const char *>(src->data) + src->byte_offset + srcRow * dim * inBytes;
  if (!quant) {
    std::memcpy(dst, row, dim * elemBytes);
    return;
  }
  RowScratch<float> valueRow(dim);
  float *values = valueRow.data();
  inputRow(row, opts.inputDtype, dim, values);
  // Each group's integer codes before they are stored (int8 / int4).
  RowScratch<int8_t> codeRow(dim);
  int8_t *codes = codeRow.data();
  int64_t g = dim / groups;
  for (int64_t k = 0; k < groups; ++k) {
    float amax = 0;
    for (int64_t d = k * g; d < (k + 1) * g; ++d)
      amax = std::max(amax, std::fabs(values[d]));
    const int qmax = nibbles ? 7 : fp8 ? 448 : 127;
    float scale = amax / float(qmax);
    if (sB == 2) { // the stored f16 (at most the largest finite one) quantizes
      uint16_t half = floatToF16(std::min(scale, 65504.0f));
      std::memcpy(scales + 2 * k, &half, 2);
      scale = f16ToFloat(half);
    } else {
      std::memcpy(scales + 4 * k, &scale, 4);
    }
    auto *bytes = reinterpret_cast<uint8_t *>(dst);
    if (fp8) { // e4m3 of x / scale, nearest even
      for (int64_t d = k * g; d < (k + 1) * g; ++d)
        bytes[d] = scale > 0 ? floatToE4M3(values[d] / scale) : 0;
      continue;
    }
    // q = x / scale (IEEE division, as the GPU's append kernel) rounded half
    // away from zero by truncation plus a correction, clamped: the bytes of
    // std::lround, in a loop the compiler vectorizes (lround is a call per
    // element: an int4 prompt of 64k tokens took 0.9 s a sequence to
    // append; session 16).
    for (int64_t d = 0; d < g; ++d) {
      float y = scale > 0 ? values[k * g + d] / scale : 0.f;
      y = std::min(std::max(y, -256.f), 256.f); // within int range past a capped f16 scale
      int t = int(y);
      float rest = y - float(t);
      t += int(rest >= 0.5f) - int(rest <= -0.5f);
      codes[d] = int8_t(std::clamp(t, -qmax, qmax));
    }
    if (!nibbles) {
      std::memcpy(bytes + k * g, codes, size_t(g));
      continue;
    }
    for (int64_t i = 0; i < g; i += 2) // element 2i in the low nibble (groups start even)
      bytes[(k * g + i) / 2] = uint8_t((codes[i] & 0x0F) | ((codes[i + 1] & 0x0F) << 4));
  }
}

float KvCache::scaleAt(const char *scales, int64_t i) const {
  if (sB == 2) {
    uint16_t half;
    std::memcpy(&half, scales + 2 * i, 2);
    return f16ToFloat(half);
  }
  float f;
  std::memcpy(&f, scales + 4 * i, 4);
  return f;
}

float KvCache::loadElement(const char *src, const char *scales, int64_t d, int64_t dim,
                           int64_t groups) const {
  if (!quant)
    return inputAt(src, headPolicy(0).storage, d);
  const float scale = scaleAt(scales, d / (dim / groups));
  if (nibbles) {
    int8_t byte = reinterpret_cast<const int8_t *>(src)[d / 2];
    int v = d % 2 == 0 ? int8_t(byte << 4) >> 4 : byte >> 4;
    return float(v) * scale;
  }
  if (fp8)
    return e4m3ToFloat(reinterpret_cast<const uint8_t *>(src)[d]) * scale;
  return float(reinterpret_cast<const int8_t *>(src)[d]) * scale;
}

Expected<KvCache::Tables> KvCache::tables(const std::vector<int64_t> &sequences, int64_t Nq) const {
  Tables t;
  if (Status s = tables(sequences, Nq, t); !s)
    return s;
  return t;
}

Status KvCache::tables(const std::vector<int64_t> &sequences, int64_t Nq, Tables &t) const {
  const int64_t Hkv = opts.numKvHeads, B = int64_t(sequences.size());
  // Per (sequence, KV head): its page table, slot positions and count.
  std::vector<SequenceView> views;
  t.maxPages = 1, t.maxSlots = 1, t.maxLength = 0;
  for (int64_t seq : sequences) {
    if (length(seq) < 0)
      return Status::error("KV cache: no sequence " + std::to_string(seq));
    if (length(seq) < Nq)
      return Status::error("sequence " + std::to_string(seq) + " has " +
                           std::to_string(length(seq)) + " tokens, fewer than the " +
                           std::to_string(Nq) + " queries (append them first)");
    for (int64_t h = 0; h < Hkv; ++h) {
      auto v = view(seq, h);
      if (!v)
        return v.error();
      t.maxPages = std::max<int64_t>(t.maxPages, int64_t(v->pages->size()));
      t.maxSlots = std::max<int64_t>(t.maxSlots, v->slots);
      t.maxLength = std::max<int64_t>(t.maxLength, v->slots);
      views.push_back(*v);
    }
  }
  // Every element written once (resize keeps a reused table's memory: a
  // fresh 4 MB table cost its page faults at every launch).
  const int64_t rows = B * Hkv;
  t.pages.resize(size_t(rows * t.maxPages));
  t.positions.resize(size_t(rows * t.maxSlots));
  t.lengths.resize(size_t(rows));
  t.queryPositions.resize(size_t(B));
  for (int64_t r = 0; r < rows; ++r) {
    const SequenceView &v = views[r];
    auto pages = t.pages.begin() + r * t.maxPages;
    std::fill(std::copy(v.pages->begin(), v.pages->end(), pages), pages + t.maxPages, 0);
    auto pos = t.positions.begin() + r * t.maxSlots;
    std::fill(std::copy(v.pos->begin(), v.pos->begin() + v.slots, pos), pos + t.maxSlots, -1);
    t.lengths[r] = int32_t(v.slots);
    t.queryPositions[r / Hkv] = int32_t(v.length - Nq);
  }
  return Status::ok();
}

Status KvCache::readToken(int64_t seq, int64_t position, int64_t head, float *k, float *v) const {
  if (length(seq) < 0)
    return Status::error("KV cache: no sequence " + std::to_string(seq));
  const Head *h = headOf(seq, head);
  if (!h)
    return Status::error("KV cache: no KV head " + std::to_string(head));
  for (int64_t i = 0; i < h->slots; ++i) {
    if (h->pos[i] != position)
      continue;
    int64_t at = poolRow(*h, i);
    const char *kr = kPool.data() + at * kRow, *vr = vPool.data() + at * vRow;
    const char *ks = quant ? &kScales[size_t(at * gK * sB)] : nullptr,
               *vs = quant ? &vScales[size_t(at * gV * sB)] : nullptr;
    // A store's row comes back first.
    std::vector<char> kb, vb, ksb(size_t(gK * sB)), vsb(size_t(gV * sB));
    if (store) {
      kb.resize(size_t(kRow)), vb.resize(size_t(vRow));
      if (Status s = store->read(int32_t(at), kb.data(), vb.data(), ksb.data(), vsb.data()); !s)
        return s;
      kr = kb.data(), vr = vb.data();
      ks = quant ? ksb.data() : nullptr, vs = quant ? vsb.data() : nullptr;
    }
    for (int64_t d = 0; d < D; ++d)
      k[d] = loadElement(kr, ks, d, D, gK);
    for (int64_t d = 0; d < Dv; ++d)
      v[d] = loadElement(vr, vs, d, Dv, gV);
    return Status::ok();
  }
  return Status::error("KV cache: sequence " + std::to_string(seq) + " head " +
                       std::to_string(head) + " does not retain position " +
                       std::to_string(position));
}

/// Moves slot `from` of a head (position, score; its pool row's K, V and
/// scales are queued in `moves`) to slot `to`.
void KvCache::moveSlot(Head &h, int64_t from, int64_t to) {
  moves.emplace_back(int32_t(poolRow(h, from)), int32_t(poolRow(h, to)));
  h.pos[to] = h.pos[from];
  h.score[to] = h.score[from];
  h.pos[from] = -1;
  h.score[from] = 0;
}

/// Moves a contiguous head's retained slots to the front of its page, in
/// order.
void KvCache::compact(Head &h) {
  int64_t out = 0;
  for (int64_t i = 0; i < h.slots; ++i) {
    if (h.pos[i] < 0)
      continue;
    if (out != i)
      moveSlot(h, i, out);
    ++out;
  }
  h.slots = out;
}

/// Fills a head's dropped slots with its last retained ones (one move per
/// hole, order not kept: kernels read positions from kv_pos), so its live
/// slots are [0, live).
void KvCache::fillHoles(Head &h) {
  int64_t lo = 0, hi = h.slots - 1;
  while (true) {
    while (lo < hi && h.pos[lo] >= 0)
      ++lo;
    while (hi > lo && h.pos[hi] < 0)
      --hi;
    if (lo >= hi)
      break;
    moveSlot(h, hi--, lo++);
  }
  int64_t live = 0;
  while (live < h.slots && h.pos[live] >= 0)
    ++live;
  h.slots = live;
}

/// What a budget head may drop to keep its budget: nothing while it holds
/// no more (dead empty); else its holes (dead), the candidates (all but
/// the `recent` newest positions) and how many of them stay.
KvCache::BudgetChoice KvCache::budgetChoice(int64_t head, const Head &h, int64_t length) const {
  const CachePolicyInfo &p = headPolicy(head);
  BudgetChoice c;
  // Within the budget nothing goes (slots hold no holes between updates:
  // an update that drops slots fills them), and no pass over the slots.
  if (h.slots <= p.budget)
    return c;
  c.dead.assign(size_t(h.slots), 0);
  int64_t live = 0;
  const int64_t recent = opts.recentTokens < 0 ? p.budget / 2 : opts.recentTokens;
  c.recentFrom = length - recent;
  for (int64_t i = 0; i < h.slots; ++i) {
    c.dead[i] = h.pos[i] < 0;
    live += !c.dead[i];
    if (!c.dead[i] && h.pos[i] < c.recentFrom)
      c.older.push_back(i);
  }
  if (live <= p.budget)
    return c;
  c.keepOlder = std::min<int64_t>(
      int64_t(c.older.size()), std::max<int64_t>(0, p.budget - (live - int64_t(c.older.size()))));
  c.evicts = c.keepOlder < int64_t(c.older.size());
  return c;
}

/// Marks the candidates of `c` that a budget head drops by its own scores:
/// all but the first keepOlder in a total order (score, then the later
/// position), so a partition finds the same set a sort would, in linear
/// time. (A store that keeps the scores chooses them instead.)
void KvCache::dropLowestScores(const Head &h, BudgetChoice &c) const {
  std::nth_element(c.older.begin(), c.older.begin() + c.keepOlder, c.older.end(),
                   [&](int64_t a, int64_t b) {
                     if (h.score[a] != h.score[b])
                       return h.score[a] > h.score[b];
                     return h.pos[a] > h.pos[b];
                   });
  for (size_t i = size_t(c.keepOlder); i < c.older.size(); ++i)
    c.dead[c.older[i]] = 1;
}

/// Checks appended K or V: `lead` leading extents ([Hkv] for one sequence,
/// [B, Hkv] for a batch), then n tokens of `dim` elements, dense, on the
/// cache's device and of its input type.
Status KvCache::checkNewTokens(const char *what, const DLTensor *t, std::vector<int64_t> lead,
                               int64_t dim) const {
  if (!t || !t->data)
    return Status::error(std::string("append: ") + what + " is null");
  DLDevice want = store ? store->device() : DLDevice{kDLCPU, 0};
  if (t->device.device_type != want.device_type || (store && t->device.device_id != want.device_id))
    return Status::error(std::string("append: ") + what + " must be on " +
                         (want.device_type == kDLCPU ? std::string("kDLCPU")
                                                     : "the store's device (kDLCUDA " +
                                                           std::to_string(want.device_id) + ")"));
  if (!detail::sameType(t->dtype, opts.inputDtype))
    return Status::error(std::string("append: ") + what + " must be " + opts.inputDtype +
                         (quant ? " (the cache's input type)" : " (the policy's storage)"));
  const int64_t rank = int64_t(lead.size()) + 2;
  bool shaped = t->ndim == rank && t->shape[rank - 1] == dim;
  for (size_t i = 0; shaped && i < lead.size(); ++i)
    shaped = t->shape[i] == lead[i];
  if (!shaped)
    return Status::error(std::string("append: ") + what + " must be [" +
                         (lead.size() == 2 ? "B=" + std::to_string(lead[0]) + ", " : "") + "Hkv=" +
                         std::to_string(opts.numKvHeads) + ", n, " + std::to_string(dim) + "]");
  if (t->strides) {
    int64_t stride = 1;
    for (int64_t i = rank; i-- > 0; stride *= t->shape[i])
      if (t->strides[i] != stride && t->shape[i] != 1)
        return Status::error(std::string("append: ") + what + " must be dense");
  }
  return Status::ok();
}

Status KvCache::append(int64_t seq, const DLTensor *k, const DLTensor *v) {
  if (auto found = find(seq); !found)
    return found.error();
  const int64_t Hkv = opts.numKvHeads;
  if (Status st = checkNewTokens("k", k, {Hkv}, D); !st)
    return st;
  if (Status st = checkNewTokens("v", v, {Hkv}, Dv); !st)
    return st;
  const int64_t n = k->shape[1];
  if (v->shape[1] != n)
    return Status::error("append: k has " + std::to_string(n) + " tokens, v " +
                         std::to_string(v->shape[1]));
  return update({seq}, k, v, n);
}

Status KvCache::append(const std::vector<int64_t> &seqs, const DLTensor *k, const DLTensor *v) {
  const int64_t B = int64_t(seqs.size()), Hkv = opts.numKvHeads;
  if (B == 0)
    return Status::error("append: no sequences");
  if (Status st = checkNewTokens("k", k, {B, Hkv}, D); !st)
    return st;
  if (Status st = checkNewTokens("v", v, {B, Hkv}, Dv); !st)
    return st;
  const int64_t n = k->shape[2];
  if (v->shape[2] != n)
    return Status::error("append: k has " + std::to_string(n) + " tokens, v " +
                         std::to_string(v->shape[2]));
  return update(seqs, k, v, n);
}

Status KvCache::evict(int64_t seq) { return update({seq}, nullptr, nullptr, 0); }

/// Retention, eviction and storage of n new tokens of each sequence of a
/// batch (n = 0: eviction only; K/V row (b * Hkv + head) * n + t is token
/// t of head `head` of seqIds[b]). The tables change on copies (or, for a
/// plain append, in place with an undo), queuing the pool rows to move and
/// write; the rows move (host pools, or the store: one eviction request,
/// one move and one write for the whole batch), then the copies are kept,
/// so a failure at any point leaves the cache as it was.
Status KvCache::update(const std::vector<int64_t> &seqIds, const DLTensor *k, const DLTensor *v,
                       int64_t n) {
  const int64_t B = int64_t(seqIds.size()), Hkv = opts.numKvHeads;
  std::vector<Sequence *> batch;
  for (int64_t id : seqIds) {
    auto found = find(id);
    if (!found)
      return found.error();
    if (std::find(batch.begin(), batch.end(), *found) != batch.end())
      return Status::error("append: sequence " + std::to_string(id) + " is twice in the batch");
    if ((*found)->length + n > INT32_MAX)
      return Status::error("append: positions past INT32_MAX");
    batch.push_back(*found);
  }
  moves.clear();
  std::vector<std::pair<int32_t, int32_t>> writes; // (row of k / v, pool row)
  std::vector<int32_t> writePositions;             // of each write's token

  // Per head, what retention drops and what is stored, before anything
  // changes; then one capacity check for the whole append.
  struct Plan {
    std::vector<char> dead; // per slot; empty when none dies (anyDead)
    bool anyDead = false;
    std::vector<size_t> freeable; // paged: whole pages of dropped slots, not the last
    int64_t store = 0, needPages = 0;
    int64_t keepPages = -1; // paged budget heads: pages left once compacted
  };
  // plans[b * Hkv + head]
  std::vector<Plan> plans(static_cast<size_t>(B * Hkv));
  // Budget heads over their budget: victims by the cache's scores, or, when
  // the store keeps them, by the store, all heads of the batch in one
  // request.
  const bool storeScores = store && store->keepsScores();
  std::vector<KvStore::VictimRequest> requests;
  std::vector<int64_t> requestHeads; // b * Hkv + head
  for (int64_t b = 0; b < B; ++b)
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      if (retention[size_t(hd)].kind != HeadRetention::Budget)
        continue;
      const Head &h = batch[b]->heads[hd];
      BudgetChoice c = budgetChoice(hd, h, batch[b]->length);
      if (c.evicts && storeScores) {
        KvStore::VictimRequest r;
        r.pages = h.pages;
        r.slots = h.slots, r.recentFrom = c.recentFrom, r.keep = c.keepOlder;
        r.drop = int64_t(c.older.size()) - c.keepOlder;
        requests.push_back(std::move(r));
        requestHeads.push_back(b * Hkv + hd);
      } else if (c.evicts) {
        dropLowestScores(h, c);
      }
      plans[b * Hkv + hd].dead = std::move(c.dead);
    }
  if (!requests.empty()) {
    std::vector<std::vector<int32_t>> victims;
    if (Status st = store->chooseVictims(requests, victims); !st)
      return st;
    // The tables here stay the truth: a victim must be a candidate.
    for (size_t i = 0; i < requests.size(); ++i) {
      const int64_t b = requestHeads[i] / Hkv, hd = requestHeads[i] % Hkv;
      const Head &h = batch[b]->heads[hd];
      std::vector<char> &dead = plans[requestHeads[i]].dead;
      bool valid =
          victims.size() == requests.size() && int64_t(victims[i].size()) == requests[i].drop;
      for (size_t j = 0; valid && j < victims[i].size(); ++j) {
        const int32_t slot = victims[i][j];
        valid = slot >= 0 && slot < h.slots && !dead[size_t(slot)] && h.pos[slot] >= 0 &&
                h.pos[slot] < requests[i].recentFrom;
        if (valid)
          dead[size_t(slot)] = 1;
      }
      if (!valid)
        return Status::error(
            "KV cache '" + opts.policy.name + "': the store chose victims of sequence " +
            std::to_string(seqIds[size_t(b)]) + " head " + std::to_string(hd) + " that are not " +
            std::to_string(requests[i].drop) + " of its candidates");
    }
  }
  int64_t need = 0, released = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Sequence &current = *batch[b];
    const int64_t newLength = current.length + n;
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      const Head &h = current.heads[hd];
      Plan &pl = plans[b * Hkv + hd];
      const bool budget = retention[size_t(hd)].kind == HeadRetention::Budget;
      for (int64_t p = current.length; p < newLength; ++p)
        pl.store += retains(hd, p, newLength);
      // (Budget heads' dead slots are chosen above.)
      if (retention[size_t(hd)].kind == HeadRetention::SinkWindow) {
        pl.dead.assign(size_t(h.slots), 0);
        for (int64_t i = 0; i < h.slots; ++i)
          pl.dead[i] = h.pos[i] < 0 || !retains(hd, h.pos[i], newLength);
      }
      // (Retention all drops nothing and leaves no holes: no pass over the
      // head's slots per append, which a decode step at 64k paid 8 times.)
      int64_t live = h.slots - int64_t(std::count(pl.dead.begin(), pl.dead.end(), char(1)));
      pl.anyDead = live < h.slots;
      if (!pl.anyDead)
        pl.dead.clear();
      if (contiguous) {
        if (live + pl.store > P)
          return Status::error("KV cache '" + opts.policy.name + "': sequence " +
                               std::to_string(seqIds[size_t(b)]) + " head " + std::to_string(hd) +
                               " needs " + std::to_string(live + pl.store) +
                               " slots, its contiguous page holds " + std::to_string(P));
        pl.needPages = h.pages.empty() && pl.store ? 1 : 0;
      } else if (budget) {
        // Compacted, the live slots take the first ceil(live / P) pages.
        pl.keepPages = (live + P - 1) / P;
        pl.needPages = (live + pl.store + P - 1) / P - pl.keepPages;
        released += int64_t(h.pages.size()) - pl.keepPages;
      } else {
        for (size_t pg = 0; pl.anyDead && pg + 1 < h.pages.size(); ++pg) {
          bool all = true;
          for (int64_t i = int64_t(pg) * P; i < int64_t(pg + 1) * P && all; ++i)
            all = pl.dead[i];
          if (all)
            pl.freeable.push_back(pg);
        }
        int64_t room = int64_t(h.pages.size()) * P - h.slots;
        pl.needPages = pl.store > room ? (pl.store - room + P - 1) / P : 0;
        released += int64_t(pl.freeable.size());
      }
      need += pl.needPages;
    }
  }
  if (need > this->pool.freeCount() + released)
    return Status::error("KV cache '" + opts.policy.name + "' exhausted: " +
                         (B == 1 ? "sequence " + std::to_string(seqIds[0]) + " needs "
                                 : "the batch's " + std::to_string(B) + " sequences need ") +
                         std::to_string(need) + " more pages, " +
                         std::to_string(this->pool.freeCount() + released) + " free of " +
                         std::to_string(opts.numPages) + " (pages of " + std::to_string(P) +
                         " tokens)");

  // A head that only appends (nothing dropped, released or moved: retention
  // all, a window not yet full, a budget not yet reached) changes in place
  // and is cut back if the store fails; a head that drops or moves slots
  // is saved first (a copy of that head only: a DuoAttention cache's full
  // heads keep appending in place while its streaming heads drop a slot
  // each step; copying the whole sequence, 64k-slot heads included, took
  // ~0.2 ms a step, session 16). The free list always changes in place and
  // rolls back on failure (PagePool::rollback): a copy of it grows with
  // the pool (index vectors of ~2.2 MB at 262k pages).
  std::vector<std::optional<Head>> saved(static_cast<size_t>(B * Hkv));
  std::vector<std::pair<int64_t, size_t>> before; // (slots, pages) per head
  std::vector<int64_t> lengthsBefore;
  for (int64_t b = 0; b < B; ++b) {
    lengthsBefore.push_back(batch[b]->length);
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      const Head &h = batch[b]->heads[hd];
      const Plan &pl = plans[b * Hkv + hd];
      const bool appendsOnly =
          pl.freeable.empty() && (pl.keepPages < 0 || pl.keepPages == int64_t(h.pages.size())) &&
          !(contiguous && !h.pages.empty() && h.slots + pl.store > P) && !pl.anyDead;
      if (!appendsOnly)
        saved[b * Hkv + hd] = h;
      before.emplace_back(h.slots, h.pages.size());
    }
  }
  PagePool &pool = this->pool;
  pool.mark();
  // Undoes an append: the pages taken and given back to the pool as they
  // were (PagePool::rollback: the same pages, in the same order, go to the
  // next append); saved heads back, the others' new slots cleared.
  auto undo = [&]() {
    pool.rollback();
    for (int64_t b = B; b-- > 0;) {
      for (int64_t hd = Hkv; hd-- > 0;) {
        Head &h = batch[b]->heads[hd];
        if (saved[b * Hkv + hd]) {
          h = std::move(*saved[b * Hkv + hd]);
          continue;
        }
        auto [slots, pages] = before[b * Hkv + hd];
        for (int64_t i = slots; i < h.slots; ++i)
          h.pos[i] = -1, h.score[i] = 0;
        h.slots = slots;
        h.pages.resize(pages);
        h.pos.resize(h.pages.size() * P, -1);
        h.score.resize(h.pos.size(), 0.f);
      }
      batch[b]->length = lengthsBefore[b];
    }
  };

  // After a store failure past its moves: everything undone, then each
  // budget head that evicted set to its state after the eviction (its
  // slots compacted, its released pages free again), without new tokens.
  auto keepEvictionsOnly = [&]() {
    auto evicting = [&](const Plan &pl) { return pl.keepPages >= 0 && pl.anyDead; };
    std::vector<Head> evicted(static_cast<size_t>(B * Hkv));
    for (int64_t r = 0; r < B * Hkv; ++r)
      if (evicting(plans[r]))
        evicted[r] = batch[r / Hkv]->heads[r % Hkv];
    undo();
    for (int64_t r = 0; r < B * Hkv; ++r) {
      const Plan &pl = plans[r];
      if (!evicting(pl))
        continue;
      Head &h = batch[r / Hkv]->heads[r % Hkv];
      for (size_t pg = size_t(pl.keepPages); pg < h.pages.size(); ++pg)
        pool.give(h.pages[pg]); // released by the eviction
      h = std::move(evicted[r]);
      for (int64_t i = h.slots - pl.store; i < h.slots; ++i)
        h.pos[i] = -1, h.score[i] = 0;
      h.slots -= pl.store;
      h.pages.resize(size_t(pl.keepPages));
      h.pos.resize(h.pages.size() * P, -1);
      h.score.resize(h.pos.size(), 0.f);
    }
  };

  // Drop, release, allocate, write. A head whose existing slots or pages
  // change takes a new layout stamp (appends alone keep it).
  for (int64_t b = 0; b < B; ++b) {
    Sequence &s = *batch[b];
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      Head &h = s.heads[hd];
      Plan &pl = plans[b * Hkv + hd];
      bool rewritten =
          !pl.freeable.empty() || (pl.keepPages >= 0 && pl.keepPages < int64_t(h.pages.size()));
      for (int64_t i = 0; pl.anyDead && i < h.slots; ++i)
        if (pl.dead[i]) {
          h.pos[i] = -1;
          h.score[i] = 0;
          rewritten = true;
        }
      if (rewritten)
        h.layoutStamp = ++layoutClock;
      if (pl.keepPages >= 0) {
        size_t moved = moves.size();
        if (pl.anyDead) // no holes otherwise
          fillHoles(h);
        if (moves.size() != moved)
          h.layoutStamp = ++layoutClock;
        while (int64_t(h.pages.size()) > pl.keepPages) {
          pool.give(h.pages.back());
          h.pages.pop_back();
        }
        h.pos.resize(h.pages.size() * P, -1);
        h.score.resize(h.pos.size(), 0.f);
        continue;
      }
      for (auto it = pl.freeable.rbegin(); it != pl.freeable.rend(); ++it) {
        size_t pg = *it;
        pool.give(h.pages[pg]);
        h.pages.erase(h.pages.begin() + pg);
        h.pos.erase(h.pos.begin() + pg * P, h.pos.begin() + (pg + 1) * P);
        h.score.erase(h.score.begin() + pg * P, h.score.begin() + (pg + 1) * P);
        h.slots -= P;
      }
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    Sequence &s = *batch[b];
    const int64_t newLength = s.length + n;
    for (int64_t hd = 0; hd < Hkv; ++hd) {
      Head &h = s.heads[hd];
      const Plan &pl = plans[b * Hkv + hd];
      if (contiguous && !h.pages.empty() && h.slots + pl.store > P) {
        compact(h);
        h.layoutStamp = ++layoutClock;
      }
      for (int64_t i = 0; i < pl.needPages; ++i) {
        // The page after the head's last when free (PagePool.h).
        h.pages.push_back(pool.take(h.pages.empty() ? -1 : h.pages.back()));
        h.pos.resize(h.pages.size() * P, -1);
        h.score.resize(h.pos.size(), 0.f);
      }
      for (int64_t t = 0; t < n; ++t) {
        int64_t p = s.length + t;
        if (!retains(hd, p, newLength))
          continue;
        int64_t slot = h.slots++;
        int64_t at = poolRow(h, slot);
        writes.emplace_back(int32_t((b * Hkv + hd) * n + t), int32_t(at));
        writePositions.push_back(int32_t(p));
        h.pos[slot] = int32_t(p);
        h.score[slot] = 0;
      }
    }
    s.length = newLength;
  }
  if (store) {
    if (!moves.empty())
      if (Status st = store->move(moves); !st) {
        undo();
        return st;
      }
    if (!writes.empty())
      if (Status st = store->write(k, v, writes, writePositions); !st) {
        if (moves.empty()) {
          undo();
          return st;
        }
        // The moves ran, over rows of slots this update dropped: the
        // tables cannot go back to them. The budget heads' evictions stay
        // (as evict() would leave them), the new tokens and every other
        // change go.
        keepEvictionsOnly();
        return Status::error(st.message() + " (the eviction before the append stays)");
      }
  } else {
    // In order: a contiguous head's compaction may move into a row an
    // earlier move read.
    for (auto [from, to] : moves) {
      std::memmove(kPool.data() + to * kRow, kPool.data() + from * kRow, kRow);
      std::memmove(vPool.data() + to * vRow, vPool.data() + from * vRow, vRow);
      if (quant) {
        std::memmove(&kScales[size_t(to * gK * sB)], &kScales[size_t(from * gK * sB)], gK * sB);
        std::memmove(&vScales[size_t(to * gV * sB)], &vScales[size_t(from * gV * sB)], gV * sB);
      }
    }
    for (auto [src, at] : writes) {
      storeRow(k, src, D, gK, kPool.data() + at * kRow,
               quant ? &kScales[size_t(at * gK * sB)] : nullptr);
      storeRow(v, src, Dv, gV, vPool.data() + at * vRow,
               quant ? &vScales[size_t(at * gV * sB)] : nullptr);
    }
  }
  return Status::ok();
}
