//===- TileBounds.h - Run-time tile classes of data-dependent masks -*- C++ -*-===//
//
// Shared by every backend: builds, at the current insertion point, IR that
// decides at run time whether a mask may keep some / must keep every (q, k)
// of a tile [qlo, qhi] x [klo, khi], by interval arithmetic over the mask
// region. It is the run-time counterpart of TileClassifier (TileClasses.h):
// that one classifies index-only masks at compile time and gives up on
// tensor reads; this one takes tensor reads as intervals the backend
// computes per tile at launch (the min and max of `doc[k]` over the tile's
// keys, for a document mask), so dead tiles of data-dependent masks are
// found in O(1) per tile, never O(Nq * Nk).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_TILEBOUNDS_H
#define ATTNC_ANALYSIS_TILEBOUNDS_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <optional>

namespace mlir::attn {

/// Whether the mask region yields the constant true (full attention).
bool maskIsAlwaysTrue(AttentionOp attention);

/// Whether a backend should classify the mask's tiles at run time: masks
/// that read integer or bool tensor data (documents, prefix-LM, global
/// tokens, block masks) have no closed-form KV range, and masks with integer division or
/// remainder (2-D neighborhoods, dilation, blocks) leave EMPTY tiles inside
/// the range's hull.
bool needsRunTimeTileClasses(AttentionOp attention);

/// A closed interval [lo, hi] of i64 values (built IR).
struct IntervalValues {
  Value lo, hi;
};

/// The mask over a tile: i1 values, `mayKeep` false only if the mask is
/// false on every (q, k) of the tile (EMPTY), `mustKeep` true only if it is
/// true on every one (FULL).
struct TileKeepBounds {
  Value mayKeep, mustKeep;
};

/// A load of the mask whose range the backend supplies per tile: a 1-D
/// tensor indexed by the q or the k argument itself.
struct RangeLoad {
  LoadOp load;
  bool byKey; // indexed by k (else by q)
};

/// The loads of `maskBlock` buildTileKeepBounds asks the backend for.
SmallVector<RangeLoad> tileRangeLoads(Block &maskBlock);

/// Backend hooks. `loadRange(i)`: [min, max] (i64) of tileRangeLoads()[i]'s
/// tensor over the tile's rows or keys. `uniformLoad(load, indices)`: the
/// value of a load whose indices do not depend on q or k (i64 or i1
/// indices given as i64), e.g. `prefix_len[b]`, read once; null if the
/// backend cannot.
using LoadRangeFn = llvm::function_ref<IntervalValues(unsigned)>;
using UniformLoadFn = llvm::function_ref<Value(LoadOp, ArrayRef<Value>)>;

/// `maskBlock` is the mask region's block (arguments b, h, q, k) and
/// `maskValue` its yield; `outer` maps kernel values (parameters, body
/// constants) to values at the insertion point. `bIdx`, `hIdx` (i32) are
/// the tile's batch and head, `q` and `k` its positions (i64, inclusive).
///
/// Sound by construction: every value of the region is over-approximated by
/// an interval of its type (integers of at most 32 bits as i64 intervals;
/// a result that may wrap its type becomes the type's full range; i64
/// arithmetic, floats and unknown ops become unknown; a comparison with an
/// unknown side may be either). Precise where documents, prefix lengths and
/// global-token flags need it: comparisons, +, -, * , min/max/abs, division
/// and remainder by positive constants, and/or/xor of booleans, select.
TileKeepBounds buildTileKeepBounds(OpBuilder &b, Location loc, Block &maskBlock, Value maskValue,
                                   IRMapping &outer, Value bIdx, Value hIdx, IntervalValues q,
                                   IntervalValues k, LoadRangeFn loadRange,
                                   UniformLoadFn uniformLoad);

} // namespace mlir::attn

#endif // ATTNC_ANALYSIS_TILEBOUNDS_H
