//===- TileClasses.h - FULL / EMPTY / PARTIAL tiles of a mask ---*- C++ -*-===//
//
// Classifies a tile [q0, q1) x [k0, k1) of an attention mask at compile time:
// FULL (the mask holds at every (q, k) of the tile, for every b and h in
// their ranges), EMPTY (it holds nowhere) or PARTIAL (anything else, or not
// provable). The mask region (after attn-inline-definitions + canonicalize)
// is evaluated once per tile on abstract values: integer intervals that also
// carry an exact affine form in b, h, q, k while the value is one, and
// three-valued booleans. Whatever the analysis cannot bound (reads of tensor
// parameters, float arithmetic, unknown ops) is the full range of its type,
// so the classes are sound: FULL and EMPTY are proofs, PARTIAL is not a
// claim that the tile is mixed. See docs/analysis.md.
//
// Separate from KvRange.h, which builds IR computing key ranges at run time;
// this runs in the compiler on concrete tile coordinates.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_TILECLASSES_H
#define ATTNC_ANALYSIS_TILECLASSES_H

#include "mlir/IR/Block.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/StringMap.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mlir::attn {

class AttentionOp;

enum class TileClass { Empty, Partial, Full };

/// 'E', 'P' or 'F'.
char toChar(TileClass c);

/// Half-open ranges of absolute positions (q, k) and of batch and head
/// indices. The defaults of b and h are every non-negative i32.
struct TileBox {
  int64_t q0 = 0, q1 = 1, k0 = 0, k1 = 1;
  int64_t b0 = 0, b1 = int64_t(INT32_MAX) + 1;
  int64_t h0 = 0, h1 = int64_t(INT32_MAX) + 1;
};

/// The mask of one attention op, prepared for classifying many tiles.
class TileClassifier {
public:
  /// `maskBlock` has the arguments b, h, q, k; `maskValue` is the i1 it
  /// yields. Values defined outside the region are constants, ops of the
  /// kernel body (evaluated like the region's) or kernel arguments: a scalar
  /// argument whose `attn.name` is in `known` takes that value, any other is
  /// unknown.
  TileClassifier(Block &maskBlock, Value maskValue, const llvm::StringMap<int64_t> &known = {});
  explicit TileClassifier(AttentionOp op, const llvm::StringMap<int64_t> &known = {});
  ~TileClassifier();
  TileClassifier(TileClassifier &&);
  TileClassifier &operator=(TileClassifier &&);

  /// The class of `box`. An empty box is EMPTY. With `refine` > 0, a box
  /// found PARTIAL is bisected (its longer q or k side) up to `refine`
  /// levels deep: FULL (EMPTY) when both halves are. That decides tiles whose
  /// constraints are each PARTIAL but not together (the row and column
  /// windows of 2-D neighbourhoods). At most 2^(refine+1) - 1 evaluations;
  /// a mixed tile usually stops after a few.
  TileClass classify(const TileBox &box, unsigned refine = 0) const;

  /// Tensor parameters (by `attn.name`, else `#N`) whose contents the mask
  /// reads, in first-use order.
  const std::vector<std::string> &tensorReads() const;
  /// Names of ops the analysis does not model (their results are unknown),
  /// without duplicates; float arithmetic counts here.
  const std::vector<std::string> &unmodeledOps() const;
  /// Scalar kernel arguments the mask uses whose value is unknown.
  const std::vector<std::string> &unknownScalars() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
};

} // namespace mlir::attn

#endif // ATTNC_ANALYSIS_TILECLASSES_H
