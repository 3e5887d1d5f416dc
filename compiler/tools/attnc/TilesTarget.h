//===- TilesTarget.h - attnc --emit=tiles (mask tile classes) ---*- C++ -*-===//

#ifndef ATTNC_TOOLS_TILESTARGET_H
#define ATTNC_TOOLS_TILESTARGET_H

#include "Driver.h"

namespace attnc::driver {

struct TilesOptions {
  std::string kernel;
  /// NAME=VALUE: const parameters (specialization) and integer/bool runtime
  /// scalars (values the analysis may assume).
  std::vector<std::string> params;
  /// "Nq,Nk" or "B,Hq,Hkv,Nq,Nk,D[,Dv]" (B and Hq then bound b and h).
  std::string shape;
  int64_t qOffset = 0;
  int64_t tileQ = 64, tileK = 64;
  /// Bisection levels for PARTIAL tiles (TileClassifier::classify).
  unsigned refine = 0;
};

/// `attnc FILE --emit=tiles`: the FULL / EMPTY / PARTIAL class of every
/// tile of the kernel's mask (attnc/Analysis/TileClasses.h), one line per
/// query tile, then the counts and notes on what the analysis could not
/// bound.
bool emitTiles(mlir::MLIRContext &ctx, const dsl::Program &prog, const TilesOptions &options,
               llvm::raw_ostream &os);

/// `attnc --remarks`: for `kernel` (every kernel of the file when empty),
/// remarks at the kernel's source location on how the backends skip work
/// for its mask (attnc/Analysis/TileStrategy.h): closed-form ranges or
/// classes at launch, how each tensor read takes part, what stays PARTIAL.
/// `params` as for --emit (runtime scalars are ignored here).
bool emitTileRemarks(mlir::MLIRContext &ctx, const dsl::Program &prog, const std::string &kernel,
                     const std::vector<std::string> &params);

} // namespace attnc::driver

#endif // ATTNC_TOOLS_TILESTARGET_H
