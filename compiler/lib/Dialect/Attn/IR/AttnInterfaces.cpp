//===- AttnInterfaces.cpp - dialect interfaces of attn --------------------===//
//
// Inlining (attn.call into masks, scores and attention regions), constant
// placement for folding, and SSA names for printing.
//
//===----------------------------------------------------------------------===//

#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Interfaces/FoldInterfaces.h"
#include "mlir/Transforms/InliningUtils.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Every attn op may be inlined anywhere: definitions are pure functions of
/// their arguments, and attn.load only reads parameters.
struct AttnInlinerInterface : public DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;

  bool isLegalToInline(Operation *call, Operation *callable,
                       bool wouldBeCloned) const final {
    return true;
  }
  bool isLegalToInline(Region *dest, Region *src, bool wouldBeCloned,
                       IRMapping &valueMapping) const final {
    return true;
  }
  bool isLegalToInline(Operation *op, Region *dest, bool wouldBeCloned,
                       IRMapping &valueMapping) const final {
    return true;
  }

  /// Definitions have one block, so the terminator is always handled here:
  /// the yielded value replaces the call's result.
  void handleTerminator(Operation *op, ValueRange valuesToRepl) const final {
    auto yield = cast<YieldOp>(op);
    valuesToRepl.front().replaceAllUsesWith(yield.getValue());
  }
};

/// Keeps constants produced by folding inside the mask and score regions
/// instead of hoisting them into the kernel body: a region then reads as a
/// self-contained function of (b, h, q, k) and the kernel parameters, which
/// is what the mask analysis and the lowerings consume.
struct AttnFoldInterface : public DialectFoldInterface {
  using DialectFoldInterface::DialectFoldInterface;

  bool shouldMaterializeInto(Region *region) const final {
    return isa<AttentionOp>(region->getParentOp());
  }
};

} // namespace

void AttnDialect::registerInterfaces() {
  addInterfaces<AttnInlinerInterface, AttnFoldInterface>();
}
