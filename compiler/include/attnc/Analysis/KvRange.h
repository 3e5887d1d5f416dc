//===- KvRange.h - Keys a mask may admit for a block of rows ----*- C++ -*-===//
//
// Shared by every backend: builds, at the current insertion point, IR that
// computes a sound superset [lo, hi) of the keys an attention mask may admit
// for query positions [qmin, qmax], so loops over KV tiles skip what the
// mask empties (causal, windows, sinks).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_KVRANGE_H
#define ATTNC_ANALYSIS_KVRANGE_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::attn {

struct KvRange {
  Value lo, hi; // i64, unclamped
  bool bounded; // false: the full range [0, Nk)
};

/// `maskBlock` is the mask region's block (arguments b, h, q, k) and
/// `maskValue` the value it yields. `outer` maps the kernel's values
/// (parameters, body constants) to their counterparts at the insertion
/// point; `qmin`, `qmax` and `nk` are i64.
///
/// The rule: the mask is an and/or tree whose leaves are `arith.cmpi` with a
/// signed predicate between two *terms*, a term being `q`, `k`, `q - k`,
/// `k - q` or a loop invariant (a kernel-body value or a constant of the
/// region), possibly sign-extended. Positions are non-negative i32, so these
/// terms never wrap and the comparison is exact over the integers; it
/// bounds k by q plus an invariant, i.e. by qmin/qmax over the rows. `and`
/// intersects ranges, `or` takes their hull; a constant `true` is the full
/// range and `false` the empty one. Any other leaf (reads of tensor data,
/// other arithmetic, b/h) gives the full range, so the rule never drops a
/// key the mask admits.
KvRange buildKvRange(OpBuilder &b, Location loc, Block &maskBlock, Value maskValue,
                     IRMapping &outer, Value qmin, Value qmax, Value nk);

/// The same rule, dually: a subset [lo, hi) of the keys the mask admits for
/// *every* row in [qmin, qmax] (bounds taken at their tightest row; a leaf
/// the rule does not understand, e.g. a read of tensor data, gives the empty
/// range; of an `or` one side is kept). Tiles inside it need no mask
/// evaluation. `bounded` is false for the full range [0, Nk).
KvRange buildKvInnerRange(OpBuilder &b, Location loc, Block &maskBlock, Value maskValue,
                          IRMapping &outer, Value qmin, Value qmax, Value nk);

} // namespace mlir::attn

#endif // ATTNC_ANALYSIS_KVRANGE_H
