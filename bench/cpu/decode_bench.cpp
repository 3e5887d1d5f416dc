//===- decode_bench.cpp - decode over KV caches on the CPU -----------------===//
//
//   attnc-decode-bench [--lengths=8192,65536] [--batch=1] [--threads=N] [--steps=20]
//                      [--tile-q=T] [--tile-k=T] [--nq=N] [--hkv=8] [--splits=N]
//                      [--grow=N] [--page-run=N] [--caches=decode_bf16,...]
//
// One decode step (Nq = 1; --nq: a speculative step of Nq) of B sequences of L cached tokens,
// Hq/Hkv = 32/8 (--hkv: 32/N), D = 128, split-KV as the runtime picks it (--splits: given), through
// a paged KvCache (16-token pages, retention all) with bf16, int8 (per-token scales), int4 (groups
// of 32) and fp8 e4m3 (per-token scales) storage, bf16 with H2O scoring (a budget it does not
// reach: the attention-mass pass is the difference), and a sink(4) + window(1020) cache. Prints ms
// per step and the bandwidth of the K/V bytes the step reads (slots x Hkv x (D + Dv) x element
// bytes, plus scales). --grow=N fills the sequences together, N tokens a turn (a batch's decode
// steps), --page-run the pool's runs of pages per head (KvCacheOptions::pageRun).
//
//===----------------------------------------------------------------------===//

#include "LaunchBindings.h"

#include "attnc/JIT.h"
#include "attnc/Runtime/Half.h"
#include "attnc/Runtime/KvCache.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace attnc;

namespace {
const int64_t D = 128, Hq = 32;

const char *kSource = R"(
import "causal.attn";
cache bf16_kv { layout = paged(16); retention = all; storage = bf16; }
cache int8_kv { layout = paged(16); retention = all; storage = int8(per_token); }
cache int4_kv { layout = paged(16); retention = all; storage = int4(per_group(32)); }
cache stream_kv { layout = paged(16); retention = sink(4) + window(1020); storage = bf16; }
cache fp8_kv { layout = paged(16); retention = all; storage = fp8(per_token); }
// A budget no benchmark length reaches: the H2O kernel's extra work (the
// attention-mass pass) at the same slots as decode_bf16.
cache h2o_kv { layout = paged(16); retention = budget(1000000000, h2o); storage = bf16; }
kernel decode_bf16 { mask = causal; cache = bf16_kv; }
kernel decode_fp8 { mask = causal; cache = fp8_kv; }
kernel decode_h2o { mask = causal; cache = h2o_kv; }
kernel decode_int8 { mask = causal; cache = int8_kv; }
kernel decode_int4 { mask = causal; cache = int4_kv; }
kernel decode_stream { mask = causal; cache = stream_kv; }
// DuoAttention: half the KV heads keep everything, half a sink + window.
cache duo_kv = per_head(bf16_kv, stream_kv) by head_kind;
kernel decode_duo { mask = causal; cache = duo_kv; }
)";

std::vector<int64_t> parseList(const std::string &s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    out.push_back(std::stoll(x));
  return out;
}
} // namespace

int main(int argc, char **argv) {
  std::vector<int64_t> lengths = {8192, 65536};
  int64_t B = 1, steps = 20, tileQ = 0, tileK = 0, Nq = 1, Hkv = 8, splits = 0;
  int64_t grow = 0, pageRun = rt::KvCacheOptions().pageRun;
  std::string only;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--lengths=", 0) == 0)
      lengths = parseList(a.substr(10));
    else if (a.rfind("--batch=", 0) == 0)
      B = std::stoll(a.substr(8));
    else if (a.rfind("--threads=", 0) == 0)
      threads = std::stoi(a.substr(10));
    else if (a.rfind("--steps=", 0) == 0)
      steps = std::stoll(a.substr(8));
    else if (a.rfind("--tile-q=", 0) == 0)
      tileQ = std::stoll(a.substr(9));
    else if (a.rfind("--tile-k=", 0) == 0)
      tileK = std::stoll(a.substr(9));
    else if (a.rfind("--nq=", 0) == 0) // speculative steps: Nq new tokens each
      Nq = std::stoll(a.substr(5));
    else if (a.rfind("--hkv=", 0) == 0 && 32 % std::stoll(a.substr(6)) == 0)
      Hkv = std::stoll(a.substr(6));
    else if (a.rfind("--splits=", 0) == 0) // CacheLaunchArgs::splits (0: automatic)
      splits = std::stoll(a.substr(9));
    else if (a.rfind("--grow=", 0) == 0 && std::stoll(a.substr(7)) > 0 &&
             std::stoll(a.substr(7)) <= 1024) // the sequences grow together, N tokens a turn
      grow = std::stoll(a.substr(7));
    else if (a.rfind("--page-run=", 0) == 0) // KvCacheOptions::pageRun
      pageRun = std::stoll(a.substr(11));
    else if (a.rfind("--caches=", 0) == 0) // e.g. decode_bf16,decode_int4
      only = "," + a.substr(9) + ",";
    else {
      std::fprintf(stderr, "usage: attnc-decode-bench [--lengths=L,...] [--batch=B] "
                           "[--threads=N] [--steps=S] [--tile-q=T] [--tile-k=T] [--nq=N] "
                           "[--hkv=N (divides 32)] [--splits=N] [--grow=N (<= 1024)] "
                           "[--page-run=N] [--caches=NAME,...]\n");
      return 2;
    }
  }
  auto compiler = Compiler::create();
  if (auto s = compiler->loadString(kSource, "decode.attn"); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  // tables ms: KvCache::tables alone, the host part of every cache launch
  // (CPU and CudaKvStore::decode, which then uploads them).
  // append ms: the prompt's appends (KvCache::append, quantizing for
  // int8 / int4 / fp8), all sequences; step app.: a step's append of Nq
  // tokens to each sequence, one batch append (KvCache::append(seqs, ...):
  // host work every decode step pays).
  std::printf("%-14s %3s %8s | %9s %9s | %8s | %9s | %9s | %9s\n", "cache", "B", "L", "ms/step",
              "KV MB", "GB/s", "tables ms", "append ms", "step app.");
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const int64_t chunk = 1024;
  std::vector<uint16_t> kc(Hkv * chunk * D), vc(Hkv * chunk * D);
  for (auto *v : {&kc, &vc})
    for (auto &x : *v)
      x = rt::floatToBf16(normal(rng));
  std::vector<int64_t> chunkShape = {Hkv, chunk, D}, stepShape = {B, Hkv, Nq, D};
  for (const char *name : {"decode_bf16", "decode_h2o", "decode_int8", "decode_int4", "decode_fp8",
                           "decode_stream", "decode_duo"}) {
    if (!only.empty() && only.find("," + std::string(name) + ",") == std::string::npos)
      continue;
    KernelSpec spec;
    spec.dtype = "bf16";
    spec.headDim = D;
    spec.kvCache = true;
    spec.tileQ = tileQ; // packed rows per item (0: the CPU default, 32)
    spec.tileK = tileK; // keys per KV tile (0: the CPU default, 8)
    auto k = compiler->getKernel(name, spec);
    if (!k) {
      std::fprintf(stderr, "%s\n", k.message().c_str());
      return 1;
    }
    for (int64_t L : lengths) {
      rt::KvCacheOptions o;
      o.policy = *(*k)->info().cache;
      o.numKvHeads = Hkv;
      o.headDim = D;
      o.inputDtype = "bf16";
      o.numPages = B * Hkv * ((L + steps * Nq) / 16 + 2);
      o.pageRun = pageRun;
      if (!o.policy.headPolicies.empty()) // per_head: even heads full, odd heads streaming
        for (int64_t h = 0; h < Hkv; ++h)
          o.headKinds.push_back(int32_t(h % 2));
      auto cache = rt::KvCache::create(o);
      if (!cache) {
        std::fprintf(stderr, "%s\n", cache.message().c_str());
        return 1;
      }
      rt::KvCache &c = **cache;
      std::vector<int64_t> seqs;
      auto fill0 = std::chrono::steady_clock::now();
      // One sequence after another in chunks of 1024 tokens, or (--grow=N)
      // all together, N tokens a turn, as decode steps of a batch grow
      // them (their heads' pages interleave unless the pool keeps runs).
      const int64_t piece = grow ? grow : chunk;
      std::vector<int64_t> pieceShape = {Hkv, piece, D};
      DLTensor kt = driver::dlView(kc.data(), {kDLBfloat, 16, 1}, pieceShape),
               vt = driver::dlView(vc.data(), {kDLBfloat, 16, 1}, pieceShape);
      for (int64_t b = 0; b < B; ++b)
        seqs.push_back(*c.addSequence());
      // Sequences that take their pieces in turn, to L tokens each.
      auto fill = [&](const std::vector<int64_t> &together) {
        for (int64_t at = 0; at + piece <= L; at += piece)
          for (int64_t s : together)
            if (auto st = c.append(s, &kt, &vt); !st) {
              std::fprintf(stderr, "%s\n", st.message().c_str());
              return false;
            }
        return true;
      };
      bool filled = grow ? fill(seqs) : true;
      for (size_t b = 0; !grow && filled && b < seqs.size(); ++b)
        filled = fill({seqs[b]});
      if (!filled)
        return 1;
      const double fillMs =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - fill0)
              .count();
      std::vector<uint16_t> q(B * Hq * Nq * D), kn(B * Hkv * Nq * D), vn(B * Hkv * Nq * D);
      for (auto *v : {&q, &kn, &vn})
        for (auto &x : *v)
          x = rt::floatToBf16(normal(rng));
      std::vector<float> out(B * Hq * Nq * D);
      std::vector<int64_t> qShape = {B, Hq, Nq, D};
      DLTensor qt = driver::dlView(q.data(), {kDLBfloat, 16, 1}, qShape),
               ot = driver::dlView(out.data(), {kDLFloat, 32, 1}, qShape);
      std::vector<double> times, tableTimes, appendTimes;
      rt::KvCache::Tables tables;
      int64_t slots = 0;
      for (int64_t step = 0; step < steps; ++step) {
        DLTensor kt = driver::dlView(kn.data(), {kDLBfloat, 16, 1}, stepShape),
                 vt = driver::dlView(vn.data(), {kDLBfloat, 16, 1}, stepShape);
        auto a0 = std::chrono::steady_clock::now();
        if (auto st = c.append(seqs, &kt, &vt); !st) {
          std::fprintf(stderr, "%s\n", st.message().c_str());
          return 1;
        }
        appendTimes.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a0)
                .count());
        rt::CacheLaunchArgs a;
        a.q = &qt, a.o = &ot, a.cache = &c, a.sequences = seqs, a.numThreads = threads;
        a.splits = splits;
        auto t0 = std::chrono::steady_clock::now();
        if (auto st = (*k)->launch(a); !st) {
          std::fprintf(stderr, "%s\n", st.message().c_str());
          return 1;
        }
        auto t1 = std::chrono::steady_clock::now();
        // Into a table kept across steps, as a launch does.
        rt::Status tablesMade = c.tables(seqs, Nq, tables);
        auto t2 = std::chrono::steady_clock::now();
        if (!tablesMade) {
          std::fprintf(stderr, "%s\n", tablesMade.message().c_str());
          return 1;
        }
        times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        tableTimes.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      }
      for (int64_t s : seqs)
        for (int64_t h = 0; h < Hkv; ++h)
          slots += int64_t(c.retainedPositions(s, h).size());
      std::sort(times.begin(), times.end());
      std::sort(tableTimes.begin(), tableTimes.end());
      std::sort(appendTimes.begin(), appendTimes.end());
      double ms = times[times.size() / 2];
      double mb = double(slots) * c.bytesPerTokenPerHead() / 1e6;
      std::printf("%-14s %3lld %8lld | %9.3f %9.1f | %8.2f | %9.3f | %9.1f | %9.3f\n", name + 7,
                  (long long)B, (long long)c.length(seqs[0]), ms, mb, mb / ms,
                  tableTimes[tableTimes.size() / 2], fillMs, appendTimes[appendTimes.size() / 2]);
      std::fflush(stdout);
    }
  }
  return 0;
}
