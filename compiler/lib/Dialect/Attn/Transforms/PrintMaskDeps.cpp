//===- PrintMaskDeps.cpp - report mask dependences ------------------------===//

#include "attnc/Dialect/Attn/Transforms/MaskDeps.h"
#include "attnc/Dialect/Attn/Transforms/Passes.h"

#include "llvm/ADT/STLExtras.h"

namespace mlir {
namespace attn {
#define GEN_PASS_DEF_ATTNPRINTMASKDEPS
#include "attnc/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace attn
} // namespace mlir

using namespace mlir;
using namespace mlir::attn;

namespace {
struct AttnPrintMaskDepsPass
    : public mlir::attn::impl::AttnPrintMaskDepsBase<AttnPrintMaskDepsPass> {
  void runOnOperation() override {
    getOperation().walk([](AttentionOp op) {
      auto kernel = op->getParentOfType<KernelOp>();
      MaskDeps deps = computeMaskDeps(op);
      DictionaryAttr attr = deps.toAttr(kernel);
      op->setAttr(AttnDialect::getMaskDepsAttrName(), attr);

      InFlightDiagnostic remark = op.emitRemark("mask deps: index vars [");
      llvm::interleaveComma(
          cast<ArrayAttr>(attr.get("index_vars")), remark,
          [&](Attribute a) { remark << cast<StringAttr>(a).getValue(); });
      remark << "], params [";
      llvm::interleaveComma(
          cast<ArrayAttr>(attr.get("params")), remark,
          [&](Attribute a) { remark << cast<StringAttr>(a).getValue(); });
      remark << "], class " << stringifyMaskClass(deps.kind);
      if (deps.constantValue)
        remark << " (always " << (*deps.constantValue ? "true" : "false")
               << ")";
    });
    // Only an attribute was added.
    markAllAnalysesPreserved();
  }
};
} // namespace
