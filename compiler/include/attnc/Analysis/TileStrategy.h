//===- TileStrategy.h - How the backends skip work for a mask ----*- C++ -*-===//
//
// A summary of what the mask analyses (KvRange.h, TileBounds.h,
// TileClasses.h) make of an attention's mask, in the terms a user needs:
// whether tiles are decided in closed form or at launch, how each tensor the
// mask reads takes part, and what the analysis cannot bound (tiles that stay
// PARTIAL: correct, not faster). `attnc --remarks` prints it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_TILESTRATEGY_H
#define ATTNC_ANALYSIS_TILESTRATEGY_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include <string>
#include <vector>

namespace mlir::attn {

struct TileStrategy {
  enum class Kind {
    /// The mask is the constant true: every tile FULL, no mask evaluated.
    AllKept,
    /// Index-only mask without division: per query tile, a closed-form KV
    /// range and an inner range of FULL tiles; nothing runs at launch.
    ClosedForm,
    /// Tensor reads or index division: tiles classified at launch
    /// (TileBounds.h) into FULL / EMPTY / PARTIAL.
    RunTime,
  };
  /// How a tensor read of the mask enters the run-time classes.
  struct TensorRead {
    std::string name;
    enum class How {
      /// 1-D, indexed by q or k itself: its [min, max] over the tile's rows
      /// or keys.
      Range,
      /// Indices from b, h and parameters only: one read per tile.
      Uniform,
      /// Other indices: one read when every index is one value over the
      /// tile (a block mask on tiles inside a block), else unbounded.
      Point,
      /// Float contents: not bounded.
      Unbounded,
    } how;
    bool byKey = false; // Range: indexed by k (else q)
  };
  Kind kind = Kind::ClosedForm;
  std::vector<TensorRead> reads;
  /// Ops whose results no analysis bounds (float arithmetic, ...).
  std::vector<std::string> unmodeledOps;

  /// One sentence per fact, for remarks.
  std::vector<std::string> describe() const;
};

TileStrategy analyzeTileStrategy(AttentionOp attention);

} // namespace mlir::attn

#endif // ATTNC_ANALYSIS_TILESTRATEGY_H
