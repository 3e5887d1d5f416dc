//===- AttnOps.cpp - attn operations --------------------------------------===//

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/FunctionImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Shared helpers
//===----------------------------------------------------------------------===//

/// Runtime parameters are scalars (integer or float) or ranked tensors of
/// them: exactly what the runtime can pass and attn.load can read.
static bool isParamType(Type type) {
  if (auto tensor = dyn_cast<RankedTensorType>(type))
    type = tensor.getElementType();
  return isa<IntegerType, FloatType>(type);
}

static bool isI32(Type type) { return type.isInteger(32); }

/// Returns the attn.yield ending `block`, or null if it ends otherwise.
static YieldOp getYield(Block &block) {
  if (block.empty())
    return nullptr;
  return dyn_cast<YieldOp>(block.back());
}

/// Checks that `block` ends with an attn.yield of `expected`; `what` names
/// the block in messages ("mask region", "body").
static LogicalResult verifyYield(Operation *op, Block &block, Type expected,
                                 StringRef what) {
  YieldOp yield = getYield(block);
  if (!yield)
    return op->emitOpError() << what << " must end with attn.yield";
  Type actual = yield.getValue().getType();
  if (actual != expected)
    return op->emitOpError()
           << what << " must yield " << expected << ", got " << actual;
  return success();
}

/// Names the leading block arguments (b, h, q, k or s, b, h, q, k) and any
/// argument of a function-like op that carries `attn.name`.
static void setArgNames(Block::BlockArgListType args,
                        ArrayRef<StringRef> leading, FunctionOpInterface fn,
                        OpAsmSetValueNameFn setNameFn) {
  for (auto [i, arg] : llvm::enumerate(args)) {
    if (fn)
      if (auto name = fn.getArgAttrOfType<StringAttr>(
              i, AttnDialect::getNameAttrName());
          name && !name.getValue().empty()) {
        setNameFn(arg, name.getValue());
        continue;
      }
    if (i < leading.size())
      setNameFn(arg, leading[i]);
  }
}

static constexpr StringRef kIndexNames[] = {"b", "h", "q", "k"};
static constexpr StringRef kScoreNames[] = {"s", "b", "h", "q", "k"};

/// Builds a function-like op's attributes and entry block.
static void buildFunctionLike(OpBuilder &builder, OperationState &state,
                              StringRef name, FunctionType type,
                              ArrayRef<DictionaryAttr> argAttrs,
                              StringAttr symNameAttrName,
                              StringAttr typeAttrName, StringAttr argAttrsName,
                              StringAttr resAttrsName) {
  state.addAttribute(symNameAttrName, builder.getStringAttr(name));
  state.addAttribute(typeAttrName, TypeAttr::get(type));
  call_interface_impl::addArgAndResultAttrs(builder, state, argAttrs,
                                            /*resultAttrs=*/{}, argAttrsName,
                                            resAttrsName);
  Region *body = state.addRegion();
  Block *entry = new Block();
  body->push_back(entry);
  for (Type input : type.getInputs())
    entry->addArgument(input, state.location);
}

/// custom<KeywordEnum>: an enum attribute as a bare keyword
/// (`normalizer = softmax` rather than `#attn.normalizer<softmax>`).
template <typename AttrT>
static ParseResult parseKeywordEnum(OpAsmParser &parser, AttrT &attr) {
  using EnumT = decltype(std::declval<AttrT>().getValue());
  SMLoc loc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return failure();
  std::optional<EnumT> value = symbolizeEnum<EnumT>(keyword);
  if (!value)
    return parser.emitError(loc)
           << "unknown " << AttrT::getMnemonic() << " '" << keyword << "'";
  attr = AttrT::get(parser.getContext(), *value);
  return success();
}

template <typename AttrT>
static void printKeywordEnum(OpAsmPrinter &printer, Operation *, AttrT attr) {
  printer << stringifyEnum(attr.getValue());
}

//===----------------------------------------------------------------------===//
// MaskOp / ScoreOp
//===----------------------------------------------------------------------===//

/// Verifies the parts of a definition that do not depend on its kind: the
/// parameters after the `numLeading` fixed arguments and the single result.
static LogicalResult verifyDefinition(FunctionOpInterface op,
                                      unsigned numLeading, Type resultType) {
  ArrayRef<Type> inputs = op.getArgumentTypes();
  for (auto [i, type] : llvm::enumerate(inputs.drop_front(numLeading)))
    if (!isParamType(type))
      return op->emitOpError()
             << "parameter #" << i + numLeading
             << " must be an integer or float scalar or a ranked tensor of "
                "them, got "
             << type;
  for (unsigned i = 0, e = inputs.size(); i < e; ++i)
    for (NamedAttribute attr : op.getArgAttrs(i)) {
      StringRef attrName = attr.getName().getValue();
      if (attrName == AttnDialect::getNameAttrName() &&
          isa<StringAttr>(attr.getValue()))
        continue;
      // `attn.const` marks a specialization constant: the kernel passes a
      // compile-time value, so inlining folds it.
      if (attrName == "attn.const" && isa<UnitAttr>(attr.getValue()) &&
          i >= numLeading)
        continue;
      if (attrName.starts_with("attn."))
        return op->emitOpError()
               << "argument #" << i << ": unsupported attribute '" << attrName
               << "' (definitions only take a string 'attn.name' and a unit "
                  "'attn.const' on parameters)";
    }
  ArrayRef<Type> results = op.getResultTypes();
  if (results.size() != 1 || results.front() != resultType)
    return op->emitOpError() << "must return exactly one " << resultType
                             << ", got " << results.size() << " result(s)"
                             << (results.empty() ? "" : " starting with ")
                             << (results.empty() ? Type() : results.front());
  if (op.getFunctionBody().empty())
    return op->emitOpError() << "must have a body";
  return verifyYield(op, op.getFunctionBody().front(), resultType, "body");
}

static FunctionType definitionType(MLIRContext *ctx, TypeRange leading,
                                   TypeRange params, Type result) {
  SmallVector<Type> inputs(leading);
  llvm::append_range(inputs, params);
  return FunctionType::get(ctx, inputs, result);
}

FunctionType MaskOp::getTypeFor(MLIRContext *ctx, TypeRange params) {
  Type i32 = IntegerType::get(ctx, 32);
  return definitionType(ctx, {i32, i32, i32, i32}, params,
                        IntegerType::get(ctx, 1));
}

FunctionType ScoreOp::getTypeFor(MLIRContext *ctx, TypeRange params) {
  Type i32 = IntegerType::get(ctx, 32), f32 = Float32Type::get(ctx);
  return definitionType(ctx, {f32, i32, i32, i32, i32}, params, f32);
}

void MaskOp::build(OpBuilder &builder, OperationState &state, StringRef name,
                   FunctionType type, ArrayRef<DictionaryAttr> argAttrs) {
  buildFunctionLike(
      builder, state, name, type, argAttrs, getSymNameAttrName(state.name),
      getFunctionTypeAttrName(state.name), getArgAttrsAttrName(state.name),
      getResAttrsAttrName(state.name));
}

void ScoreOp::build(OpBuilder &builder, OperationState &state, StringRef name,
                    FunctionType type, ArrayRef<DictionaryAttr> argAttrs) {
  buildFunctionLike(
      builder, state, name, type, argAttrs, getSymNameAttrName(state.name),
      getFunctionTypeAttrName(state.name), getArgAttrsAttrName(state.name),
      getResAttrsAttrName(state.name));
}

/// Definitions and kernels parse like func.func; no variadics.
template <typename OpTy>
static ParseResult parseFunctionLike(OpAsmParser &parser,
                                     OperationState &result) {
  auto buildType = [](Builder &builder, ArrayRef<Type> inputs,
                      ArrayRef<Type> results,
                      function_interface_impl::VariadicFlag, std::string &) {
    return builder.getFunctionType(inputs, results);
  };
  return function_interface_impl::parseFunctionOp(
      parser, result, /*allowVariadic=*/false,
      OpTy::getFunctionTypeAttrName(result.name), buildType,
      OpTy::getArgAttrsAttrName(result.name),
      OpTy::getResAttrsAttrName(result.name));
}

template <typename OpTy>
static void printFunctionLike(OpAsmPrinter &p, OpTy op) {
  function_interface_impl::printFunctionOp(
      p, op, /*isVariadic=*/false, op.getFunctionTypeAttrName(),
      op.getArgAttrsAttrName(), op.getResAttrsAttrName());
}

ParseResult MaskOp::parse(OpAsmParser &parser, OperationState &result) {
  return parseFunctionLike<MaskOp>(parser, result);
}
void MaskOp::print(OpAsmPrinter &p) { printFunctionLike(p, *this); }

ParseResult ScoreOp::parse(OpAsmParser &parser, OperationState &result) {
  return parseFunctionLike<ScoreOp>(parser, result);
}
void ScoreOp::print(OpAsmPrinter &p) { printFunctionLike(p, *this); }

LogicalResult MaskOp::verify() {
  ArrayRef<Type> inputs = getArgumentTypes();
  if (inputs.size() < getNumLeadingArgs())
    return emitOpError() << "must take the index arguments (b, h, q, k : i32) "
                            "first, got "
                         << inputs.size() << " argument(s)";
  for (unsigned i = 0; i < getNumLeadingArgs(); ++i)
    if (!isI32(inputs[i]))
      return emitOpError() << "index argument #" << i << " (" << kIndexNames[i]
                           << ") must be i32, got " << inputs[i];
  return verifyDefinition(*this, getNumLeadingArgs(),
                          IntegerType::get(getContext(), 1));
}

LogicalResult ScoreOp::verify() {
  ArrayRef<Type> inputs = getArgumentTypes();
  if (inputs.size() < getNumLeadingArgs())
    return emitOpError() << "must take the score and index arguments (s : "
                            "f32, b, h, q, k : i32) first, got "
                         << inputs.size() << " argument(s)";
  if (!inputs[0].isF32())
    return emitOpError() << "score argument #0 (s) must be f32, got "
                         << inputs[0];
  for (unsigned i = 1; i < getNumLeadingArgs(); ++i)
    if (!isI32(inputs[i]))
      return emitOpError() << "index argument #" << i << " (" << kScoreNames[i]
                           << ") must be i32, got " << inputs[i];
  return verifyDefinition(*this, getNumLeadingArgs(),
                          Float32Type::get(getContext()));
}

void MaskOp::getAsmBlockArgumentNames(Region &region,
                                      OpAsmSetValueNameFn setNameFn) {
  if (!region.empty())
    setArgNames(region.getArguments(), kIndexNames, *this, setNameFn);
}

void ScoreOp::getAsmBlockArgumentNames(Region &region,
                                       OpAsmSetValueNameFn setNameFn) {
  if (!region.empty())
    setArgNames(region.getArguments(), kScoreNames, *this, setNameFn);
}

//===----------------------------------------------------------------------===//
// CallOp
//===----------------------------------------------------------------------===//

void CallOp::build(OpBuilder &builder, OperationState &state,
                   FunctionOpInterface callee, ValueRange operands) {
  build(builder, state, callee.getResultTypes().front(),
        FlatSymbolRefAttr::get(callee.getNameAttr()), operands,
        /*arg_attrs=*/nullptr, /*res_attrs=*/nullptr);
}

FunctionType CallOp::getCalleeType() {
  return FunctionType::get(getContext(), getOperandTypes(),
                           getResult().getType());
}

LogicalResult CallOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  Operation *callee =
      symbolTable.lookupNearestSymbolFrom(*this, getCalleeAttr());
  if (!isa_and_nonnull<MaskOp, ScoreOp>(callee))
    return emitOpError() << "'" << getCallee()
                         << "' does not reference an attn.mask or attn.score";
  auto type =
      cast<FunctionType>(cast<FunctionOpInterface>(callee).getFunctionType());
  if (type.getNumInputs() != getNumOperands())
    return emitOpError() << "passes " << getNumOperands() << " operand(s) but @"
                         << getCallee() << " takes " << type.getNumInputs();
  for (auto [i, pair] :
       llvm::enumerate(llvm::zip(getOperandTypes(), type.getInputs()))) {
    auto [actual, expected] = pair;
    if (actual != expected)
      return emitOpError() << "operand #" << i << " has type " << actual
                           << " but @" << getCallee() << " expects "
                           << expected;
  }
  if (type.getNumResults() != 1 || type.getResult(0) != getResult().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " does not match @" << getCallee()
                         << " result type " << type.getResult(0);
  return success();
}

//===----------------------------------------------------------------------===//
// LoadOp
//===----------------------------------------------------------------------===//

LogicalResult LoadOp::verify() {
  auto type = cast<RankedTensorType>(getTensor().getType());
  if (static_cast<int64_t>(getIndices().size()) != type.getRank())
    return emitOpError() << "expects " << type.getRank() << " index(es) for "
                         << type << ", got " << getIndices().size();
  return success();
}

OpFoldResult LoadOp::fold(FoldAdaptor adaptor) {
  // Specialization constants may turn a tensor parameter into a constant
  // table; reading it at constant indices is then a constant.
  auto elements = dyn_cast_if_present<DenseElementsAttr>(adaptor.getTensor());
  if (!elements)
    return {};
  if (elements.isSplat())
    return elements.getSplatValue<Attribute>();
  ArrayRef<int64_t> shape = elements.getType().getShape();
  SmallVector<uint64_t> position;
  for (auto [attr, dim] : llvm::zip(adaptor.getIndices(), shape)) {
    auto index = dyn_cast_if_present<IntegerAttr>(attr);
    if (!index)
      return {};
    int64_t value = index.getValue().getSExtValue();
    // Out of range is undefined behaviour at run time; leave it alone.
    if (value < 0 || value >= dim)
      return {};
    position.push_back(value);
  }
  return elements.getValues<Attribute>()[position];
}

//===----------------------------------------------------------------------===//
// KernelOp
//===----------------------------------------------------------------------===//

void KernelOp::build(OpBuilder &builder, OperationState &state, StringRef name,
                     FunctionType type, ArrayRef<StringRef> paramNames) {
  SmallVector<DictionaryAttr> argAttrs;
  for (StringRef param : paramNames)
    argAttrs.push_back(builder.getDictionaryAttr(builder.getNamedAttr(
        AttnDialect::getNameAttrName(), builder.getStringAttr(param))));
  buildFunctionLike(
      builder, state, name, type, argAttrs, getSymNameAttrName(state.name),
      getFunctionTypeAttrName(state.name), getArgAttrsAttrName(state.name),
      getResAttrsAttrName(state.name));
}

ParseResult KernelOp::parse(OpAsmParser &parser, OperationState &result) {
  return parseFunctionLike<KernelOp>(parser, result);
}
void KernelOp::print(OpAsmPrinter &p) { printFunctionLike(p, *this); }

AttentionOp KernelOp::getAttention() {
  if (getBody().empty())
    return nullptr;
  auto ops = getBody().front().getOps<AttentionOp>();
  return ops.empty() ? nullptr : *ops.begin();
}

StringRef KernelOp::getParamName(unsigned i) {
  if (auto name =
          getArgAttrOfType<StringAttr>(i, AttnDialect::getNameAttrName()))
    return name.getValue();
  return {};
}

void KernelOp::getAsmBlockArgumentNames(Region &region,
                                        OpAsmSetValueNameFn setNameFn) {
  if (!region.empty())
    setArgNames(region.getArguments(), {}, *this, setNameFn);
}

/// Symbols allowed in `attn.dims` (docs/ir.md): the problem sizes of the
/// attention call. N stands for a sequence length shared by queries and keys.
/// "?" is an extent the front end could not express as one symbol or
/// integer (e.g. `2 * W + 1` with W bound inside a definition); it is not
/// checked symbolically.
static bool isDimSymbol(StringRef symbol) {
  return llvm::is_contained(
      ArrayRef<StringRef>{"B", "Hq", "Hkv", "Nq", "Nk", "N", "D", "Dv", "?"},
      symbol);
}

/// Verifies `attn.dims` on a tensor parameter of type `type`.
static LogicalResult verifyDims(KernelOp op, unsigned i, Attribute attr,
                                Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return op.emitOpError()
           << "parameter #" << i << ": 'attn.dims' only applies to tensors";
  auto dims = dyn_cast<ArrayAttr>(attr);
  if (!dims)
    return op.emitOpError()
           << "parameter #" << i << ": 'attn.dims' must be an array";
  if (static_cast<int64_t>(dims.size()) != tensor.getRank())
    return op.emitOpError()
           << "parameter #" << i << ": 'attn.dims' has " << dims.size()
           << " entries but " << tensor << " has rank " << tensor.getRank();
  for (auto [d, dim] : llvm::enumerate(dims)) {
    if (auto symbol = dyn_cast<StringAttr>(dim)) {
      if (!isDimSymbol(symbol.getValue()))
        return op.emitOpError()
               << "parameter #" << i << ": unknown dimension symbol '"
               << symbol.getValue()
               << "' in 'attn.dims' (expected B, Hq, Hkv, Nq, Nk, N, D, Dv "
                  "or an integer)";
      continue;
    }
    auto literal = dyn_cast<IntegerAttr>(dim);
    if (!literal)
      return op.emitOpError() << "parameter #" << i << ": 'attn.dims' entry #"
                              << d << " must be a string or an integer";
    int64_t value = literal.getInt();
    int64_t size = tensor.getDimSize(d);
    if (value <= 0 || (!ShapedType::isDynamic(size) && size != value))
      return op.emitOpError()
             << "parameter #" << i << ": 'attn.dims' entry #" << d << " ("
             << value << ") does not match dimension " << d << " of " << tensor;
  }
  return success();
}

LogicalResult KernelOp::verify() {
  if (!getResultTypes().empty())
    return emitOpError() << "must not return results";

  llvm::StringSet<> names;
  for (auto [i, type] : llvm::enumerate(getArgumentTypes())) {
    if (!isParamType(type))
      return emitOpError() << "parameter #" << i
                           << " must be an integer or float scalar or a "
                              "ranked tensor of them, got "
                           << type;
    // Parameter names are the runtime ABI: arguments are passed by name.
    auto name = getArgAttrOfType<StringAttr>(i, AttnDialect::getNameAttrName());
    if (!name || name.getValue().empty())
      return emitOpError() << "parameter #" << i
                           << " needs a non-empty 'attn.name' string";
    if (!names.insert(name.getValue()).second)
      return emitOpError() << "duplicate parameter name '" << name.getValue()
                           << "'";
    for (NamedAttribute attr :
         cast<FunctionOpInterface>(getOperation()).getArgAttrs(i)) {
      StringRef attrName = attr.getName().getValue();
      if (attrName == AttnDialect::getNameAttrName())
        continue;
      if (attrName == AttnDialect::getDimsAttrName()) {
        if (failed(verifyDims(*this, i, attr.getValue(), type)))
          return failure();
        continue;
      }
      if (attrName == AttnDialect::getDefaultAttrName()) {
        if (isa<RankedTensorType>(type))
          return emitOpError() << "parameter #" << i
                               << ": 'attn.default' only applies to scalars";
        auto value = dyn_cast<TypedAttr>(attr.getValue());
        if (!value || value.getType() != type)
          return emitOpError()
                 << "parameter #" << i << ": 'attn.default' must be a " << type
                 << " value";
        continue;
      }
      if (attrName.starts_with("attn."))
        return emitOpError() << "parameter #" << i << ": unknown attribute '"
                             << attrName << "'";
    }
  }

  if (std::optional<ArrayAttr> dtypes = getDtypes())
    for (Attribute dtype : *dtypes)
      if (!isa<FloatType>(cast<TypeAttr>(dtype).getValue()))
        return emitOpError() << "dtypes must be float types, got " << dtype;
  if (std::optional<ArrayRef<int64_t>> headDims = getHeadDims())
    for (int64_t d : *headDims)
      if (d <= 0)
        return emitOpError() << "head_dims must be positive, got " << d;
  return success();
}

LogicalResult KernelOp::verifyRegions() {
  unsigned numAttention = 0;
  for (Operation &op : getBody().front()) {
    if (isa<AttentionOp>(op)) {
      ++numAttention;
      continue;
    }
    // Anything else only computes values the attention reads (a scale, a
    // constant table); lowerings may rematerialize or hoist it freely.
    if (!isMemoryEffectFree(&op))
      return op.emitOpError()
             << "has side effects; an attn.kernel body may only hold "
                "attn.attention and side-effect-free ops";
  }
  if (numAttention != 1)
    return emitOpError() << "body must hold exactly one attn.attention, found "
                         << numAttention;
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

void AttentionOp::build(OpBuilder &builder, OperationState &state,
                        Normalizer normalizer, HeadMapping heads, Value scale) {
  MLIRContext *ctx = builder.getContext();
  Properties &props = state.getOrAddProperties<Properties>();
  props.normalizer = NormalizerAttr::get(ctx, normalizer);
  props.heads = HeadMappingAttr::get(ctx, heads);
  if (scale)
    state.addOperands(scale);

  Type i32 = builder.getI32Type(), f32 = builder.getF32Type();
  Region *mask = state.addRegion();
  mask->push_back(new Block());
  for (unsigned i = 0; i < 4; ++i)
    mask->front().addArgument(i32, state.location);
  Region *score = state.addRegion();
  score->push_back(new Block());
  score->front().addArgument(f32, state.location);
  for (unsigned i = 0; i < 4; ++i)
    score->front().addArgument(i32, state.location);
}

Value AttentionOp::getMaskValue() {
  YieldOp yield = getYield(getMaskBlock());
  return yield ? yield.getValue() : Value();
}

Value AttentionOp::getScoreValue() {
  YieldOp yield = getYield(getScoreBlock());
  return yield ? yield.getValue() : Value();
}

/// Renders a type list as "(i32, f32)" for messages.
static std::string formatTypes(TypeRange types) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << '(';
  llvm::interleaveComma(types, os);
  os << ')';
  return text;
}

LogicalResult AttentionOp::verifyRegions() {
  Block &mask = getMaskBlock();
  if (mask.getNumArguments() != 4 ||
      !llvm::all_of(mask.getArgumentTypes(), isI32))
    return emitOpError() << "mask region must take (b, h, q, k : i32), got "
                         << formatTypes(mask.getArgumentTypes());
  Block &score = getScoreBlock();
  TypeRange scoreTypes = score.getArgumentTypes();
  if (score.getNumArguments() != 5 || !scoreTypes[0].isF32() ||
      !llvm::all_of(scoreTypes.drop_front(), isI32))
    return emitOpError()
           << "score region must take (s : f32, b, h, q, k : i32), got "
           << formatTypes(scoreTypes);
  if (failed(verifyYield(*this, mask, IntegerType::get(getContext(), 1),
                         "mask region")))
    return failure();
  return verifyYield(*this, score, Float32Type::get(getContext()),
                     "score region");
}

void AttentionOp::getAsmBlockArgumentNames(Region &region,
                                           OpAsmSetValueNameFn setNameFn) {
  if (region.empty())
    return;
  setArgNames(region.getArguments(),
              &region == &getMask() ? ArrayRef<StringRef>(kIndexNames)
                                    : ArrayRef<StringRef>(kScoreNames),
              nullptr, setNameFn);
}

//===----------------------------------------------------------------------===//
// HeadPolicyOp
//===----------------------------------------------------------------------===//

LogicalResult HeadPolicyOp::verify() {
  if (getPolicies().empty())
    return emitOpError() << "needs at least one cache policy";
  if (getTable().empty())
    return emitOpError() << "needs a non-empty table parameter name";
  return success();
}

LogicalResult
HeadPolicyOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  for (auto policy : getPolicies().getAsRange<FlatSymbolRefAttr>())
    if (!symbolTable.lookupNearestSymbolFrom<CachePolicyOp>(*this, policy))
      return emitOpError() << "'" << policy.getValue()
                           << "' does not reference an attn.cache_policy";
  return success();
}

#define GET_OP_CLASSES
#include "attnc/Dialect/Attn/IR/AttnOps.cpp.inc"
