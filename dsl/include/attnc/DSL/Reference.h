//===- Reference.h - The float64 reference interpreter ----------*- C++ -*-===//
//
// The oracle every backend is checked against. It evaluates a checked
// KernelDecl directly from the typed AST, in float64, one (query, key) pair at
// a time, exactly as DESIGN.md "Semantics" states:
//
//   s   = scale * dot(Q[b, h, i], K[b, kvh(h), j])
//   s'  = score(s, b, h, q_offset + i, j)     (the kernel's `score =`)
//   m   = mask(b, h, q_offset + i, j)         (the kernel's `mask =`)
//   softmax: O = sum_j softmax(s')_j * V[j],  LSE = log sum_j exp(s'_j)
//   sigmoid: O = sum_j sigmoid(s'_j) * V[j],  LSE = log sum_j exp(s'_j)
//
// with both sums over the keys where m holds. A row with no such key (or only
// keys whose s' is -inf) gives O = 0 and LSE = -inf. For the sigmoid
// normalizer LSE carries no normalization meaning; it is defined as above so
// that backends producing it have something to be checked against.
//
// DSL `f32` values are computed in double; integer values wrap at their width
// (i32 at 32 bits); integer `/` and `%` round toward negative infinity. It is
// slow by design and never aborts: bad bindings, out-of-bounds tensor reads
// and integer division by zero come back as llvm::Error.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DSL_REFERENCE_H
#define ATTNC_DSL_REFERENCE_H

#include "attnc/DSL/AST.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace attnc::reference {

/// Problem sizes. Q is [B, Hq, Nq, D], K [B, Hkv, Nk, D], V [B, Hkv, Nk, Dv],
/// O [B, Hq, Nq, Dv], LSE [B, Hq, Nq]; all dense row-major.
struct Shape {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 1, Dv = 1;
};

/// A runtime tensor argument: dense row-major values. Integer and bool
/// tensors hold integral values (bool: 0 or 1).
struct ParamTensor {
  std::vector<int64_t> dims;
  std::vector<double> data;
};

/// Values of a kernel's parameters, by the names in KernelDecl::runtimeParams
/// and KernelDecl::constParams. Scalars not given take their declared default.
struct Bindings {
  int64_t qOffset = 0;
  std::map<std::string, ParamTensor> tensors;
  std::map<std::string, double> scalars;
};

struct Output {
  std::vector<double> O;   // [B, Hq, Nq, Dv]
  std::vector<double> LSE; // [B, Hq, Nq], natural log
};

/// Runs kernel `k` on the given inputs. Q, K and V may be null only when the
/// corresponding tensor is empty.
llvm::Expected<Output> evaluate(const dsl::KernelDecl &k, const Shape &s, const double *Q,
                                const double *K, const double *V, const Bindings &b);

/// The shape every runtime tensor parameter of `k` must have, evaluated with
/// the dimension symbols of `s` (N = max(qOffset + Nq, Nk)) and the const
/// parameter values of `b` (or their defaults). Tensors in `b` are not read.
llvm::Expected<std::map<std::string, std::vector<int64_t>>>
tensorShapes(const dsl::KernelDecl &k, const Shape &s, const Bindings &b);

/// Builds bindings from command-line style `name=value` / `name=v1,v2,...`
/// strings. Scalars are parsed by their declared type (bool: true/false/1/0).
/// A tensor takes exactly as many values as its shape has elements, or a
/// single value that fills it. Tensors not given get deterministic defaults:
/// integer tensors hold sorted segment ids (4 equal documents along the first
/// dimension, the same for every other index), bool tensors hold true, f32
/// tensors hold uniform values in [-1, 1) drawn from `seed` and the name.
/// Unknown names, repeated names and malformed values are errors.
llvm::Expected<Bindings> parseBindings(const dsl::KernelDecl &k, const Shape &s,
                                       llvm::ArrayRef<std::string> params, uint64_t seed,
                                       int64_t qOffset = 0);

/// ||out - ref||_2 / ||ref||_2, or the absolute ||out - ref||_2 when ref is
/// all zeros. Pairs of equal infinities (LSE of fully masked rows) count as
/// exact. Returns +inf when the sizes differ or only one side of a pair is
/// infinite, and NaN when either side holds a NaN.
double relativeError(const std::vector<double> &out, const std::vector<double> &ref);

} // namespace attnc::reference

#endif // ATTNC_DSL_REFERENCE_H
