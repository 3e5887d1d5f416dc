//===- Passes.td - attn passes -----------------------------*- tablegen -*-===//

#ifndef ATTNC_DIALECT_ATTN_TRANSFORMS_PASSES_TD
#define ATTNC_DIALECT_ATTN_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnInlineDefinitions : Pass<"attn-inline-definitions", "ModuleOp"> {
  let summary = "Inline every attn.call, transitively, into its caller";
  let description = [{
    Replaces each `attn.call` by the body of its `attn.mask` / `attn.score`
    callee, callees first, so kernels end up self-contained. Recursive
    definitions are reported as an error (with the cycle) instead of being
    unrolled. With `drop-unused`, definitions no longer referenced are erased.
  }];
  let dependentDialects = ["::mlir::attn::AttnDialect"];
  let options = [
    Option<"dropUnused", "drop-unused", "bool", /*default=*/"true",
           "Erase attn.mask / attn.score definitions left without uses">
  ];
}

def AttnPrintMaskDeps : Pass<"attn-print-mask-deps", "ModuleOp"> {
  let summary = "Report what each attn.attention's mask depends on";
  let description = [{
    Emits a remark on every `attn.attention` listing the index variables
    (b, h, q, k) and kernel parameters its mask reads, and its class:
    `constant` (no index variable, no tensor data), `index-only` (index
    variables and scalar parameters), or `data-dependent` (reads tensor
    parameter data). Attaches the result as the `attn.mask_deps` attribute.
  }];
  let dependentDialects = ["::mlir::attn::AttnDialect"];
}

#endif // ATTNC_DIALECT_ATTN_TRANSFORMS_PASSES_TD
