//===- Metadata.cpp - Kernel metadata of CPU and CUDA artifacts -----------===//
//
// One line-based format for both targets (docs/cpu-runtime.md, docs/cuda.md):
// a header line `attnc-<target>-kernel 1`, then `key value...` lines. Every
// known key must be well formed (a bad line is an error naming it); unknown
// keys are skipped so that newer producers can add lines.
//
//===----------------------------------------------------------------------===//

#include "Validate.h"
#include "attnc/Runtime/Cuda.h"

#include <cerrno>
#include <cstdlib>
#include <set>
#include <sstream>

using namespace attnc::rt;

namespace {
bool parseInt(const std::string &tok, int64_t &out) {
  if (tok.empty())
    return false;
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(tok.c_str(), &end, 10);
  if (errno || *end)
    return false;
  out = v;
  return true;
}

bool parseDouble(const std::string &tok, double &out) {
  if (tok.empty())
    return false;
  char *end = nullptr;
  out = std::strtod(tok.c_str(), &end);
  return !*end;
}

bool isDimSymbol(const std::string &s) {
  static const std::set<std::string> symbols = {"B", "Hq", "Hkv", "Nq", "Nk", "N", "D", "Dv", "?"};
  int64_t n;
  return symbols.count(s) || (parseInt(s, n) && n >= 0);
}

/// Parses `text` with header `magic` into `info`; `seen` receives the keys.
Status parseMetadata(const std::string &text, const std::string &magic, CudaKernelInfo &info,
                     std::set<std::string> &seen) {
  std::istringstream in(text);
  std::string line;
  bool sawHeader = false;
  auto bad = [&](const std::string &why) {
    return Status::error("malformed kernel metadata (" + why + "): '" + line + "'");
  };
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    if (!(ls >> key))
      continue;
    if (!sawHeader) {
      int64_t version = 0;
      std::string tok;
      if (key != magic)
        return bad("expected a '" + magic + " 1' header");
      if (!(ls >> tok) || !parseInt(tok, version) || version != 1)
        return bad("unsupported version");
      sawHeader = true;
      continue;
    }
    std::vector<std::string> values;
    for (std::string tok; ls >> tok;)
      values.push_back(tok);
    if (key == "kv_cache" || key == "kv_head_policy") {
      // kv_cache NAME contiguous|paged P all|sink_window|budget SINK WINDOW STORAGE
      //          none|per_token|per_group GROUP [BUDGET none|h2o|snapkv [f32|f16|-]]
      //          (the last: the scales' type; f32 when absent)
      // kv_head_policy INDEX NAME ...: a policy of the per_head kv_cache above.
      size_t index = 0;
      if (key == "kv_head_policy") {
        int64_t i = 0;
        if (values.empty() || !parseInt(values[0], i) || !info.cache ||
            info.cache->layout != "per_head" || i != int64_t(info.cache->headPolicies.size()))
          return bad("kv_head_policy: expected the next index of a per_head kv_cache");
        values.erase(values.begin());
        index = size_t(i) + 1;
      }
      if (values.size() != 9 && values.size() != 11 && values.size() != 12)
        return bad("kv_cache: expected 9, 11 or 12 values");
      CachePolicyInfo c;
      c.name = values[0];
      c.layout = values[1];
      c.retention = values[3];
      c.storage = values[6];
      c.scale = values[7];
      if (c.scale != "none" && c.scale != "per_token" && c.scale != "per_group")
        return bad("kv_cache: scale");
      if (!parseInt(values[8], c.groupSize) || c.groupSize < 0)
        return bad("kv_cache: group size");
      if (values.size() >= 11) {
        c.evict = values[10];
        if (!parseInt(values[9], c.budget) || c.budget < 0 ||
            (c.evict != "none" && c.evict != "h2o" && c.evict != "snapkv"))
          return bad("kv_cache: budget");
      }
      if (values.size() == 12 && values[11] != "-") {
        c.scaleType = values[11];
        if (c.scaleType != "f32" && c.scaleType != "f16")
          return bad("kv_cache: scale type");
        if (c.scaleType == "f16" && c.scale != "per_group")
          return bad("kv_cache: f16 scales need per_group scales");
      }
      if ((c.retention == "budget") != (c.evict != "none") ||
          (c.retention == "budget" && c.budget < 1))
        return bad("kv_cache: budget retention needs a budget and a score (h2o, snapkv)");
      bool perHead = !index && c.layout == "per_head";
      if (c.layout != "paged" && c.layout != "contiguous" && !perHead)
        return bad("kv_cache: layout");
      if (c.retention != "all" && c.retention != "sink_window" && c.retention != "budget" &&
          !(perHead && c.retention == "per_head"))
        return bad("kv_cache: retention");
      if (!parseInt(values[2], c.pageSize) || !parseInt(values[4], c.sink) ||
          !parseInt(values[5], c.window) || c.pageSize < 0 || c.sink < 0 || c.window < 0 ||
          (c.layout == "paged" && c.pageSize < 1))
        return bad("kv_cache: sizes");
      if (index) {
        info.cache->headPolicies.push_back(c);
        continue;
      }
      if (info.cache)
        return bad("kv_cache given twice");
      info.cache = c;
      continue;
    }
    if (key == "decode_tile") {
      DecodeTile t;
      if ((values.size() != 2 && values.size() != 3) || !parseInt(values[0], t.tileQ) ||
          !parseInt(values[1], t.tileK) ||
          (values.size() == 3 && !parseInt(values[2], t.maxItems)) || t.tileQ < 1 || t.tileK < 1 ||
          t.maxItems < 1)
        return bad("decode_tile: expected TILE_Q TILE_K [ITEMS]");
      if (!info.decodeTiles.empty() && t.tileQ <= info.decodeTiles.back().tileQ)
        return bad("decode_tile: twins must come in ascending TILE_Q");
      info.decodeTiles.push_back(t);
      continue;
    }
    if (key == "decode_wide") {
      DecodeTwin twin;
      if (values.size() != 3 || !parseInt(values[0], twin.blockQ) ||
          !parseInt(values[1], twin.threads) || !parseInt(values[2], twin.sharedBytes) ||
          twin.blockQ < 1 || twin.threads < 1 || twin.threads > 1024 || twin.sharedBytes < 0)
        return bad("decode_wide: expected BLOCK_Q THREADS SHARED_BYTES");
      if (!info.decodeTwins.empty() && twin.blockQ <= info.decodeTwins.back().blockQ)
        return bad("decode_wide: twins must come in ascending BLOCK_Q");
      info.decodeTwins.push_back(twin);
      continue;
    }
    if (key == "cache_prefill") {
      EntryShape &e = info.cachePrefill;
      if (values.size() != 3 || !parseInt(values[0], e.blockQ) || !parseInt(values[1], e.threads) ||
          !parseInt(values[2], e.sharedBytes) || e.blockQ < 1 || e.threads < 1 ||
          e.threads > 1024 || e.sharedBytes < 0)
        return bad("cache_prefill: expected BLOCK_Q THREADS SHARED_BYTES");
      continue;
    }
    if (key == "decode_tma") {
      int64_t rows = 0;
      if (values.size() != 1 || !parseInt(values[0], rows) || rows < 1 || rows > 256)
        return bad("decode_tma: expected the box rows (1 to 256)");
      info.tmaBoxRows = rows;
      continue;
    }
    if (key == "merge_pdl") {
      int64_t on = 0;
      if (values.size() != 1 || !parseInt(values[0], on) || (on != 0 && on != 1))
        return bad("merge_pdl: expected 0 or 1");
      info.mergeWaits = on == 1;
      continue;
    }
    if (key == "param") {
      ParamInfo p;
      if (values.size() < 3)
        return bad("param: expected 'param NAME tensor|scalar TYPE ...'");
      p.name = values[0];
      p.type = values[2];
      if (values[1] == "tensor") {
        p.isTensor = true;
        int64_t rank = 0;
        if (!detail::typeBytes(p.type))
          return bad("unknown element type '" + p.type + "'");
        if (values.size() < 4 || !parseInt(values[3], rank) || rank <= 0 || rank > 8)
          return bad("tensor rank");
        if (int64_t(values.size()) != 4 + rank)
          return bad("tensor dims: expected " + std::to_string(rank));
        p.dims.assign(values.begin() + 4, values.end());
        for (auto &d : p.dims)
          if (!isDimSymbol(d))
            return bad("tensor dim '" + d + "'");
      } else if (values[1] == "scalar") {
        if (!detail::typeBytes(p.type) || p.type == "f16" || p.type == "bf16")
          return bad("unknown scalar type '" + p.type + "'");
        if (values.size() != 4)
          return bad("scalar default: expected a value or 'none'");
        double def;
        if (values[3] != "none") {
          if (!parseDouble(values[3], def))
            return bad("scalar default '" + values[3] + "'");
          p.defaultValue = def;
        }
      } else {
        return bad("param kind");
      }
      for (auto &q : info.params)
        if (q.name == p.name)
          return bad("parameter '" + p.name + "' declared twice");
      info.params.push_back(std::move(p));
      continue;
    }
    static const std::set<std::string> known = {"kernel",  "dtype",   "head_dim", "head_dim_v",
                                                "tile_q",  "tile_k",  "entry",    "arch",
                                                "block_q", "threads", "align",    "shared_bytes"};
    if (!known.count(key))
      continue; // a newer producer's line
    if (!seen.insert(key).second)
      return bad("'" + key + "' given twice");
    if (values.size() != 1)
      return bad(key + ": expected one value");
    const std::string &v = values[0];
    if (key == "kernel") {
      info.name = v;
    } else if (key == "entry") {
      info.entry = v;
    } else if (key == "dtype") {
      if (v != "f32" && v != "bf16" && v != "f16")
        return bad("dtype: expected f32, bf16 or f16");
      info.dtype = v;
    } else if (key == "arch") {
      if (v.rfind("sm_", 0) != 0 || v.size() < 5)
        return bad("arch: expected sm_<version>");
      info.arch = v;
    } else {
      int64_t n = 0;
      if (!parseInt(v, n))
        return bad(key + ": expected an integer");
      int64_t lo = key == "shared_bytes" ? 0 : 1;
      int64_t hi = key == "threads" ? 1024 : int64_t(1) << 30;
      if (n < lo || n > hi)
        return bad(key + ": out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      if (key == "align" && (n & (n - 1)))
        return bad("align: expected a power of two");
      int64_t *field = key == "head_dim"       ? &info.headDim
                       : key == "head_dim_v"   ? &info.headDimV
                       : key == "tile_q"       ? &info.tileQ
                       : key == "tile_k"       ? &info.tileK
                       : key == "block_q"      ? &info.blockQ
                       : key == "threads"      ? &info.threads
                       : key == "shared_bytes" ? &info.sharedBytes
                                               : &info.align;
      *field = n;
    }
  }
  if (!sawHeader)
    return Status::error("malformed kernel metadata: no '" + magic + " 1' header");
  return Status::ok();
}

Status requireKeys(const std::set<std::string> &seen, std::initializer_list<const char *> keys) {
  for (const char *k : keys)
    if (!seen.count(k))
      return Status::error(std::string("malformed kernel metadata: missing '") + k + "'");
  return Status::ok();
}
} // namespace

Expected<KernelInfo> attnc::rt::parseKernelInfo(const std::string &text) {
  CudaKernelInfo info;
  std::set<std::string> seen;
  if (Status s = parseMetadata(text, "attnc-cpu-kernel", info, seen); !s)
    return s;
  if (Status s = requireKeys(seen, {"kernel", "head_dim", "head_dim_v", "tile_q"}); !s)
    return s;
  return KernelInfo(std::move(info));
}

Expected<CudaKernelInfo> attnc::rt::parseCudaKernelInfo(const std::string &text) {
  CudaKernelInfo info;
  info.dtype.clear();
  std::set<std::string> seen;
  if (Status s = parseMetadata(text, "attnc-cuda-kernel", info, seen); !s)
    return s;
  if (Status s = requireKeys(seen, {"kernel", "entry", "arch", "dtype", "head_dim", "head_dim_v",
                                    "block_q", "threads", "shared_bytes"});
      !s)
    return s;
  if (info.dtype != "bf16" && info.dtype != "f16")
    return Status::error("malformed kernel metadata: dtype " + info.dtype +
                         " (CUDA kernels take bf16 or f16)");
  if (!info.decodeTwins.empty() && info.decodeTwins.front().blockQ <= info.blockQ)
    return Status::error("malformed kernel metadata: decode_wide " +
                         std::to_string(info.decodeTwins.front().blockQ) +
                         " takes no more rows than block_q " + std::to_string(info.blockQ));
  return info;
}
