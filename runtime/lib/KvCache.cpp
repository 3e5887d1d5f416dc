//===- KvCache.cpp - KV caches for attention over cache policies ---------===//

#include "attnc/Runtime/KvCache.h"

#include "Validate.h"

#include <algorithm>
#include <cstring>
#include <limits>

using namespace attnc::rt;

Expected<std::unique_ptr<KvCache>> KvCache::create(const KvCacheOptions &o) {
  const CachePolicyInfo &p = o.policy;
  if (p.retention == "budget")
    return Status::error("cache policy '" + p.name +
                         "': budget (eviction) retention is not supported yet");
  if (p.retention != "all" && p.retention != "sink_window")
    return Status::error("cache policy '" + p.name + "': unknown retention '" + p.retention + "'");
  if (p.retention == "sink_window" && p.window < 1)
    return Status::error("cache policy '" + p.name + "': the window must hold a token");
  unsigned bytes = detail::typeBytes(p.storage);
  if (p.storage != "f32" && p.storage != "bf16" && p.storage != "f16")
    return Status::error("cache policy '" + p.name + "': storage '" + p.storage +
                         "' is not supported yet (f32, bf16, f16)");
  if (o.numKvHeads < 1 || o.headDim < 1 || o.headDimV < 0)
    return Status::error("KV cache: numKvHeads and headDim must be positive");
  if (o.numPages < 1)
    return Status::error("KV cache: the pool needs at least one page");
  std::unique_ptr<KvCache> c(new KvCache());
  c->opts = o;
  c->D = o.headDim;
  c->Dv = o.headDimV > 0 ? o.headDimV : o.headDim;
  c->opts.headDimV = c->Dv;
  c->elemBytes = bytes;
  if (p.layout == "paged") {
    if (p.pageSize < 1)
      return Status::error("cache policy '" + p.name + "': page size must be positive");
    c->P = p.pageSize;
  } else if (p.layout == "contiguous") {
    if (o.maxTokens < 1)
      return Status::error("KV cache with contiguous layout: maxTokens must be positive");
    c->P = o.maxTokens;
  } else {
    return Status::error("cache policy '" + p.name + "': unknown layout '" + p.layout + "'");
  }
  int64_t pageK = o.numKvHeads * c->P * c->D * bytes, pageV = o.numKvHeads * c->P * c->Dv * bytes;
  if (o.numPages > (int64_t(1) << 40) / std::max(pageK, pageV) || o.numPages > INT32_MAX)
    return Status::error("KV cache: pool of " + std::to_string(o.numPages) + " pages is too large");
  c->kPool.assign(size_t(o.numPages * pageK), 0);
  c->vPool.assign(size_t(o.numPages * pageV), 0);
  // Pages are handed out lowest first.
  for (int64_t i = o.numPages - 1; i >= 0; --i)
    c->freeList.push_back(int32_t(i));
  return c;
}

Expected<int64_t> KvCache::addSequence() {
  for (size_t i = 0; i < sequences.size(); ++i)
    if (!sequences[i].live) {
      sequences[i] = Sequence();
      sequences[i].live = true;
      return int64_t(i);
    }
  sequences.emplace_back();
  sequences.back().live = true;
  return int64_t(sequences.size() - 1);
}

Expected<KvCache::Sequence *> KvCache::find(int64_t seq) {
  if (seq < 0 || seq >= int64_t(sequences.size()) || !sequences[seq].live)
    return Status::error("KV cache: no sequence " + std::to_string(seq));
  return &sequences[seq];
}

Status KvCache::removeSequence(int64_t seq) {
  auto s = find(seq);
  if (!s)
    return s.error();
  for (int32_t page : (*s)->pages)
    freeList.push_back(page);
  **s = Sequence();
  return Status::ok();
}

bool KvCache::retains(int64_t position, int64_t newLength) const {
  const CachePolicyInfo &p = opts.policy;
  if (p.retention != "sink_window")
    return true;
  return position < p.sink || position >= newLength - p.window;
}

int64_t KvCache::bytesPerTokenPerHead() const { return (D + Dv) * elemBytes; }

int64_t KvCache::bytesInUse() const {
  return pagesInUse() * P * opts.numKvHeads * bytesPerTokenPerHead();
}

int64_t KvCache::length(int64_t seq) const {
  if (seq < 0 || seq >= int64_t(sequences.size()) || !sequences[seq].live)
    return -1;
  return sequences[seq].length;
}

std::vector<int32_t> KvCache::retainedPositions(int64_t seq) const {
  std::vector<int32_t> out;
  if (length(seq) < 0)
    return out;
  const Sequence &s = sequences[seq];
  for (int64_t i = 0; i < s.slots; ++i)
    if (s.pos[i] >= 0)
      out.push_back(s.pos[i]);
  return out;
}

Expected<KvCache::SequenceView> KvCache::view(int64_t seq) const {
  if (length(seq) < 0)
    return Status::error("KV cache: no sequence " + std::to_string(seq));
  const Sequence &s = sequences[seq];
  return SequenceView{&s.pages, &s.pos, s.slots, s.length};
}

/// Moves a contiguous sequence's retained slots to the front of its page.
void KvCache::compact(Sequence &s) {
  int32_t page = s.pages.front();
  int64_t Hkv = opts.numKvHeads, out = 0;
  for (int64_t i = 0; i < s.slots; ++i) {
    if (s.pos[i] < 0)
      continue;
    if (out != i)
      for (int64_t h = 0; h < Hkv; ++h) {
        char *kb = kPool.data() + ((int64_t(page) * Hkv + h) * P) * D * elemBytes;
        char *vb = vPool.data() + ((int64_t(page) * Hkv + h) * P) * Dv * elemBytes;
        std::memmove(kb + out * D * elemBytes, kb + i * D * elemBytes, D * elemBytes);
        std::memmove(vb + out * Dv * elemBytes, vb + i * Dv * elemBytes, Dv * elemBytes);
      }
    s.pos[out++] = s.pos[i];
  }
  std::fill(s.pos.begin() + out, s.pos.end(), -1);
  s.slots = out;
}

Status KvCache::append(int64_t seq, const DLTensor *k, const DLTensor *v) {
  auto found = find(seq);
  if (!found)
    return found.error();
  Sequence &s = **found;
  const int64_t Hkv = opts.numKvHeads;
  auto check = [&](const char *what, const DLTensor *t, int64_t dim) -> Status {
    if (!t || !t->data)
      return Status::error(std::string("append: ") + what + " is null");
    if (t->device.device_type != kDLCPU)
      return Status::error(std::string("append: ") + what + " must be on kDLCPU");
    if (!detail::sameType(t->dtype, opts.policy.storage))
      return Status::error(std::string("append: ") + what + " must be " + opts.policy.storage +
                           " (the policy's storage)");
    if (t->ndim != 3 || t->shape[0] != Hkv || t->shape[2] != dim)
      return Status::error(std::string("append: ") + what + " must be [Hkv=" + std::to_string(Hkv) +
                           ", n, " + std::to_string(dim) + "]");
    if (t->strides) {
      int64_t n = t->shape[1];
      if (t->strides[2] != 1 || t->strides[1] != dim || t->strides[0] != n * dim)
        return Status::error(std::string("append: ") + what + " must be dense");
    }
    return Status::ok();
  };
  if (Status st = check("k", k, D); !st)
    return st;
  if (Status st = check("v", v, Dv); !st)
    return st;
  const int64_t n = k->shape[1];
  if (v->shape[1] != n)
    return Status::error("append: k has " + std::to_string(n) + " tokens, v " +
                         std::to_string(v->shape[1]));
  const int64_t newLength = s.length + n;
  if (newLength > INT32_MAX)
    return Status::error("append: positions past INT32_MAX");

  // What retention drops and what is stored, before anything changes.
  int64_t store = 0;
  for (int64_t p = s.length; p < newLength; ++p)
    store += retains(p, newLength);
  std::vector<char> dead(size_t(s.slots), 0);
  for (int64_t i = 0; i < s.slots; ++i)
    dead[i] = s.pos[i] < 0 || !retains(s.pos[i], newLength);
  const bool contiguous = opts.policy.layout == "contiguous";
  std::vector<size_t> freeable; // paged: whole pages of dropped slots, not the last
  int64_t live = 0;
  for (char d : dead)
    live += !d;
  int64_t needPages = 0;
  if (contiguous) {
    if (live + store > P)
      return Status::error("KV cache '" + opts.policy.name + "': sequence " + std::to_string(seq) +
                           " needs " + std::to_string(live + store) +
                           " slots, its contiguous page holds " + std::to_string(P));
    needPages = s.pages.empty() ? 1 : 0;
  } else {
    for (size_t pg = 0; pg + 1 < s.pages.size(); ++pg) {
      bool all = true;
      for (int64_t i = int64_t(pg) * P; i < int64_t(pg + 1) * P && all; ++i)
        all = dead[i];
      if (all)
        freeable.push_back(pg);
    }
    int64_t room = int64_t(s.pages.size()) * P - s.slots;
    needPages = store > room ? (store - room + P - 1) / P : 0;
  }
  if (needPages > int64_t(freeList.size() + freeable.size()))
    return Status::error("KV cache '" + opts.policy.name + "' exhausted: sequence " +
                         std::to_string(seq) + " needs " + std::to_string(needPages) +
                         " more pages, " + std::to_string(freeList.size() + freeable.size()) +
                         " free of " + std::to_string(opts.numPages) + " (pages of " +
                         std::to_string(P) + " tokens)");

  // Drop, release, allocate, write.
  for (int64_t i = 0; i < s.slots; ++i)
    if (dead[i])
      s.pos[i] = -1;
  for (auto it = freeable.rbegin(); it != freeable.rend(); ++it) {
    size_t pg = *it;
    freeList.push_back(s.pages[pg]);
    s.pages.erase(s.pages.begin() + pg);
    s.pos.erase(s.pos.begin() + pg * P, s.pos.begin() + (pg + 1) * P);
    s.slots -= P;
  }
  if (contiguous && !s.pages.empty() && s.slots + store > P)
    compact(s);
  for (int64_t i = 0; i < needPages; ++i) {
    s.pages.push_back(freeList.back());
    freeList.pop_back();
    s.pos.resize(s.pages.size() * P, -1);
  }
  const char *kSrc = static_cast<const char *>(k->data) + k->byte_offset;
  const char *vSrc = static_cast<const char *>(v->data) + v->byte_offset;
  for (int64_t t = 0; t < n; ++t) {
    int64_t p = s.length + t;
    if (!retains(p, newLength))
      continue;
    int64_t slot = s.slots++;
    int64_t page = s.pages[slot / P], row = slot % P;
    for (int64_t h = 0; h < Hkv; ++h) {
      std::memcpy(kPool.data() + (((page * Hkv + h) * P + row) * D) * elemBytes,
                  kSrc + ((h * n + t) * D) * elemBytes, D * elemBytes);
      std::memcpy(vPool.data() + (((page * Hkv + h) * P + row) * Dv) * elemBytes,
                  vSrc + ((h * n + t) * Dv) * elemBytes, Dv * elemBytes);
    }
    s.pos[slot] = int32_t(p);
  }
  s.length = newLength;
  return Status::ok();
}
