//===- InlineDefinitions.cpp - inline attn.call ---------------------------===//
//
// Kernels are compiled as a whole, so every call to a named mask or score is
// inlined. Definitions are processed callees first: each callee is already
// flat when it is cloned into its callers, so one level of inlining per call
// suffices and the work is linear in the size of the result.
//
//===----------------------------------------------------------------------===//

#include "attnc/Dialect/Attn/Transforms/Passes.h"

#include "mlir/IR/SymbolTable.h"
#include "mlir/Transforms/InliningUtils.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir {
namespace attn {
#define GEN_PASS_DEF_ATTNINLINEDEFINITIONS
#include "attnc/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace attn
} // namespace mlir

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Orders definitions callees first and reports call cycles.
class DefinitionOrder {
public:
  explicit DefinitionOrder(SymbolTableCollection &symbols) : symbols(symbols) {}

  /// Visits `op` (a definition or a kernel) and everything it calls.
  LogicalResult visit(Operation *op) {
    State &state = states[op];
    if (state == State::Done)
      return success();
    state = State::Active;
    path.push_back(op);
    SmallVector<CallOp> calls;
    op->walk([&](CallOp call) { calls.push_back(call); });
    for (CallOp call : calls) {
      Operation *callee =
          symbols.lookupNearestSymbolFrom(call, call.getCalleeAttr());
      if (!isa_and_nonnull<MaskOp, ScoreOp>(callee))
        return call.emitOpError()
               << "'" << call.getCallee()
               << "' does not reference an attn.mask or attn.score";
      State calleeState = states.lookup(callee);
      if (calleeState == State::Active)
        return reportCycle(call, callee);
      if (calleeState == State::Unvisited && failed(visit(callee)))
        return failure();
    }
    path.pop_back();
    states[op] = State::Done;
    order.push_back(op);
    return success();
  }

  /// Definitions and kernels, each after everything it calls.
  ArrayRef<Operation *> getOrder() const { return order; }

private:
  enum class State { Unvisited, Active, Done };

  LogicalResult reportCycle(CallOp call, Operation *callee) {
    InFlightDiagnostic diag = call.emitOpError()
                              << "recursive call to @" << call.getCallee()
                              << " cannot be inlined: ";
    auto *start = llvm::find(path, callee);
    for (Operation *def : llvm::make_range(start, path.end()))
      diag << "@" << SymbolTable::getSymbolName(def).getValue() << " -> ";
    diag << "@" << call.getCallee();
    return diag;
  }

  SymbolTableCollection &symbols;
  DenseMap<Operation *, State> states;
  SmallVector<Operation *> path;
  SmallVector<Operation *> order;
};

/// Clones the callee body next to the call, as the generic inliner does.
void cloneCallee(OpBuilder &, Region *src, Block *inlineBlock,
                 Block *postInsertBlock, IRMapping &mapper,
                 bool shouldCloneInlinedRegion) {
  Region *insertRegion = inlineBlock->getParent();
  if (shouldCloneInlinedRegion) {
    src->cloneInto(insertRegion, postInsertBlock->getIterator(), mapper);
    return;
  }
  insertRegion->getBlocks().splice(postInsertBlock->getIterator(),
                                   src->getBlocks(), src->begin(), src->end());
}

struct AttnInlineDefinitionsPass
    : public mlir::attn::impl::AttnInlineDefinitionsBase<
          AttnInlineDefinitionsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTableCollection symbols;
    DefinitionOrder order(symbols);
    WalkResult walk = module.walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (!isa<MaskOp, ScoreOp, KernelOp>(op))
        return WalkResult::advance();
      return failed(order.visit(op)) ? WalkResult::interrupt()
                                     : WalkResult::skip();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();

    InlinerInterface interface(&getContext());
    for (Operation *op : order.getOrder()) {
      SmallVector<CallOp> calls;
      op->walk([&](CallOp call) { calls.push_back(call); });
      for (CallOp call : calls) {
        auto callee = cast<CallableOpInterface>(
            symbols.lookupNearestSymbolFrom(call, call.getCalleeAttr()));
        if (failed(inlineCall(interface, cloneCallee, call, callee,
                              callee.getCallableRegion()))) {
          call.emitOpError() << "could not inline @" << call.getCallee();
          return signalPassFailure();
        }
        call.erase();
      }
    }

    if (!dropUnused)
      return;
    SmallVector<Operation *> unused;
    module.walk([&](Operation *op) {
      if (isa<MaskOp, ScoreOp>(op) &&
          SymbolTable::symbolKnownUseEmpty(op, module))
        unused.push_back(op);
    });
    for (Operation *op : unused)
      op->erase();
  }
};

} // namespace
