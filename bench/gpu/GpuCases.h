//===- GpuCases.h - The GPU check's case bundle -----------------*- C++ -*-===//
//
// make-gpu-cases (here, with the compiler and the float64 reference) writes a
// bundle; attnc-gpu-check (on the GPU machine, light runtime only) runs it.
// Header-only and free of MLIR/LLVM so that both sides share it.
//
// A bundle is a directory:
//   cases.txt              the manifest (format below)
//   kernels/<id>.ptx       PTX of each compiled kernel
//   kernels/<id>.meta      its metadata (docs/cuda.md)
//   data/<case>.o          reference O of the checked rows, f16 little-endian
//   data/<case>.lse        reference LSE of the checked rows, f32 (-inf for
//                          fully masked rows)
//   data/<case>.<param>    tensor parameters, raw little-endian elements of
//                          their metadata type, dense row-major
//
// cases.txt: '#' comments, then lines
//   attnc-gpu-cases 1
//   kernel <id> <kernel name> <dtype> <D> <Dv>
//   case <name> kernel=<id> B=<n> Hq=<n> Hkv=<n> Nq=<n> Nk=<n> q_offset=<n>
//        seed=<n> tol=<x> rows=<all|a-b,c-d,...> o=<file> lse=<file>
//        [tensor:<param>=<file>:<type>:<d0>x<d1>...]... [scalar:<param>=<x>]...
// (one line per case). Q, K and V are not stored: both sides draw them from
// `seed` with randomInputs() below, which is exact integer arithmetic, so
// the GPU sees bit for bit what the reference saw. `rows` lists the query
// rows (half-open ranges, for every batch and head) whose O and LSE the
// files hold, in (b, h, row) order; every element of O and LSE is checked
// to be written, whether its row is listed or not.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_BENCH_GPU_GPUCASES_H
#define ATTNC_BENCH_GPU_GPUCASES_H

#include "attnc/Runtime/Half.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace attnc::gpucases {

inline constexpr const char *kHeader = "attnc-gpu-cases 1";

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

inline uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// Which input a stream of values is for.
enum class Input : uint64_t { Q = 1, K = 2, V = 3 };

/// `n` values for `input` of a case with `seed`, as bf16 or f16 bits: the
/// centred sum of four 12-bit uniforms over 2048 (mean 0, standard deviation
/// about 1.15, within [-4, 4]), rounded to the dtype.
inline std::vector<uint16_t> randomInputs(uint64_t seed, Input input, size_t n, bool bf16) {
  uint64_t state = seed * 0x100000001b3ull + uint64_t(input);
  std::vector<uint16_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t r = splitmix64(state);
    int64_t sum = int64_t(r & 0xfff) + int64_t((r >> 12) & 0xfff) + int64_t((r >> 24) & 0xfff) +
                  int64_t((r >> 36) & 0xfff) - 2 * 4095;
    float x = float(sum) / 2048.f; // exact: |sum| < 2^14
    out[i] = bf16 ? rt::floatToBf16(x) : rt::floatToF16(x);
  }
  return out;
}

/// The value of one element of randomInputs' output.
inline double inputValue(uint16_t bits, bool bf16) {
  return bf16 ? rt::bf16ToFloat(bits) : rt::f16ToFloat(bits);
}

//===----------------------------------------------------------------------===//
// Manifest
//===----------------------------------------------------------------------===//

struct KernelEntry {
  std::string id, name, dtype;
  int64_t D = 0, Dv = 0;
};

struct TensorFile {
  std::string param, file, type;
  std::vector<int64_t> shape;
};

struct Case {
  std::string name, kernel;
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, qOffset = 0;
  uint64_t seed = 0;
  double tol = 1e-2;
  std::vector<std::pair<int64_t, int64_t>> rows; // empty: all
  std::string oFile, lseFile;
  std::vector<TensorFile> tensors;
  std::map<std::string, double> scalars;

  /// The query rows checked against the reference, in file order.
  std::vector<int64_t> checkedRows() const {
    std::vector<int64_t> out;
    if (rows.empty())
      for (int64_t i = 0; i < Nq; ++i)
        out.push_back(i);
    for (auto [a, b] : rows)
      for (int64_t i = a; i < b; ++i)
        out.push_back(i);
    return out;
  }
};

struct Manifest {
  std::vector<KernelEntry> kernels;
  std::vector<Case> cases;
  const KernelEntry *kernel(const std::string &id) const {
    for (auto &k : kernels)
      if (k.id == id)
        return &k;
    return nullptr;
  }
};

inline std::string formatKernel(const KernelEntry &k) {
  return "kernel " + k.id + " " + k.name + " " + k.dtype + " " + std::to_string(k.D) + " " +
         std::to_string(k.Dv);
}

inline std::string formatDouble(double x) {
  std::ostringstream os;
  os.precision(17);
  os << x;
  return os.str();
}

inline std::string formatCase(const Case &c) {
  std::ostringstream os;
  os << "case " << c.name << " kernel=" << c.kernel << " B=" << c.B << " Hq=" << c.Hq
     << " Hkv=" << c.Hkv << " Nq=" << c.Nq << " Nk=" << c.Nk << " q_offset=" << c.qOffset
     << " seed=" << c.seed << " tol=" << formatDouble(c.tol) << " rows=";
  if (c.rows.empty())
    os << "all";
  for (size_t i = 0; i < c.rows.size(); ++i)
    os << (i ? "," : "") << c.rows[i].first << "-" << c.rows[i].second;
  os << " o=" << c.oFile << " lse=" << c.lseFile;
  for (auto &t : c.tensors) {
    os << " tensor:" << t.param << "=" << t.file << ":" << t.type << ":";
    for (size_t i = 0; i < t.shape.size(); ++i)
      os << (i ? "x" : "") << t.shape[i];
  }
  for (auto &[name, v] : c.scalars)
    os << " scalar:" << name << "=" << formatDouble(v);
  return os.str();
}

namespace detail {
inline bool toInt(const std::string &s, int64_t &out) {
  char *end = nullptr;
  out = std::strtoll(s.c_str(), &end, 10);
  return !s.empty() && !*end;
}
inline std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    out.push_back(cur);
  return out;
}
} // namespace detail

/// Parses cases.txt; on failure `err` names the line.
inline bool parseManifest(const std::string &text, Manifest &m, std::string &err) {
  std::istringstream in(text);
  std::string line;
  int lineNo = 0;
  bool header = false;
  auto fail = [&](const std::string &why) {
    err = "cases.txt:" + std::to_string(lineNo) + ": " + why;
    return false;
  };
  while (std::getline(in, line)) {
    ++lineNo;
    std::istringstream ls(line);
    std::string word;
    if (!(ls >> word) || word[0] == '#')
      continue;
    if (!header) {
      std::string version;
      ls >> version;
      if (word + " " + version != kHeader)
        return fail(std::string("expected '") + kHeader + "'");
      header = true;
      continue;
    }
    if (word == "kernel") {
      KernelEntry k;
      if (!(ls >> k.id >> k.name >> k.dtype >> k.D >> k.Dv) || k.D <= 0 || k.Dv <= 0)
        return fail("expected 'kernel <id> <name> <dtype> <D> <Dv>'");
      if (k.dtype != "bf16" && k.dtype != "f16")
        return fail("dtype " + k.dtype);
      m.kernels.push_back(k);
      continue;
    }
    if (word != "case")
      return fail("unknown line '" + word + "'");
    Case c;
    if (!(ls >> c.name))
      return fail("case without a name");
    std::map<std::string, int64_t *> ints = {{"B", &c.B},     {"Hq", &c.Hq},
                                             {"Hkv", &c.Hkv}, {"Nq", &c.Nq},
                                             {"Nk", &c.Nk},   {"q_offset", &c.qOffset}};
    for (std::string tok; ls >> tok;) {
      size_t eq = tok.find('=');
      if (eq == std::string::npos)
        return fail("expected key=value, got '" + tok + "'");
      std::string key = tok.substr(0, eq), value = tok.substr(eq + 1);
      int64_t n;
      if (ints.count(key)) {
        if (!detail::toInt(value, n) || n < 0)
          return fail(key + "=" + value);
        *ints[key] = n;
      } else if (key == "kernel") {
        c.kernel = value;
      } else if (key == "seed") {
        c.seed = std::strtoull(value.c_str(), nullptr, 10);
      } else if (key == "tol") {
        c.tol = std::strtod(value.c_str(), nullptr);
      } else if (key == "o") {
        c.oFile = value;
      } else if (key == "lse") {
        c.lseFile = value;
      } else if (key == "rows") {
        if (value == "all")
          continue;
        for (const std::string &range : detail::split(value, ',')) {
          auto ab = detail::split(range, '-');
          int64_t a, b;
          if (ab.size() != 2 || !detail::toInt(ab[0], a) || !detail::toInt(ab[1], b) || a < 0 ||
              b < a)
            return fail("rows range '" + range + "'");
          c.rows.push_back({a, b});
        }
      } else if (key.rfind("tensor:", 0) == 0) {
        auto parts = detail::split(value, ':');
        TensorFile t;
        t.param = key.substr(7);
        if (parts.size() != 3)
          return fail("expected tensor:<param>=<file>:<type>:<shape>");
        t.file = parts[0];
        t.type = parts[1];
        for (const std::string &d : detail::split(parts[2], 'x')) {
          if (!detail::toInt(d, n) || n < 0)
            return fail("tensor shape '" + parts[2] + "'");
          t.shape.push_back(n);
        }
        c.tensors.push_back(t);
      } else if (key.rfind("scalar:", 0) == 0) {
        c.scalars[key.substr(7)] = std::strtod(value.c_str(), nullptr);
      } else {
        return fail("unknown key '" + key + "'");
      }
    }
    if (c.kernel.empty() || !m.kernel(c.kernel))
      return fail("case " + c.name + ": unknown kernel '" + c.kernel + "'");
    for (auto [a, b] : c.rows)
      if (b > c.Nq)
        return fail("case " + c.name + ": rows beyond Nq");
    if (c.oFile.empty() || c.lseFile.empty())
      return fail("case " + c.name + ": o= and lse= are required");
    m.cases.push_back(std::move(c));
  }
  if (!header)
    return fail(std::string("no '") + kHeader + "' header");
  return true;
}

//===----------------------------------------------------------------------===//
// Files
//===----------------------------------------------------------------------===//

inline bool readFile(const std::string &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

inline bool writeFile(const std::string &path, const void *data, size_t n) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char *>(data), std::streamsize(n));
  return bool(out);
}

} // namespace attnc::gpucases

#endif // ATTNC_BENCH_GPU_GPUCASES_H
