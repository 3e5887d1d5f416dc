//===- AttnAttrs.td - attn enums and attributes ------------*- tablegen -*-===//
//
// Enums used by attn.attention and the three orthogonal choices of a KV-cache
// policy (layout, retention, storage), see docs/ir.md "Cache policies".
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNATTRS_TD
#define ATTNC_DIALECT_ATTN_IR_ATTNATTRS_TD

include "attnc/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Attn_Normalizer : I32EnumAttr<"Normalizer",
    "how scores become weights", [
      I32EnumAttrCase<"Softmax", 0, "softmax">,
      I32EnumAttrCase<"Sigmoid", 1, "sigmoid">]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_HeadMapping : I32EnumAttr<"HeadMapping",
    "which KV head a query head reads", [
      // kv head = h / (Hq / Hkv)
      I32EnumAttrCase<"Grouped", 0, "grouped">,
      // kv head = h % Hkv
      I32EnumAttrCase<"Interleaved", 1, "interleaved">]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_LayoutKind : I32EnumAttr<"LayoutKind", "KV-cache layout", [
      I32EnumAttrCase<"Contiguous", 0, "contiguous">,
      I32EnumAttrCase<"Paged", 1, "paged">]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_RetentionKind : I32EnumAttr<"RetentionKind",
    "which logical positions a KV cache keeps", [
      I32EnumAttrCase<"All", 0, "all">,
      I32EnumAttrCase<"SinkWindow", 1, "sink_window">,
      I32EnumAttrCase<"Budget", 2, "budget">]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_EvictionScore : I32EnumAttr<"EvictionScore",
    "score used to evict positions under a budget", [
      I32EnumAttrCase<"None", 0, "none">,
      // accumulated attention mass (H2O)
      I32EnumAttrCase<"H2O", 1, "h2o">,
      // observation-window scores at prefill (SnapKV)
      I32EnumAttrCase<"SnapKV", 2, "snapkv">]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_ScaleGranularity : I32EnumAttr<"ScaleGranularity",
    "granularity of dequantization scales", [
      I32EnumAttrCase<"None", 0, "none">,
      I32EnumAttrCase<"PerToken", 1, "per_token">,
      I32EnumAttrCase<"PerGroup", 2, "per_group">]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

class Attn_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Attn_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

// Standalone: `#attn.normalizer<softmax>`; attn.attention prints them as bare
// keywords through custom<KeywordEnum>.
def Attn_NormalizerAttr
    : EnumAttr<Attn_Dialect, Attn_Normalizer, "normalizer"> {
  let assemblyFormat = "`<` $value `>`";
}

def Attn_HeadMappingAttr : EnumAttr<Attn_Dialect, Attn_HeadMapping, "heads"> {
  let assemblyFormat = "`<` $value `>`";
}

def Attn_LayoutAttr : Attn_Attr<"Layout", "layout"> {
  let summary = "KV-cache layout: contiguous or paged with page size P";
  let description = [{
    `#attn.layout<contiguous>` or `#attn.layout<paged P>` with P > 0 a power
    of two (page tables index whole pages, and tiles must not straddle them).
  }];
  let parameters = (ins
    EnumParameter<Attn_LayoutKind>:$kind,
    DefaultValuedParameter<"uint64_t", "0">:$pageSize);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    static LayoutAttr getContiguous(::mlir::MLIRContext *ctx);
    static LayoutAttr getPaged(::mlir::MLIRContext *ctx, uint64_t pageSize);
  }];
}

def Attn_RetentionAttr : Attn_Attr<"Retention", "retention"> {
  let summary = "which logical positions a KV cache retains";
  let description = [{
    `#attn.retention<all>`,
    `#attn.retention<sink_window sink S window W>` (S >= 0, W > 0), or
    `#attn.retention<budget N evict h2o|snapkv>` (N > 0).
    Unused parameters are zero / `none`.
  }];
  let parameters = (ins
    EnumParameter<Attn_RetentionKind>:$kind,
    DefaultValuedParameter<"uint64_t", "0">:$sink,
    DefaultValuedParameter<"uint64_t", "0">:$window,
    DefaultValuedParameter<"uint64_t", "0">:$budget,
    DefaultValuedParameter<"EvictionScore", "EvictionScore::None">:$evict);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    static RetentionAttr getAll(::mlir::MLIRContext *ctx);
    static RetentionAttr getSinkWindow(::mlir::MLIRContext *ctx, uint64_t sink,
                                       uint64_t window);
    static RetentionAttr getBudget(::mlir::MLIRContext *ctx, uint64_t budget,
                                   EvictionScore evict);
  }];
}

def Attn_StorageAttr : Attn_Attr<"Storage", "storage"> {
  let summary = "KV element type and dequantization scale granularity";
  let description = [{
    `#attn.storage<bf16>`, `#attn.storage<i8 per_token>`,
    `#attn.storage<i4 per_group G>`, `#attn.storage<i4 per_group G scale f16>`.
    Element types: bf16, f16 (stored as is, no scale) and f8E4M3FN, i8, i4
    (quantized, a scale is required). Scales are f32 unless `scale f16`
    (per_group scales only: 2 bytes a group instead of 4).
  }];
  let parameters = (ins
    "::mlir::Type":$elementType,
    DefaultValuedParameter<"ScaleGranularity", "ScaleGranularity::None">:$scale,
    DefaultValuedParameter<"uint64_t", "0">:$groupSize,
    OptionalParameter<"::mlir::Type">:$scaleType);
  // StorageAttr::get(bf16) / get(i8, ScaleGranularity::PerToken).
  let builders = [AttrBuilderWithInferredContext<(ins
      "::mlir::Type":$elementType,
      CArg<"ScaleGranularity", "ScaleGranularity::None">:$scale,
      CArg<"uint64_t", "0">:$groupSize,
      CArg<"::mlir::Type", "{}">:$scaleType), [{
    return $_get(elementType.getContext(), elementType, scale, groupSize, scaleType);
  }]>];
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// True for element types that need a dequantization scale.
    static bool isQuantizedType(::mlir::Type type);
    bool isQuantized() const { return isQuantizedType(getElementType()); }
    /// Bytes of one stored scale: 2 with `scale f16`, else 4 (f32).
    int64_t scaleBytes() const {
      return getScaleType() && getScaleType().isF16() ? 2 : 4;
    }
  }];
}

#endif // ATTNC_DIALECT_ATTN_IR_ATTNATTRS_TD
