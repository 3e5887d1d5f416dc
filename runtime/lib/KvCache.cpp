//===- KvCache.cpp - KV caches for attention over cache policies ---------===//

#include "attnc/Runtime/KvCache.h"

#include "Validate.h"

#include "attnc/Runtime/Half.h"

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
  const bool quant = p.storage == "i8";
  if (p.storage != "f32" && p.storage != "bf16" && p.storage != "f16" && !quant)
    return Status::error("cache policy '" + p.name + "': storage '" + p.storage +
                         "' is not supported yet (f32, bf16, f16, i8)");
  std::string input = o.inputDtype.empty() ? p.storage : o.inputDtype;
  if (input != "f32" && input != "bf16" && input != "f16")
    return Status::error("KV cache: inputDtype must be f32, bf16 or f16" +
                         std::string(quant ? " (int8 storage quantizes its input)" : ""));
  if (!quant && input != p.storage)
    return Status::error("KV cache: inputDtype " + input + " differs from the storage " +
                         p.storage + " (only int8 storage converts)");
  if (quant && p.scale == "per_group" &&
      (p.groupSize < 1 || o.headDim % p.groupSize ||
       (o.headDimV > 0 ? o.headDimV : o.headDim) % p.groupSize))
    return Status::error("cache policy '" + p.name + "': scale groups of " +
                         std::to_string(p.groupSize) + " do not divide the head dims");
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
  c->inBytes = detail::typeBytes(input);
  c->opts.inputDtype = input;
  c->quant = quant;
  if (quant && p.scale == "per_group") {
    c->gK = c->D / p.groupSize;
    c->gV = c->Dv / p.groupSize;
  }
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
  if (quant) {
    c->kScales.assign(size_t(o.numPages * o.numKvHeads * c->P * c->gK), 0.f);
    c->vScales.assign(size_t(o.numPages * o.numKvHeads * c->P * c->gV), 0.f);
  }
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

int64_t KvCache::bytesPerTokenPerHead() const {
  return (D + Dv) * elemBytes + (quant ? int64_t(sizeof(float)) * (gK + gV) : 0);
}

/// Element d of a token row of the input type.
static float inputAt(const char *row, const std::string &dtype, int64_t d) {
  if (dtype == "f32")
    return reinterpret_cast<const float *>(row)[d];
  uint16_t bits = reinterpret_cast<const uint16_t *>(row)[d];
  return dtype == "bf16" ? bf16ToFloat(bits) : f16ToFloat(bits);
}

/// Token t, head h of `src` ([Hkv, n, dim], input type) into the storage
/// row `dst` (and its scales).
void KvCache::storeRow(const DLTensor *src, int64_t n, int64_t t, int64_t h, int64_t dim,
                       int64_t groups, char *dst, float *scales) const {
  const char *row =
      static_cast<const char *>(src->data) + src->byte_offset + ((h * n + t) * dim) * inBytes;
  if (!quant) {
    std::memcpy(dst, row, dim * elemBytes);
    return;
  }
  int64_t g = dim / groups;
  for (int64_t k = 0; k < groups; ++k) {
    float amax = 0;
    for (int64_t d = k * g; d < (k + 1) * g; ++d)
      amax = std::max(amax, std::fabs(inputAt(row, opts.inputDtype, d)));
    float scale = amax / 127.f;
    scales[k] = scale;
    for (int64_t d = k * g; d < (k + 1) * g; ++d) {
      float x = inputAt(row, opts.inputDtype, d);
      int q = scale > 0 ? int(std::lround(x / scale)) : 0;
      reinterpret_cast<int8_t *>(dst)[d] = int8_t(std::clamp(q, -127, 127));
    }
  }
}

float KvCache::loadElement(const char *src, const float *scales, int64_t d, int64_t dim,
                           int64_t groups) const {
  if (quant)
    return float(reinterpret_cast<const int8_t *>(src)[d]) * scales[d / (dim / groups)];
  return inputAt(src, opts.policy.storage, d);
}

Status KvCache::readToken(int64_t seq, int64_t position, int64_t head, float *k, float *v) const {
  if (length(seq) < 0)
    return Status::error("KV cache: no sequence " + std::to_string(seq));
  if (head < 0 || head >= opts.numKvHeads)
    return Status::error("KV cache: no KV head " + std::to_string(head));
  const Sequence &s = sequences[seq];
  for (int64_t i = 0; i < s.slots; ++i) {
    if (s.pos[i] != position)
      continue;
    int64_t page = s.pages[i / P], row = i % P, Hkv = opts.numKvHeads;
    int64_t at = (page * Hkv + head) * P + row;
    for (int64_t d = 0; d < D; ++d)
      k[d] = loadElement(kPool.data() + at * D * elemBytes, quant ? &kScales[at * gK] : nullptr, d,
                         D, gK);
    for (int64_t d = 0; d < Dv; ++d)
      v[d] = loadElement(vPool.data() + at * Dv * elemBytes, quant ? &vScales[at * gV] : nullptr, d,
                         Dv, gV);
    return Status::ok();
  }
  return Status::error("KV cache: sequence " + std::to_string(seq) + " does not retain position " +
                       std::to_string(position));
}

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
        if (quant) {
          float *ks = &kScales[(int64_t(page) * Hkv + h) * P * gK];
          float *vs = &vScales[(int64_t(page) * Hkv + h) * P * gV];
          std::memmove(ks + out * gK, ks + i * gK, gK * sizeof(float));
          std::memmove(vs + out * gV, vs + i * gV, gV * sizeof(float));
        }
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
    if (!detail::sameType(t->dtype, opts.inputDtype))
      return Status::error(std::string("append: ") + what + " must be " + opts.inputDtype +
                           (quant ? " (the cache's input type)" : " (the policy's storage)"));
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
  for (int64_t t = 0; t < n; ++t) {
    int64_t p = s.length + t;
    if (!retains(p, newLength))
      continue;
    int64_t slot = s.slots++;
    int64_t page = s.pages[slot / P], row = slot % P;
    for (int64_t h = 0; h < Hkv; ++h) {
      int64_t at = (page * Hkv + h) * P + row;
      storeRow(k, n, t, h, D, gK, kPool.data() + at * D * elemBytes,
               quant ? &kScales[at * gK] : nullptr);
      storeRow(v, n, t, h, Dv, gV, vPool.data() + at * Dv * elemBytes,
               quant ? &vScales[at * gV] : nullptr);
    }
    s.pos[slot] = int32_t(p);
  }
  s.length = newLength;
  return Status::ok();
}
