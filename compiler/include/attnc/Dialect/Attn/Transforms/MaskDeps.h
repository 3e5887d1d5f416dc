//===- MaskDeps.h - what an attention mask depends on -----------*- C++ -*-===//
//
// The first step of mask analysis: from which inputs an attn.attention's mask
// is computed. Tile classification (full / partial / empty KV tiles) builds on
// it: a constant mask needs no per-element work, an index-only mask can be
// classified per tile from index arithmetic, a data-dependent one only at run
// time from the parameter's contents.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DIALECT_ATTN_TRANSFORMS_MASKDEPS_H
#define ATTNC_DIALECT_ATTN_TRANSFORMS_MASKDEPS_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "llvm/ADT/SmallVector.h"
#include <optional>

namespace mlir {
namespace attn {

enum class MaskClass {
  /// Reads no index variable and no tensor data: one value for all (b, h, q,
  /// k), possibly depending on runtime scalars.
  Constant,
  /// Reads index variables and possibly scalar parameters.
  IndexOnly,
  /// Reads the contents of a tensor parameter.
  DataDependent,
};

llvm::StringRef stringifyMaskClass(MaskClass kind);

struct MaskDeps {
  /// Positions among (b, h, q, k) that the mask reads, ascending.
  llvm::SmallVector<unsigned, 4> indexVars;
  /// Kernel argument numbers that the mask reads, ascending.
  llvm::SmallVector<unsigned, 4> params;
  MaskClass kind = MaskClass::Constant;
  /// Set when the mask region yields a constant.
  std::optional<bool> constantValue;

  /// As an attribute: {class = "...", index_vars = [...], params = [...]}
  /// with `value = true|false` when the mask is a constant.
  DictionaryAttr toAttr(KernelOp kernel) const;
};

/// Computes the inputs of `op`'s mask by walking back from the value its mask
/// region yields. Calls that were not inlined count as reading all of their
/// operands.
MaskDeps computeMaskDeps(AttentionOp op);

} // namespace attn
} // namespace mlir

#endif // ATTNC_DIALECT_ATTN_TRANSFORMS_MASKDEPS_H
