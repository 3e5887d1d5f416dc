//===- cuda-decode-check.cpp - KV-cache decode through the runtime, on a GPU -===//
//
// End to end over the light runtime only (no compiler, so it builds on the
// GPU machine): for each AOT decode kernel given (attnc --kv-cache), a host
// rt::KvCache of the kernel's policy takes a prompt and then decode steps
// (Nq = 1, and 3 for speculative steps) for several sequences of different
// lengths; every step uploads the pools and KvCache::tables(), launches
// CudaKernel::launch(CudaCacheLaunchArgs) and compares O and LSE with
// float64 attention over exactly the positions the cache retains, on the
// values it stores (KvCache::readToken: dequantized). Budget policies (H2O,
// SnapKV) also run attnc_<K>_mass: its mass table is compared with the
// float64 attention mass of the counted queries and handed back to the
// cache (KvCache::updateScores), whose next append evicts by it. A twin
// cache keeps its pools on the GPU (CudaKvStore: appends through the
// generated append kernel, evictions through the move kernel, launches
// through CudaKvStore::decode): it must retain the same positions, store
// the same bytes (the GPU quantizes as the host does) and give the same
// O and LSE, bit for bit. Prints one line per kernel and `N passed, N
// failed`.
//
//   attnc-cuda-decode-check bench/gpu/ptx/paged_attention_bf16_d128_kv.ptx ...
//
// The masks of the lib kernels it knows: causal, and lib/streaming.attn's
// streaming_llm (causal and (k < 4 or q - k < 1020)).
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/Cuda.h"
#include "attnc/Runtime/Half.h"
#include "attnc/Runtime/KvCache.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace attnc::rt;

namespace {

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The kernel of `ptxPath` (and its .meta), or null after printing why,
/// `failPrefix` first.
std::shared_ptr<CudaKernel> loadKernel(const std::string &ptxPath, const char *failPrefix = "") {
  auto kernel = CudaKernel::load(readFile(ptxPath), readFile(ptxPath + ".meta"));
  if (!kernel) {
    std::printf("%s%s: %s\n", failPrefix, ptxPath.c_str(), kernel.message().c_str());
    return nullptr;
  }
  return *kernel;
}

/// A device copy of host bytes (re-uploaded each step; `data` null: only
/// the allocation) and its DLTensor.
struct Device {
  CudaBuffer buffer;
  std::vector<int64_t> shape;
  DLTensor t{};
  Status set(const void *data, size_t bytes, std::vector<int64_t> dims, DLDataType dtype) {
    if (buffer.size() < std::max<size_t>(bytes, 1)) {
      auto b = CudaBuffer::allocate(0, std::max<size_t>(bytes, 1));
      if (!b)
        return b.error();
      buffer = std::move(*b);
    }
    if (data && bytes)
      if (Status s = buffer.upload(data, bytes); !s)
        return s;
    shape = std::move(dims);
    t = DLTensor{};
    t.data = buffer.data();
    t.device = {kDLCUDA, 0};
    t.ndim = int(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    return Status::ok();
  }
};

const DLDataType kBF16{kDLBfloat, 16, 1}, kF32{kDLFloat, 32, 1}, kI32{kDLInt, 32, 1},
    kI8{kDLInt, 8, 1};

/// Decode steps of one kernel; returns whether every step matched.
bool checkKernel(const std::string &ptxPath) {
  std::shared_ptr<CudaKernel> kernel = loadKernel(ptxPath, "FAIL ");
  if (!kernel)
    return false;
  const CudaKernelInfo &ki = kernel->info();
  if (!ki.cache || ki.dtype != "bf16") {
    std::printf("FAIL %s: not a bf16 KV-cache kernel\n", ki.name.c_str());
    return false;
  }
  std::function<bool(int64_t, int64_t)> mask = [](int64_t q, int64_t k) { return k <= q; };
  if (ki.name == "streaming_llm")
    mask = [](int64_t q, int64_t k) { return k <= q && (k < 4 || q - k < 1020); };
  const int64_t Hkv = 2, Hq = 8, D = ki.headDim, Dv = ki.headDimV, B = 3;
  KvCacheOptions o;
  o.policy = *ki.cache;
  o.numKvHeads = Hkv;
  o.headDim = D;
  o.headDimV = Dv;
  o.numPages = 4096;
  o.inputDtype = "bf16";
  // Per-head policies (DuoAttention, budgets of both scores): KV head h
  // takes policy h % count, so every sequence has heads of each.
  if (ki.cache->layout == "per_head")
    for (int64_t h = 0; h < Hkv; ++h)
      o.headKinds.push_back(int32_t(h % int64_t(ki.cache->headPolicies.size())));
  // Budgets of both scores: a window of 4, so that the steps of 6 queries
  // run as two launches (KvCache::scoringSplit).
  if (ki.cache->addsScores() && ki.cache->poolsScores())
    o.observationWindow = 4;
  auto cache = KvCache::create(o);
  if (!cache) {
    std::printf("FAIL %s: %s\n", ki.name.c_str(), cache.message().c_str());
    return false;
  }
  KvCache &c = **cache;
  auto store = CudaKvStore::create(kernel, o.numPages, 0);
  if (!store) {
    std::printf("FAIL %s: %s\n", ki.name.c_str(), store.message().c_str());
    return false;
  }
  KvCacheOptions od = o;
  od.store = *store;
  auto twin = KvCache::create(od);
  if (!twin) {
    std::printf("FAIL %s: %s\n", ki.name.c_str(), twin.message().c_str());
    return false;
  }
  KvCache &dc = **twin;
  std::vector<int64_t> seqs, dseqs;
  for (int64_t b = 0; b < B; ++b) {
    seqs.push_back(*c.addSequence());
    dseqs.push_back(*dc.addSequence());
  }
  Device dk, dv; // the twin's appended K/V on the GPU
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  auto append = [&](int64_t b, int64_t n) {
    std::vector<uint16_t> k(size_t(Hkv * n * D)), v(size_t(Hkv * n * Dv));
    for (auto &x : k)
      x = floatToBf16(normal(rng));
    for (auto &x : v)
      x = floatToBf16(normal(rng));
    int64_t ks[3] = {Hkv, n, D}, vs[3] = {Hkv, n, Dv};
    DLTensor tk{}, tv{};
    tk.data = k.data(), tv.data = v.data();
    tk.device = tv.device = {kDLCPU, 0};
    tk.ndim = tv.ndim = 3;
    tk.dtype = tv.dtype = kBF16;
    tk.shape = ks, tv.shape = vs;
    if (Status s = c.append(seqs[b], &tk, &tv); !s)
      return s;
    Status s = dk.set(k.data(), k.size() * 2, {Hkv, n, D}, kBF16);
    if (s)
      s = dv.set(v.data(), v.size() * 2, {Hkv, n, Dv}, kBF16);
    if (s)
      s = dc.append(dseqs[b], &dk.t, &dv.t);
    return s;
  };
  // Prompts of different lengths (one past the sink + window of the
  // streaming policies), then decode steps, every fifth with 3 queries.
  const int64_t prompts[B] = {1500, 37, 640};
  for (int64_t b = 0; b < B; ++b)
    if (Status s = append(b, prompts[b]); !s) {
      std::printf("FAIL %s: append: %s\n", ki.name.c_str(), s.message().c_str());
      return false;
    }
  const bool quant = c.quantized();
  const int64_t per = c.packsNibbles() ? 2 : 1, P = c.pageSize();
  Device kPool, vPool, kScales, vScales, pages, pos, len, qpos, q, out, lse, massT;
  double worstO = 0, worstL = 0, worstMass = 0;
  bool twinSame = true;
  int64_t rowsCompared = 0, scoresCompared = 0;
  int64_t mostSlots = 0;
  for (int step = 0; step < 24; ++step) {
    // Nq 6 packs 24 rows: the wide (32-row) twin of the decode kernel.
    const int64_t Nq = step % 5 == 4 ? (step % 10 == 9 ? 6 : 3) : 1;
    for (int64_t b = 0; b < B; ++b)
      if (Status s = append(b, Nq); !s) {
        std::printf("FAIL %s: append: %s\n", ki.name.c_str(), s.message().c_str());
        return false;
      }
    auto t = c.tables(seqs, Nq);
    if (!t) {
      std::printf("FAIL %s: %s\n", ki.name.c_str(), t.message().c_str());
      return false;
    }
    const size_t elem = quant ? 1 : 2;
    const DLDataType scaleType{kDLFloat, uint8_t(8 * c.scaleBytes()), 1};
    const int64_t rows = B * Hkv;
    std::vector<uint16_t> hq(size_t(B * Hq * Nq * D));
    for (auto &x : hq)
      x = floatToBf16(normal(rng));
    Status s = kPool.set(c.keyPool(), size_t(o.numPages * P * D / per) * elem,
                         {o.numPages, P, D / per}, quant ? kI8 : kBF16);
    if (s)
      s = vPool.set(c.valuePool(), size_t(o.numPages * P * Dv / per) * elem,
                    {o.numPages, P, Dv / per}, quant ? kI8 : kBF16);
    if (s && quant)
      s = kScales.set(c.keyScales(), size_t(o.numPages * P * c.keyGroups() * c.scaleBytes()),
                      {o.numPages, P, c.keyGroups()}, scaleType);
    if (s && quant)
      s = vScales.set(c.valueScales(), size_t(o.numPages * P * c.valueGroups() * c.scaleBytes()),
                      {o.numPages, P, c.valueGroups()}, scaleType);
    if (s)
      s = pages.set(t->pages.data(), t->pages.size() * 4, {rows, t->maxPages}, kI32);
    if (s)
      s = pos.set(t->positions.data(), t->positions.size() * 4, {rows, t->maxSlots}, kI32);
    if (s)
      s = len.set(t->lengths.data(), t->lengths.size() * 4, {rows}, kI32);
    if (s)
      s = qpos.set(t->queryPositions.data(), t->queryPositions.size() * 4, {B}, kI32);
    if (s)
      s = q.set(hq.data(), hq.size() * 2, {B, Hq, Nq, D}, kBF16);
    if (s)
      s = out.set(nullptr, size_t(B * Hq * Nq * Dv) * 2, {B, Hq, Nq, Dv}, kBF16);
    if (s)
      s = lse.set(nullptr, size_t(B * Hq * Nq) * 4, {B, Hq, Nq}, kF32);
    CudaCacheLaunchArgs a;
    a.q = &q.t, a.o = &out.t, a.lse = &lse.t;
    a.cache.keyPool = &kPool.t, a.cache.valuePool = &vPool.t;
    if (quant)
      a.cache.keyScales = &kScales.t, a.cache.valueScales = &vScales.t;
    a.cache.pages = &pages.t, a.cache.positions = &pos.t, a.cache.lengths = &len.t;
    a.cache.queryPositions = &qpos.t;
    a.cache.maxLength = t->maxLength;
    const bool budget = c.scoresSlots();
    // Budgets of both scores past the observation window: the leading
    // queries, then the window's, as CudaKvStore::decode launches them
    // (KvCache::scoringSplit); hmLead: the leading launch's mass.
    const int64_t last = c.scoringSplit(Nq);
    std::vector<float> hm(size_t(rows * t->maxSlots), 0.f), hmLead;
    Device workspace, qposPart;
    auto launchRows = [&](int64_t first, int64_t count, std::vector<float> &mass) -> Status {
      int64_t qs[4] = {B, Hq, count, D}, qst[4] = {Hq * Nq * D, Nq * D, D, 1};
      int64_t os[4] = {B, Hq, count, Dv}, ost[4] = {Hq * Nq * Dv, Nq * Dv, Dv, 1};
      int64_t ls[3] = {B, Hq, count}, lst[3] = {Hq * Nq, Nq, 1};
      DLTensor qv = q.t, ov = out.t, lv = lse.t;
      qv.shape = qs, qv.strides = qst, qv.byte_offset = uint64_t(first * D * 2);
      ov.shape = os, ov.strides = ost, ov.byte_offset = uint64_t(first * Dv * 2);
      lv.shape = ls, lv.strides = lst, lv.byte_offset = uint64_t(first * 4);
      // The step's tables give its first query's position; the rows from
      // `first` on start `first` later.
      std::vector<int32_t> qp(t->queryPositions);
      for (int32_t &x : qp)
        x += int32_t(first);
      if (Status e = qposPart.set(qp.data(), qp.size() * 4, {B}, kI32); !e)
        return e;
      CudaCacheLaunchArgs p = a;
      p.q = &qv, p.o = &ov, p.lse = &lv;
      p.cache.queryPositions = &qposPart.t;
      if (budget) {
        mass.assign(hm.size(), 0.f);
        if (Status e = massT.set(mass.data(), mass.size() * 4, {rows, t->maxSlots}, kF32); !e)
          return e;
        p.mass = &massT.t;
        p.massRows = last ? count : c.scoringQueries(Nq);
      }
      auto plan = kernel->decodePlan(B, Hq, Hkv, count, t->maxLength, 0);
      if (!plan)
        return plan.error();
      if (plan->workspaceBytes) {
        if (Status e =
                workspace.set(nullptr, plan->workspaceBytes, {int64_t(plan->workspaceBytes)}, kI8);
            !e)
          return e;
        p.workspace = workspace.buffer.data(), p.workspaceBytes = plan->workspaceBytes;
      }
      if (Status e = kernel->launch(p); !e)
        return e;
      if (Status e = cudaSynchronize(0); !e)
        return e;
      return budget ? massT.buffer.download(mass.data(), mass.size() * 4) : Status::ok();
    };
    if (s && last)
      s = launchRows(0, Nq - last, hmLead);
    if (s)
      s = launchRows(Nq - (last ? last : Nq), last ? last : Nq, hm);
    std::vector<uint16_t> ho(size_t(B * Hq * Nq * Dv));
    std::vector<float> hl(size_t(B * Hq * Nq));
    if (s)
      s = out.buffer.download(ho.data(), ho.size() * 2);
    if (s)
      s = lse.buffer.download(hl.data(), hl.size() * 4);
    // The twin: the same step through its store (pools on the GPU).
    Device out2, lse2;
    std::vector<uint16_t> ho2(ho.size());
    std::vector<float> hl2(hl.size());
    if (s)
      s = out2.set(nullptr, ho.size() * 2, {B, Hq, Nq, Dv}, kBF16);
    if (s)
      s = lse2.set(nullptr, hl.size() * 4, {B, Hq, Nq}, kF32);
    if (s)
      s = (*store)->decode(dc, dseqs, &q.t, &out2.t, &lse2.t);
    if (s)
      s = out2.buffer.download(ho2.data(), ho2.size() * 2);
    if (s)
      s = lse2.buffer.download(hl2.data(), hl2.size() * 4);
    if (s) {
      const bool sameOut = ho2 == ho && std::memcmp(hl2.data(), hl.data(), hl.size() * 4) == 0;
      if (!sameOut && twinSame)
        std::printf("  step %d: the twin's O or LSE differ\n", step);
      twinSame = twinSame && sameOut;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t g = 0; g < Hkv; ++g) {
          std::vector<int32_t> kept = c.retainedPositions(seqs[b], g);
          if (twinSame && kept != dc.retainedPositions(dseqs[b], g))
            std::printf("  step %d sequence %lld head %lld: the twin retains other positions\n",
                        step, (long long)b, (long long)g);
          twinSame = twinSame && kept == dc.retainedPositions(dseqs[b], g);

          if (step % 8 != 0 && step != 23)
            continue;
          // The stored bytes, read back from the GPU, as the host stored them.
          std::vector<float> k1(static_cast<size_t>(D)), v1(static_cast<size_t>(Dv)),
              k2(static_cast<size_t>(D)), v2(static_cast<size_t>(Dv));
          for (int32_t p : kept) {
            if (Status rs = c.readToken(seqs[b], p, g, k1.data(), v1.data()); !rs)
              s = rs;
            if (Status rs = dc.readToken(dseqs[b], p, g, k2.data(), v2.data()); !rs)
              s = rs;
            twinSame = twinSame && k1 == k2 && v1 == v2;
            ++rowsCompared;
          }
        }
    }
    if (!s) {
      std::printf("FAIL %s: step %d: %s\n", ki.name.c_str(), step, s.message().c_str());
      return false;
    }
    // float64 attention over the retained positions' stored values, and
    // the mass of the counted queries per slot (budget policies).
    double maxRef = 0, maxErr = 0;
    std::vector<double> refMass(hm.size(), 0.0);
    std::vector<float> kr(static_cast<size_t>(D)), vr(static_cast<size_t>(Dv));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h) {
        int64_t g = h / (Hq / Hkv);
        std::vector<int32_t> kept = c.retainedPositions(seqs[b], g);
        const int64_t row = b * Hkv + g;
        if (c.headPolicy(g).retention == "budget") // (the budget heads' slots)
          mostSlots = std::max<int64_t>(mostSlots, int64_t(kept.size()) - c.headPolicy(g).budget);
        std::vector<int64_t> slotOf(kept.size(), -1); // kept[j] is in this slot
        for (int64_t sl = 0; sl < t->maxSlots; ++sl) {
          int32_t p = t->positions[size_t(row * t->maxSlots + sl)];
          if (p >= 0)
            slotOf[std::lower_bound(kept.begin(), kept.end(), p) - kept.begin()] = sl;
        }
        std::vector<std::vector<float>> ks, vs;
        for (int32_t p : kept) {
          if (Status rs = c.readToken(seqs[b], p, g, kr.data(), vr.data()); !rs) {
            std::printf("FAIL %s: %s\n", ki.name.c_str(), rs.message().c_str());
            return false;
          }
          ks.push_back(kr), vs.push_back(vr);
        }
        for (int64_t i = 0; i < Nq; ++i) {
          int64_t qp = c.length(seqs[b]) - Nq + i;
          const uint16_t *qrow = &hq[size_t(((b * Hq + h) * Nq + i) * D)];
          std::vector<double> sc;
          std::vector<size_t> idx;
          for (size_t j = 0; j < kept.size(); ++j) {
            if (!mask(qp, kept[j]))
              continue;
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
              dot += double(bf16ToFloat(qrow[d])) * ks[j][d];
            sc.push_back(dot / std::sqrt(double(D)));
            idx.push_back(j);
          }
          double m = -INFINITY, sum = 0;
          for (double x : sc)
            m = std::max(m, x);
          for (double x : sc)
            sum += std::exp(x - m);
          size_t orow = size_t((b * Hq + h) * Nq + i);
          for (int64_t d = 0; d < Dv; ++d) {
            double ref = 0;
            for (size_t j = 0; j < sc.size(); ++j)
              ref += std::exp(sc[j] - m) / sum * vs[idx[j]][d];
            maxRef = std::max(maxRef, std::fabs(ref));
            maxErr = std::max(maxErr, std::fabs(double(bf16ToFloat(ho[orow * Dv + d])) - ref));
          }
          double refL = sc.empty() ? -INFINITY : m + std::log(sum);
          worstL = std::max(worstL, std::isinf(refL) ? (std::isinf(hl[orow]) ? 0.0 : 1.0)
                                                     : std::fabs(hl[orow] - refL));
          // The queries a head counts: snapkv heads the window (of the
          // second launch where split), the others all of them.
          const int64_t counted =
              last && c.headPolicy(g).evict == "snapkv" ? last : c.scoringQueries(Nq);
          if (budget && i >= Nq - counted)
            for (size_t j = 0; j < sc.size(); ++j)
              refMass[size_t(row * t->maxSlots + slotOf[idx[j]])] += std::exp(sc[j] - m) / sum;
        }
      }
    worstO = std::max(worstO, maxErr / std::max(maxRef, 1e-6));
    if (budget) {
      // Mass per slot: |GPU - float64| relative to the largest slot mass of
      // its row (bf16 Q.K^T on the GPU vs float64 here); a split step's
      // h2o heads count both launches.
      for (int64_t r = 0; r < rows; ++r) {
        const bool both = last && c.headPolicy(r % Hkv).evict != "snapkv";
        double top = 0, err = 0;
        for (int64_t sl = 0; sl < t->maxSlots; ++sl) {
          size_t at = size_t(r * t->maxSlots + sl);
          top = std::max(top, refMass[at]);
          double got = double(hm[at]) + (both ? double(hmLead[at]) : 0.0);
          err = std::max(err, std::fabs(got - refMass[at]));
        }
        worstMass = std::max(worstMass, err / std::max(top, 1e-6));
      }
      if (Status us = last ? c.updateScores(seqs, hmLead, t->maxSlots, /*leadingQueries=*/true)
                           : Status::ok();
          !us) {
        std::printf("FAIL %s: %s\n", ki.name.c_str(), us.message().c_str());
        return false;
      }
      if (Status us = c.updateScores(seqs, hm, t->maxSlots); !us) {
        std::printf("FAIL %s: %s\n", ki.name.c_str(), us.message().c_str());
        return false;
      }
      // The twin's scores live on the GPU (H2O: its decode's mass kernel
      // added this step's there; SnapKV: its pool kernel pooled this step's
      // mass table there; victims are chosen there), or in its cache (from
      // its downloaded mass tables): with this step's mass taken here too,
      // they must be the host's, bit for bit.
      for (int64_t b = 0; b < B; ++b)
        for (int64_t g = 0; g < Hkv; ++g) {
          std::vector<float> hs = c.scores(seqs[b], g), ds = dc.scores(dseqs[b], g);
          bool same =
              hs.size() == ds.size() && std::memcmp(hs.data(), ds.data(), hs.size() * 4) == 0;
          if (!same && twinSame)
            std::printf("  step %d sequence %lld head %lld: %zu scores here, %zu on the GPU\n",
                        step, (long long)b, (long long)g, hs.size(), ds.size());
          twinSame = twinSame && same;
          ++scoresCompared;
        }
    }
  }
  bool ok = worstO < 2e-2 && worstL < 1e-2 && twinSame;
  std::string extra =
      std::string(", GPU-resident twin ") + (twinSame ? "identical" : "DIFFERS") + " (" +
      std::to_string(rowsCompared) + " stored rows compared" +
      (scoresCompared
           ? std::string((*store)->keepsScores() ? ", scores kept and victims chosen on the GPU, "
                                                 : ", ") +
                 std::to_string(scoresCompared) + " heads' scores compared"
           : std::string()) +
      ")";
  if (c.scoresSlots()) {
    // The budgets held: at most N + Nq slots per budget head after the
    // prompts (mostSlots: the most over its N).
    ok = ok && worstMass < 2e-2 && mostSlots <= 6; // the largest Nq
    std::string budgets;
    for (int64_t g = 0; g < Hkv; ++g)
      if (c.headPolicy(g).retention == "budget")
        budgets += (budgets.empty() ? "" : ", ") + std::to_string(c.headPolicy(g).budget) + " " +
                   c.headPolicy(g).evict;
    extra += ", budget " + budgets + ": most slots over it " + std::to_string(mostSlots) +
             ", max|dmass|/max mass = ";
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2e", worstMass);
    extra += buf;
  }
  std::printf("%s %s (%s, D %lld): 3 sequences, prompts 1500/37/640, 24 steps (Nq 1, 3, 6), "
              "max|dO|/max|O| = %.2e, max|dLSE| = %.2e%s\n",
              ok ? "PASS" : "FAIL", ki.name.c_str(), ki.cache->storagePolicy().storage.c_str(),
              (long long)D, worstO, worstL, extra.c_str());
  return ok;
}

/// Random bf16 (normal) on the GPU: K/V rows k, v [Hkv, n, D / Dv] to
/// append and queries q [B, Hq, 1, D], with out [B, Hq, 1, Dv]; `host`
/// keeps the values (k, v and q share them).
Status stepTensors(int64_t B, int64_t Hq, int64_t Hkv, int64_t n, int64_t D, int64_t Dv,
                   std::vector<uint16_t> &host, Device &k, Device &v, Device &q, Device &out) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  host.resize(size_t(std::max(Hkv * n, B * Hq) * std::max(D, Dv)));
  for (auto &x : host)
    x = floatToBf16(normal(rng));
  Status s = k.set(host.data(), size_t(Hkv * n * D) * 2, {Hkv, n, D}, kBF16);
  if (s)
    s = v.set(host.data(), size_t(Hkv * n * Dv) * 2, {Hkv, n, Dv}, kBF16);
  if (s)
    s = q.set(host.data(), size_t(B * Hq * D) * 2, {B, Hq, 1, D}, kBF16);
  if (s)
    s = out.set(nullptr, size_t(B * Hq * Dv) * 2, {B, Hq, 1, Dv}, kBF16);
  return s;
}

/// A cache of `kernel`'s policy (Hkv KV heads, bf16 input) whose pools
/// live in a new CudaKvStore of `numPages` pages; null after printing why.
std::pair<std::shared_ptr<CudaKvStore>, std::unique_ptr<KvCache>>
storeBackedCache(std::shared_ptr<CudaKernel> kernel, int64_t Hkv, int64_t numPages) {
  const CudaKernelInfo &ki = kernel->info();
  KvCacheOptions o;
  o.policy = *ki.cache;
  o.numKvHeads = Hkv, o.headDim = ki.headDim, o.headDimV = ki.headDimV, o.inputDtype = "bf16";
  o.numPages = numPages;
  auto store = CudaKvStore::create(kernel, numPages, 0);
  if (!store) {
    std::printf("%s\n", store.message().c_str());
    return {};
  }
  o.store = *store;
  auto cache = KvCache::create(o);
  if (!cache) {
    std::printf("%s\n", cache.message().c_str());
    return {};
  }
  return {*store, std::move(*cache)};
}

/// --time-store: the time of CudaKvStore::decode steps (append a token to
/// each sequence, then decode; the decode waits for its kernels) at B = 8,
/// Hq/Hkv = 32/8, `length` tokens, the device tables kept (the same
/// sequences each step) against uploaded whole (the order alternating,
/// which is what every step cost before they were kept), and kept with the
/// step's tokens appended as one batch (KvCache::append(seqs, ...): one
/// eviction request, one move and one write for the 8 sequences, against
/// 8 of each one sequence at a time). A benchmark, not
/// a check: it compares nothing. Also the time of each step's appends (for
/// budget policies: the eviction, chosen where the store keeps the scores).
int timeStore(const std::string &ptxPath, int64_t length) {
  std::shared_ptr<CudaKernel> kernel = loadKernel(ptxPath);
  if (!kernel)
    return 1;
  const CudaKernelInfo &ki = kernel->info();
  const int64_t B = 8, Hkv = 8, Hq = 32, D = ki.headDim, Dv = ki.headDimV, steps = 20;
  const int64_t chunk = 4096;
  auto [store, cache] = storeBackedCache(kernel, Hkv, B * Hkv * ((length + 2 * steps) / 16 + 2));
  if (!cache)
    return 1;
  std::vector<uint16_t> host;
  Device kc, vc, q, out;
  Status s = stepTensors(B, Hq, Hkv, chunk, D, Dv, host, kc, vc, q, out);
  std::vector<int64_t> seqs;
  for (int64_t b = 0; b < B && s; ++b) {
    seqs.push_back(*cache->addSequence());
    for (int64_t at = 0; at + chunk <= length && s; at += chunk)
      s = cache->append(seqs.back(), &kc.t, &vc.t);
  }
  Device k1, v1, kb, vb; // a token of one sequence; of each of the batch's
  if (s)
    s = k1.set(host.data(), size_t(Hkv * D) * 2, {Hkv, 1, D}, kBF16);
  if (s)
    s = v1.set(host.data(), size_t(Hkv * Dv) * 2, {Hkv, 1, Dv}, kBF16);
  if (s)
    s = kb.set(host.data(), size_t(B * Hkv * D) * 2, {B, Hkv, 1, D}, kBF16);
  if (s)
    s = vb.set(host.data(), size_t(B * Hkv * Dv) * 2, {B, Hkv, 1, Dv}, kBF16);
  if (!s) {
    std::printf("%s\n", s.message().c_str());
    return 1;
  }
  std::vector<int64_t> reversed(seqs.rbegin(), seqs.rend());
  // Tables kept or uploaded whole; the step's tokens appended one sequence
  // at a time or as one batch (KvCache::append(seqs, ...)).
  for (auto [kept, batched] : {std::pair{true, false}, {false, false}, {true, true}}) {
    std::vector<double> ms, appendMs;
    size_t bytes = 0;
    for (int64_t step = 0; step < steps; ++step) {
      auto a0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < (batched ? 1 : seqs.size()); ++i)
        if (Status a =
                batched ? cache->append(seqs, &kb.t, &vb.t) : cache->append(seqs[i], &k1.t, &v1.t);
            !a) {
          std::printf("%s\n", a.message().c_str());
          return 1;
        }
      appendMs.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a0).count());
      const std::vector<int64_t> &order = kept || step % 2 ? seqs : reversed;
      auto t0 = std::chrono::steady_clock::now();
      if (Status d = store->decode(*cache, order, &q.t, &out.t); !d) {
        std::printf("%s\n", d.message().c_str());
        return 1;
      }
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      bytes = store->lastTableUploadBytes();
    }
    std::sort(ms.begin(), ms.end());
    std::sort(appendMs.begin(), appendMs.end());
    std::printf("%s B=%lld L=%lld, tables %s: decode %.3f ms a step (median of %lld), "
                "tables uploaded %.2f MB in the last step; the step's appends (budget "
                "policies: with their evictions), %s, %.3f ms\n",
                ki.name.c_str(), (long long)B, (long long)length,
                kept ? "kept on the device" : "uploaded whole", ms[ms.size() / 2], (long long)steps,
                double(bytes) / 1e6, batched ? "one batch" : "one sequence at a time",
                appendMs[appendMs.size() / 2]);
  }
  return 0;
}

/// --time-victims: the time of CudaKvStore::chooseVictims (one upload, the
/// generated victims kernel, one download) for an H2O kernel whose store
/// keeps the scores: B = 8 sequences of `slots` tokens, Hkv = 8, every head
/// asked at once for the victims its budget needs (the recent half of the
/// budget kept, the rest of the budget from the older slots), and one head
/// alone. Scores are zero (ties: positions decide), which costs the kernel
/// what any scores cost. A benchmark: it checks only that each call gives
/// as many victims as asked.
int timeVictims(const std::string &ptxPath, int64_t slots) {
  std::shared_ptr<CudaKernel> kernel = loadKernel(ptxPath);
  if (!kernel)
    return 1;
  const CudaKernelInfo &ki = kernel->info();
  const int64_t B = 8, Hkv = 8, Hq = 32, D = ki.headDim, Dv = ki.headDimV, reps = 20;
  auto [store, cache] = storeBackedCache(kernel, Hkv, B * Hkv * (slots / 16 + 2));
  if (!cache)
    return 1;
  if (!store->keepsScores()) {
    std::printf("%s: its store keeps no scores (an H2O kernel is needed)\n", ptxPath.c_str());
    return 1;
  }
  std::vector<uint16_t> host;
  Device kc, vc, q, out;
  Status s = stepTensors(B, Hq, Hkv, slots, D, Dv, host, kc, vc, q, out);
  std::vector<KvStore::VictimRequest> requests;
  const int64_t budget = ki.cache->storagePolicy().budget, recent = budget / 2;
  for (int64_t b = 0; b < B && s; ++b) {
    int64_t seq = *cache->addSequence();
    s = cache->append(seq, &kc.t, &vc.t);
    for (int64_t h = 0; h < Hkv && s; ++h) {
      auto v = cache->view(seq, h);
      if (!v) {
        s = v.error();
        break;
      }
      KvStore::VictimRequest r;
      r.pages = *v->pages;
      r.slots = v->slots;
      r.recentFrom = v->length - recent;
      const int64_t older = std::max<int64_t>(0, r.recentFrom);
      r.keep = std::min(older, std::max<int64_t>(0, budget - (v->slots - older)));
      r.drop = older - r.keep;
      requests.push_back(r);
    }
  }
  if (!s || requests.front().drop <= 0) {
    std::printf("%s\n", s ? "no victims to choose at this length" : s.message().c_str());
    return 1;
  }
  for (size_t heads : {requests.size(), size_t(1)}) {
    std::vector<KvStore::VictimRequest> asked(requests.begin(), requests.begin() + heads);
    std::vector<double> ms;
    std::vector<std::vector<int32_t>> victims;
    for (int64_t rep = 0; rep < reps; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      if (Status c = store->chooseVictims(asked, victims); !c) {
        std::printf("%s\n", c.message().c_str());
        return 1;
      }
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%s victims: %zu head(s) of %lld slots, keep %lld and drop %lld older slots "
                "each: %.3f ms a call (median of %lld)\n",
                ki.name.c_str(), heads, (long long)slots, (long long)asked.front().keep,
                (long long)asked.front().drop, ms[ms.size() / 2], (long long)reps);
  }
  return 0;
}

/// --time-pages: what the page allocator's runs (KvCacheOptions::pageRun)
/// are worth. B = 8 sequences grow together a page (16 tokens) at a time,
/// as decode steps of a batch do, to `length` tokens, in a cache of
/// pageRun 16 (each head's pages in runs of 16) and one of pageRun 1 (the
/// heads' pages interleaved); and the same while other sequences come and
/// go beside them (churn: each step may remove one and add one of 256 or
/// 1024 tokens, the same operations for both allocators), which scatters
/// a plain free list's pages. Then CudaKvStore::decode of the B sequences,
/// timed 50 times in each cache, the caches in turn. A benchmark.
int timePageRuns(const std::string &ptxPath, int64_t length) {
  std::shared_ptr<CudaKernel> kernel = loadKernel(ptxPath);
  if (!kernel)
    return 1;
  const CudaKernelInfo &ki = kernel->info();
  const int64_t B = 8, Hkv = 8, Hq = 32, D = ki.headDim, Dv = ki.headDimV, page = 16;
  std::vector<uint16_t> host;
  Device kc, vc, q, out;
  Status s = stepTensors(B, Hq, Hkv, page, D, Dv, host, kc, vc, q, out);
  // Churn: sequences of these lengths (dense [Hkv, n, D] K/V each).
  const int64_t churnLengths[2] = {256, 1024};
  Device churnK[2], churnV[2];
  for (int i = 0; i < 2 && s; ++i) {
    const int64_t n = churnLengths[i];
    s = churnK[i].set(nullptr, size_t(Hkv * n * D) * 2, {Hkv, n, D}, kBF16);
    if (s)
      s = churnV[i].set(nullptr, size_t(Hkv * n * Dv) * 2, {Hkv, n, Dv}, kBF16);
    for (Device *d : {&churnK[i], &churnV[i]}) // zeros: their values do not matter
      if (s)
        s = d->buffer.fill32(0);
  }
  struct Setup {
    int64_t run;
    bool churn;
    std::shared_ptr<CudaKvStore> store;
    std::unique_ptr<KvCache> cache;
    std::vector<int64_t> seqs;
    std::vector<double> ms;
  };
  std::vector<Setup> setups(4);
  for (int i = 0; i < 4; ++i)
    setups[size_t(i)].run = i % 2 ? 1 : 16, setups[size_t(i)].churn = i >= 2;
  const int64_t longPages = B * Hkv * (length / page + 2);
  for (Setup &u : setups) {
    KvCacheOptions o;
    o.policy = *ki.cache;
    o.numKvHeads = Hkv, o.headDim = D, o.headDimV = Dv, o.inputDtype = "bf16";
    o.numPages = u.churn ? longPages * 3 / 2 : longPages;
    o.pageRun = u.run;
    auto store = CudaKvStore::create(kernel, o.numPages, 0);
    if (!store) {
      std::printf("%s\n", store.message().c_str());
      return 1;
    }
    u.store = *store;
    o.store = u.store;
    auto cache = KvCache::create(o);
    if (!cache) {
      std::printf("%s\n", cache.message().c_str());
      return 1;
    }
    u.cache = std::move(*cache);
    for (int64_t b = 0; b < B; ++b)
      u.seqs.push_back(*u.cache->addSequence());
    std::mt19937 churnRng(11);
    std::vector<int64_t> others;
    for (int64_t at = 0; at + page <= length && s; at += page) {
      for (int64_t seq : u.seqs)
        if (s)
          s = u.cache->append(seq, &kc.t, &vc.t);
      if (!u.churn || !s)
        continue;
      if (!others.empty() && churnRng() % 2) {
        size_t victim = churnRng() % others.size();
        s = u.cache->removeSequence(others[victim]);
        others.erase(others.begin() + long(victim));
      }
      const int which = int(churnRng() % 2);
      const int64_t need = Hkv * (churnLengths[which] / page);
      const int64_t longsLeft = B * Hkv * ((length - at) / page + 1);
      if (s && u.cache->freePages() - need > longsLeft) {
        others.push_back(*u.cache->addSequence());
        s = u.cache->append(others.back(), &churnK[which].t, &churnV[which].t);
      }
    }
  }
  if (!s) {
    std::printf("%s\n", s.message().c_str());
    return 1;
  }
  for (int i = 0; i < 200; ++i) {
    Setup &u = setups[size_t(i % 4)];
    auto t0 = std::chrono::steady_clock::now();
    if (Status d = u.store->decode(*u.cache, u.seqs, &q.t, &out.t); !d) {
      std::printf("%s\n", d.message().c_str());
      return 1;
    }
    u.ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  for (Setup &u : setups) {
    // How many of each head's pages follow the previous one.
    int64_t consecutive = 0, pairs = 0;
    for (int64_t seq : u.seqs)
      for (int64_t h = 0; h < Hkv; ++h) {
        const std::vector<int32_t> &pages = *u.cache->view(seq, h)->pages;
        for (size_t i = 1; i < pages.size(); ++i, ++pairs)
          consecutive += pages[i] == pages[i - 1] + 1;
      }
    std::sort(u.ms.begin() + 1, u.ms.end()); // the first call loads the module
    std::printf("%s B=%lld L=%lld%s, pageRun %lld (%.1f%% of pages after their head's last): "
                "decode %.4f ms a step (median of %zu)\n",
                ki.name.c_str(), (long long)B, (long long)length,
                u.churn ? " among other sequences" : "", (long long)u.run,
                100.0 * double(consecutive) / double(std::max<int64_t>(pairs, 1)),
                u.ms[u.ms.size() / 2 + 1], u.ms.size() - 1);
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s KERNEL.ptx... | --time-store|--time-pages|--time-victims KERNEL.ptx "
                 "[LENGTH]\n",
                 argv[0]);
    return 2;
  }
  std::string why;
  if (!cudaAvailable(&why)) {
    std::printf("no GPU: %s\n", why.c_str());
    return 77; // skipped
  }
  if (std::string(argv[1]) == "--time-store" && argc >= 3)
    return timeStore(argv[2], argc > 3 ? std::stoll(argv[3]) : 65536);
  if (std::string(argv[1]) == "--time-pages" && argc >= 3)
    return timePageRuns(argv[2], argc > 3 ? std::stoll(argv[3]) : 65536);
  if (std::string(argv[1]) == "--time-victims" && argc >= 3)
    return timeVictims(argv[2], argc > 3 ? std::stoll(argv[3]) : 257);
  int passed = 0, failed = 0;
  for (int i = 1; i < argc; ++i)
    (checkKernel(argv[i]) ? passed : failed)++;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
