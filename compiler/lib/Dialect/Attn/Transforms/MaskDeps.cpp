//===- MaskDeps.cpp - what an attention mask depends on -------------------===//

#include "attnc/Dialect/Attn/Transforms/MaskDeps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/SetVector.h"

using namespace mlir;
using namespace mlir::attn;

static constexpr StringRef kIndexNames[] = {"b", "h", "q", "k"};

StringRef mlir::attn::stringifyMaskClass(MaskClass kind) {
  switch (kind) {
  case MaskClass::Constant:
    return "constant";
  case MaskClass::IndexOnly:
    return "index-only";
  case MaskClass::DataDependent:
    return "data-dependent";
  }
  llvm_unreachable("unknown mask class");
}

MaskDeps mlir::attn::computeMaskDeps(AttentionOp op) {
  MaskDeps deps;
  Value result = op.getMaskValue();
  if (!result)
    return deps;

  Block *maskBlock = &op.getMaskBlock();
  auto kernel = op->getParentOfType<KernelOp>();
  Block *kernelBlock = kernel ? &kernel.getBody().front() : nullptr;

  llvm::SmallSetVector<Value, 16> worklist;
  worklist.insert(result);
  llvm::SmallDenseSet<unsigned> indexVars, params;
  bool readsTensorData = false;
  auto addOperands = [&](Operation *user) {
    // Nested regions (e.g. scf.if) read values through their ops' operands.
    user->walk([&](Operation *nested) {
      readsTensorData |= isa<LoadOp>(nested);
      for (Value operand : nested->getOperands())
        worklist.insert(operand);
    });
  };
  // The set vector only grows, so indexing visits every value once.
  for (unsigned i = 0; i < worklist.size(); ++i) {
    Value value = worklist[i];
    if (Operation *def = value.getDefiningOp()) {
      addOperands(def);
      continue;
    }
    auto arg = cast<BlockArgument>(value);
    if (arg.getOwner() == maskBlock) {
      indexVars.insert(arg.getArgNumber());
    } else if (arg.getOwner() == kernelBlock) {
      params.insert(arg.getArgNumber());
      // A tensor reaching the mask other than through attn.load (a call
      // left uninlined) may be read anywhere.
      readsTensorData |= isa<TensorType>(arg.getType());
    } else if (Operation *parent = arg.getOwner()->getParentOp()) {
      // Argument of a region nested in the mask: conservatively depends on
      // everything its op reads.
      addOperands(parent);
    }
  }

  deps.indexVars.assign(indexVars.begin(), indexVars.end());
  llvm::sort(deps.indexVars);
  deps.params.assign(params.begin(), params.end());
  llvm::sort(deps.params);
  if (readsTensorData)
    deps.kind = MaskClass::DataDependent;
  else if (!deps.indexVars.empty())
    deps.kind = MaskClass::IndexOnly;
  else
    deps.kind = MaskClass::Constant;
  BoolAttr constant;
  if (matchPattern(result, m_Constant(&constant)))
    deps.constantValue = constant.getValue();
  return deps;
}

DictionaryAttr MaskDeps::toAttr(KernelOp kernel) const {
  Builder builder(kernel.getContext());
  SmallVector<Attribute> indexAttrs, paramAttrs;
  for (unsigned i : indexVars)
    indexAttrs.push_back(builder.getStringAttr(kIndexNames[i]));
  for (unsigned i : params)
    paramAttrs.push_back(builder.getStringAttr(kernel.getParamName(i)));
  SmallVector<NamedAttribute> fields = {
      builder.getNamedAttr("class",
                           builder.getStringAttr(stringifyMaskClass(kind))),
      builder.getNamedAttr("index_vars", builder.getArrayAttr(indexAttrs)),
      builder.getNamedAttr("params", builder.getArrayAttr(paramAttrs))};
  if (constantValue)
    fields.push_back(
        builder.getNamedAttr("value", builder.getBoolAttr(*constantValue)));
  return builder.getDictionaryAttr(fields);
}
