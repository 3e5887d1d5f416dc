//===- AttnOps.td - attn operations ------------------------*- tablegen -*-===//
//
// Operations of the attn dialect, see docs/ir.md for the contract.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNOPS_TD
#define ATTNC_DIALECT_ATTN_IR_ATTNOPS_TD

include "attnc/Dialect/Attn/IR/AttnDialect.td"
include "attnc/Dialect/Attn/IR/AttnAttrs.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/CallInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/Interfaces/FunctionInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Definitions: attn.mask, attn.score
//===----------------------------------------------------------------------===//

// Shared shape of named definitions: a symbol with a function type and one
// block terminated by attn.yield. Parsed and printed like func.func.
class Attn_DefinitionOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<mnemonic, !listconcat(traits, [
        FunctionOpInterface, IsolatedFromAbove, SingleBlock,
        DeclareOpInterfaceMethods<OpAsmOpInterface,
                                  ["getAsmBlockArgumentNames"]>])> {
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<FunctionType>:$function_type,
                       OptionalAttr<StrAttr>:$sym_visibility,
                       OptionalAttr<DictArrayAttr>:$arg_attrs,
                       OptionalAttr<DictArrayAttr>:$res_attrs);
  let regions = (region SizedRegion<1>:$body);

  // Creates the entry block with one argument per input of `type`.
  let builders = [OpBuilder<(ins "::llvm::StringRef":$name,
                                 "::mlir::FunctionType":$type,
      CArg<"::llvm::ArrayRef<::mlir::DictionaryAttr>", "{}">:$argAttrs)>];
  let skipDefaultBuilders = 1;
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;

  code extraDefinitionClassDeclaration = [{
    ::mlir::Region *getCallableRegion() { return &getBody(); }
    ::llvm::ArrayRef<::mlir::Type> getArgumentTypes() {
      return getFunctionType().getInputs();
    }
    ::llvm::ArrayRef<::mlir::Type> getResultTypes() {
      return getFunctionType().getResults();
    }
    /// Definitions always have a body.
    bool isDeclaration() { return false; }
    /// The runtime parameters following the leading fixed arguments.
    ::mlir::Block::BlockArgListType getParams() {
      return getBody().getArguments().drop_front(getNumLeadingArgs());
    }
  }];
}

def Attn_MaskOp : Attn_DefinitionOp<"mask"> {
  let summary = "named mask definition";
  let description = [{
    A mask over (b, h, q, k): four `i32` index arguments, then parameters
    (scalars or ranked tensors); the body yields `i1` (true = attend).

    ```mlir
    attn.mask @sliding_window(%b: i32, %h: i32, %q: i32, %k: i32, %w: i32) -> i1 {
      %d = arith.subi %q, %k : i32
      %0 = arith.cmpi slt, %d, %w : i32
      attn.yield %0 : i1
    }
    ```
  }];
  let extraClassDeclaration = extraDefinitionClassDeclaration # [{
    /// b, h, q, k.
    static constexpr unsigned getNumLeadingArgs() { return 4; }
    /// The signature of a mask taking `params` after the index arguments.
    static ::mlir::FunctionType getTypeFor(::mlir::MLIRContext *ctx,
                                           ::mlir::TypeRange params);
  }];
}

def Attn_ScoreOp : Attn_DefinitionOp<"score"> {
  let summary = "named score modification";
  let description = [{
    A score modification: the `f32` score, four `i32` index arguments, then
    parameters; the body yields the new `f32` score.

    ```mlir
    attn.score @softcap(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32, %cap: f32) -> f32 {
      %0 = arith.divf %s, %cap : f32
      %1 = math.tanh %0 : f32
      %2 = arith.mulf %1, %cap : f32
      attn.yield %2 : f32
    }
    ```
  }];
  let extraClassDeclaration = extraDefinitionClassDeclaration # [{
    /// s, b, h, q, k.
    static constexpr unsigned getNumLeadingArgs() { return 5; }
    /// The signature of a score taking `params` after s, b, h, q, k.
    static ::mlir::FunctionType getTypeFor(::mlir::MLIRContext *ctx,
                                           ::mlir::TypeRange params);
  }];
}

//===----------------------------------------------------------------------===//
// attn.call
//===----------------------------------------------------------------------===//

def Attn_CallOp : Attn_Op<"call", [
    CallOpInterface, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "call a named mask or score definition";
  let description = [{
    ```mlir
    %0 = attn.call @document(%b, %h, %q, %k, %doc)
        : (i32, i32, i32, i32, tensor<?xi32>) -> i1
    ```
    The callee must be an `attn.mask` or `attn.score` whose signature matches
    the operand and result types. Calls are removed by
    `-attn-inline-definitions`. There is deliberately no folder: it would
    have to read the callee, a sibling op that a parallel pass pipeline may
    be rewriting at the same time.
  }];
  let arguments = (ins FlatSymbolRefAttr:$callee,
                       Variadic<AnyType>:$operands,
                       OptionalAttr<DictArrayAttr>:$arg_attrs,
                       OptionalAttr<DictArrayAttr>:$res_attrs);
  let results = (outs AnyType:$result);
  let builders = [
    // Calls `callee` (an attn.mask or attn.score) with its result type.
    OpBuilder<(ins "::mlir::FunctionOpInterface":$callee,
                   "::mlir::ValueRange":$operands)>,
    OpBuilder<(ins "::llvm::StringRef":$callee, "::mlir::Type":$result,
                   "::mlir::ValueRange":$operands), [{
      build($_builder, $_state, result,
            ::mlir::FlatSymbolRefAttr::get($_builder.getContext(), callee),
            operands, /*arg_attrs=*/nullptr, /*res_attrs=*/nullptr);
    }]>];
  let assemblyFormat = [{
    $callee `(` $operands `)` attr-dict `:` functional-type($operands, $result)
  }];
  let extraClassDeclaration = [{
    ::mlir::FunctionType getCalleeType();
    ::mlir::OperandRange getArgOperands() { return getOperands(); }
    ::mlir::MutableOperandRange getArgOperandsMutable() {
      return getOperandsMutable();
    }
    ::mlir::CallInterfaceCallable getCallableForCallee() {
      return getCalleeAttr();
    }
    void setCalleeFromCallable(::mlir::CallInterfaceCallable callee) {
      (*this)->setAttr(getCalleeAttrName(),
                       ::llvm::cast<::mlir::SymbolRefAttr>(callee));
    }
  }];
}

//===----------------------------------------------------------------------===//
// attn.load
//===----------------------------------------------------------------------===//

def Attn_LoadOp : Attn_Op<"load", [Pure,
    TypesMatchWith<"result type is the tensor's element type", "tensor",
                   "result",
                   "::llvm::cast<::mlir::TensorType>($_self).getElementType()">]> {
  let summary = "read one element of a tensor parameter";
  let description = [{
    ```mlir
    %m = attn.load %slopes[%h] : tensor<?xf32>
    ```
    One `i32` index per dimension. Out-of-range indices are undefined
    behaviour (the backends do not bounds-check). Folds when the tensor is a
    constant and the indices are constants in range.
  }];
  let arguments = (ins AnyRankedTensor:$tensor, Variadic<I32>:$indices);
  let results = (outs AnyType:$result);
  // The result type is the tensor's element type.
  let builders = [OpBuilder<(ins "::mlir::Value":$tensor,
                                 "::mlir::ValueRange":$indices), [{
    build($_builder, $_state,
          ::llvm::cast<::mlir::TensorType>(tensor.getType()).getElementType(),
          tensor, indices);
  }]>];
  let assemblyFormat = [{
    $tensor `[` $indices `]` attr-dict `:` type($tensor)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// attn.yield
//===----------------------------------------------------------------------===//

def Attn_YieldOp : Attn_Op<"yield", [Pure, ReturnLike, Terminator,
    ParentOneOf<["MaskOp", "ScoreOp", "AttentionOp"]>]> {
  let summary = "yield the mask bit or score of a definition or region";
  let description = [{
    ```mlir
    attn.yield %0 : i1
    ```
  }];
  let arguments = (ins AnyType:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

//===----------------------------------------------------------------------===//
// attn.kernel
//===----------------------------------------------------------------------===//

def Attn_KernelOp : Attn_Op<"kernel", [
    FunctionOpInterface, IsolatedFromAbove, SingleBlock, NoTerminator,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames"]>]> {
  let summary = "an attention kernel with its runtime parameters";
  let description = [{
    The arguments are the kernel's runtime parameters (ranked tensors and
    scalars), each named by `attn.name`; tensors carry `attn.dims`, scalars
    may carry `attn.default`. The body is one block with exactly one
    `attn.attention`, optionally preceded by side-effect-free ops computing
    values it uses (e.g. the scale). No results, no terminator.

    ```mlir
    attn.kernel @causal(%cap: f32 {attn.name = "cap"})
        attributes {dtypes = [bf16, f16], head_dims = array<i64: 64, 128>} {
      attn.attention normalizer = softmax heads = grouped mask { ... } score { ... }
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<FunctionType>:$function_type,
                       OptionalAttr<StrAttr>:$sym_visibility,
                       OptionalAttr<DictArrayAttr>:$arg_attrs,
                       OptionalAttr<DictArrayAttr>:$res_attrs,
                       OptionalAttr<TypeArrayAttr>:$dtypes,
                       OptionalAttr<DenseI64ArrayAttr>:$head_dims);
  let regions = (region SizedRegion<1>:$body);

  // Creates the entry block with one argument per input of `type`;
  // `paramNames`, if given, sets `attn.name` on each argument.
  let builders = [OpBuilder<(ins "::llvm::StringRef":$name,
                                 "::mlir::FunctionType":$type,
      CArg<"::llvm::ArrayRef<::llvm::StringRef>", "{}">:$paramNames)>];
  let skipDefaultBuilders = 1;
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let hasRegionVerifier = 1;

  let extraClassDeclaration = [{
    // Not callable (attn.call rejects kernels), but exposing the body puts
    // the kernel in the call graph, so the generic -inline pass sees the
    // calls inside it.
    ::mlir::Region *getCallableRegion() { return &getBody(); }
    ::llvm::ArrayRef<::mlir::Type> getArgumentTypes() {
      return getFunctionType().getInputs();
    }
    ::llvm::ArrayRef<::mlir::Type> getResultTypes() {
      return getFunctionType().getResults();
    }
    bool isDeclaration() { return false; }

    /// The single attn.attention in the body (null only before it is built).
    AttentionOp getAttention();
    /// The `attn.name` of parameter `i`, or an empty string.
    ::llvm::StringRef getParamName(unsigned i);
  }];
}

//===----------------------------------------------------------------------===//
// attn.attention
//===----------------------------------------------------------------------===//

def Attn_AttentionOp : Attn_Op<"attention", [
    HasParent<"KernelOp">,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames"]>]> {
  let summary = "attention with mask and score regions";
  let description = [{
    `mask` has block arguments (b, h, q, k : i32) and yields `i1`; `score` has
    (s : f32, b, h, q, k : i32) and yields `f32`. Both may use values of the
    enclosing kernel. `scale` is optional (absent = 1/sqrt(D)).

    ```mlir
    attn.attention normalizer = softmax heads = grouped scale(%c : f32) mask {
    ^bb0(%b: i32, %h: i32, %q: i32, %k: i32):
      %0 = arith.cmpi sle, %k, %q : i32
      attn.yield %0 : i1
    } score {
    ^bb0(%s: f32, %b: i32, %h: i32, %q: i32, %k: i32):
      attn.yield %s : f32
    }
    ```
  }];
  let arguments = (ins
    DefaultValuedAttr<Attn_NormalizerAttr, "Normalizer::Softmax">:$normalizer,
    DefaultValuedAttr<Attn_HeadMappingAttr, "HeadMapping::Grouped">:$heads,
    Optional<F32>:$scale);
  let regions = (region SizedRegion<1>:$mask, SizedRegion<1>:$score);

  // Creates both regions with their entry blocks and block arguments but no
  // terminators; fill them through getMaskBlock()/getScoreBlock().
  let builders = [OpBuilder<(ins
      CArg<"Normalizer", "Normalizer::Softmax">:$normalizer,
      CArg<"HeadMapping", "HeadMapping::Grouped">:$heads,
      CArg<"::mlir::Value", "{}">:$scale)>];
  let skipDefaultBuilders = 1;

  let assemblyFormat = [{
    `normalizer` `=` custom<KeywordEnum>($normalizer)
    `heads` `=` custom<KeywordEnum>($heads)
    (`scale` `(` $scale^ `:` type($scale) `)`)?
    attr-dict-with-keyword `mask` $mask `score` $score
  }];
  let hasRegionVerifier = 1;

  let extraClassDeclaration = [{
    ::mlir::Block &getMaskBlock() { return getMask().front(); }
    ::mlir::Block &getScoreBlock() { return getScore().front(); }
    /// The value yielded by the mask / score region.
    ::mlir::Value getMaskValue();
    ::mlir::Value getScoreValue();
  }];
}

//===----------------------------------------------------------------------===//
// Cache policies
//===----------------------------------------------------------------------===//

def Attn_CachePolicyOp : Attn_Op<"cache_policy", [Symbol]> {
  let summary = "a named KV-cache policy";
  let description = [{
    ```mlir
    attn.cache_policy @streaming layout = #attn.layout<paged 16>
        retention = #attn.retention<sink_window sink 4 window 1020>
        storage = #attn.storage<i8 per_token>
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       Attn_LayoutAttr:$layout,
                       Attn_RetentionAttr:$retention,
                       Attn_StorageAttr:$storage);
  let assemblyFormat = [{
    $sym_name `layout` `=` qualified($layout)
    `retention` `=` qualified($retention)
    `storage` `=` qualified($storage) attr-dict
  }];
}

def Attn_HeadPolicyOp : Attn_Op<"head_policy", [
    Symbol, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "per-KV-head choice among cache policies";
  let description = [{
    KV head i uses `policies[table[i]]`, where `table` names a runtime `i32`
    tensor parameter.

    ```mlir
    attn.head_policy @duo [@full, @streaming] table "head_kind"
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       FlatSymbolRefArrayAttr:$policies,
                       StrAttr:$table);
  let assemblyFormat = "$sym_name $policies `table` $table attr-dict";
  let hasVerifier = 1;
}

#endif // ATTNC_DIALECT_ATTN_IR_ATTNOPS_TD
