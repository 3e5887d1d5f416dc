//===- AttnAttrs.cpp - attn enums and attributes --------------------------===//
//
// Cache-policy attributes. Their syntax is keyword-driven and some parameters
// only exist for some kinds, so parsing and printing are written by hand.
//
//===----------------------------------------------------------------------===//

#include "attnc/Dialect/Attn/IR/AttnAttrs.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::attn;

#include "attnc/Dialect/Attn/IR/AttnEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "attnc/Dialect/Attn/IR/AttnAttrs.cpp.inc"

void AttnDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "attnc/Dialect/Attn/IR/AttnAttrs.cpp.inc"
      >();
}

/// Parses a keyword naming a case of enum `EnumT` via its generated
/// `symbolizeEnum`.
template <typename EnumT>
static FailureOr<EnumT> parseEnumKeyword(AsmParser &parser, StringRef what) {
  SMLoc loc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return failure();
  std::optional<EnumT> value = symbolizeEnum<EnumT>(keyword);
  if (!value)
    return parser.emitError(loc)
           << "unknown " << what << " '" << keyword << "'";
  return *value;
}

//===----------------------------------------------------------------------===//
// LayoutAttr
//===----------------------------------------------------------------------===//

LayoutAttr LayoutAttr::getContiguous(MLIRContext *ctx) {
  return get(ctx, LayoutKind::Contiguous, 0);
}

LayoutAttr LayoutAttr::getPaged(MLIRContext *ctx, uint64_t pageSize) {
  return get(ctx, LayoutKind::Paged, pageSize);
}

Attribute LayoutAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess())
    return {};
  FailureOr<LayoutKind> kind = parseEnumKeyword<LayoutKind>(parser, "layout");
  if (failed(kind))
    return {};
  uint64_t pageSize = 0;
  if (*kind == LayoutKind::Paged && parser.parseInteger(pageSize))
    return {};
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, ctx, *kind,
                    pageSize);
}

void LayoutAttr::print(AsmPrinter &printer) const {
  printer << '<' << stringifyEnum(getKind());
  if (getKind() == LayoutKind::Paged)
    printer << ' ' << getPageSize();
  printer << '>';
}

LogicalResult LayoutAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 LayoutKind kind, uint64_t pageSize) {
  if (kind == LayoutKind::Contiguous && pageSize != 0)
    return emitError() << "contiguous layout has no page size";
  // Pages are indexed by shifting a position, and KV tiles are sized to
  // divide pages evenly.
  if (kind == LayoutKind::Paged &&
      (pageSize == 0 || !llvm::isPowerOf2_64(pageSize)))
    return emitError() << "page size must be a power of two greater than 0, "
                          "got "
                       << pageSize;
  return success();
}

//===----------------------------------------------------------------------===//
// RetentionAttr
//===----------------------------------------------------------------------===//

RetentionAttr RetentionAttr::getAll(MLIRContext *ctx) {
  return get(ctx, RetentionKind::All, 0, 0, 0, EvictionScore::None);
}

RetentionAttr RetentionAttr::getSinkWindow(MLIRContext *ctx, uint64_t sink,
                                           uint64_t window) {
  return get(ctx, RetentionKind::SinkWindow, sink, window, 0,
             EvictionScore::None);
}

RetentionAttr RetentionAttr::getBudget(MLIRContext *ctx, uint64_t budget,
                                       EvictionScore evict) {
  return get(ctx, RetentionKind::Budget, 0, 0, budget, evict);
}

Attribute RetentionAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess())
    return {};
  FailureOr<RetentionKind> kind =
      parseEnumKeyword<RetentionKind>(parser, "retention");
  if (failed(kind))
    return {};
  uint64_t sink = 0, window = 0, budget = 0;
  EvictionScore evict = EvictionScore::None;
  switch (*kind) {
  case RetentionKind::All:
    break;
  case RetentionKind::SinkWindow:
    if (parser.parseKeyword("sink") || parser.parseInteger(sink) ||
        parser.parseKeyword("window") || parser.parseInteger(window))
      return {};
    break;
  case RetentionKind::Budget: {
    if (parser.parseInteger(budget) || parser.parseKeyword("evict"))
      return {};
    FailureOr<EvictionScore> score =
        parseEnumKeyword<EvictionScore>(parser, "eviction score");
    if (failed(score))
      return {};
    evict = *score;
    break;
  }
  }
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, ctx, *kind, sink,
                    window, budget, evict);
}

void RetentionAttr::print(AsmPrinter &printer) const {
  printer << '<' << stringifyEnum(getKind());
  switch (getKind()) {
  case RetentionKind::All:
    break;
  case RetentionKind::SinkWindow:
    printer << " sink " << getSink() << " window " << getWindow();
    break;
  case RetentionKind::Budget:
    printer << ' ' << getBudget() << " evict " << stringifyEnum(getEvict());
    break;
  }
  printer << '>';
}

LogicalResult
RetentionAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                      RetentionKind kind, uint64_t sink, uint64_t window,
                      uint64_t budget, EvictionScore evict) {
  bool sinkWindow = kind == RetentionKind::SinkWindow;
  bool isBudget = kind == RetentionKind::Budget;
  if (!sinkWindow && (sink != 0 || window != 0))
    return emitError() << "sink and window only apply to sink_window retention";
  if (!isBudget && (budget != 0 || evict != EvictionScore::None))
    return emitError() << "budget and evict only apply to budget retention";
  if (sinkWindow && window == 0)
    return emitError() << "sink_window retention needs a window greater than 0";
  if (isBudget && budget == 0)
    return emitError() << "budget retention needs a budget greater than 0";
  if (isBudget && evict == EvictionScore::None)
    return emitError() << "budget retention needs an eviction score (h2o or "
                          "snapkv)";
  return success();
}

//===----------------------------------------------------------------------===//
// StorageAttr
//===----------------------------------------------------------------------===//

bool StorageAttr::isQuantizedType(Type type) {
  return type.isInteger(8) || type.isInteger(4) || isa<Float8E4M3FNType>(type);
}

/// Element types a KV cache may store.
static bool isStorageType(Type type) {
  return type.isBF16() || type.isF16() || StorageAttr::isQuantizedType(type);
}

Attribute StorageAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  SMLoc loc = parser.getCurrentLocation();
  Type elementType;
  if (parser.parseLess() || parser.parseType(elementType))
    return {};
  ScaleGranularity scale = ScaleGranularity::None;
  uint64_t groupSize = 0;
  Type scaleType;
  if (parser.parseOptionalGreater()) {
    FailureOr<ScaleGranularity> parsed =
        parseEnumKeyword<ScaleGranularity>(parser, "scale granularity");
    if (failed(parsed))
      return {};
    scale = *parsed;
    if (scale == ScaleGranularity::PerGroup && parser.parseInteger(groupSize))
      return {};
    if (succeeded(parser.parseOptionalKeyword("scale")) &&
        parser.parseType(scaleType))
      return {};
    if (parser.parseGreater())
      return {};
  }
  return getChecked([&] { return parser.emitError(loc); }, ctx, elementType,
                    scale, groupSize, scaleType);
}

void StorageAttr::print(AsmPrinter &printer) const {
  printer << '<' << getElementType();
  if (getScale() != ScaleGranularity::None)
    printer << ' ' << stringifyEnum(getScale());
  if (getScale() == ScaleGranularity::PerGroup)
    printer << ' ' << getGroupSize();
  if (getScaleType())
    printer << " scale " << getScaleType();
  printer << '>';
}

LogicalResult StorageAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                  Type elementType, ScaleGranularity scale,
                                  uint64_t groupSize, Type scaleType) {
  if (!elementType || !isStorageType(elementType))
    return emitError() << "storage element type must be bf16, f16, f8E4M3FN, "
                          "i8 or i4, got "
                       << elementType;
  bool quantized = isQuantizedType(elementType);
  if (quantized && scale == ScaleGranularity::None)
    return emitError() << "quantized storage " << elementType
                       << " needs a scale granularity (per_token or "
                          "per_group G)";
  if (!quantized && scale != ScaleGranularity::None)
    return emitError() << "float storage " << elementType << " takes no scale";
  if (scale == ScaleGranularity::PerGroup && groupSize == 0)
    return emitError() << "per_group scale needs a group size greater than 0";
  if (scale != ScaleGranularity::PerGroup && groupSize != 0)
    return emitError() << "group size only applies to per_group scales";
  // f16 scales: per group only (a token's row of them is then a whole
  // number of 4-byte words wherever the groups per row are even; see
  // analyzeCacheStorage). f32 is the default and is not spelled.
  if (scaleType && !scaleType.isF16())
    return emitError() << "scale type must be f16 (f32 is the default), got "
                       << scaleType;
  if (scaleType && scale != ScaleGranularity::PerGroup)
    return emitError() << "f16 scales need per_group scales";
  return success();
}
