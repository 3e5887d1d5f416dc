//===- AttnDialect.td - attn dialect definition ------------*- tablegen -*-===//
//
// The attn dialect is the contract between the DSL front end (MLIRGen) and
// every lowering: an attention kernel before tiling. See docs/ir.md.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNDIALECT_TD
#define ATTNC_DIALECT_ATTN_IR_ATTNDIALECT_TD

include "mlir/IR/OpBase.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::mlir::attn";
  let summary = "Attention kernels before tiling: masks, scores, cache policies";
  let description = [{
    Named mask and score definitions, kernels holding one `attn.attention`
    with mask and score regions, and KV-cache policy declarations. Bodies
    compute with `arith` and `math` on builtin types.
  }];
  // Folders produce i1/f32/i32 constants; they are materialized as
  // arith.constant, so arith must be loaded whenever attn is.
  let dependentDialects = ["::mlir::arith::ArithDialect"];
  let hasConstantMaterializer = 1;
  let useDefaultAttributePrinterParser = 1;

  let extraClassDeclaration = [{
    /// Argument attribute naming a kernel parameter (StringAttr).
    static constexpr ::llvm::StringLiteral getNameAttrName() {
      return ::llvm::StringLiteral("attn.name");
    }
    /// Argument attribute with a tensor parameter's symbolic shape
    /// (ArrayAttr of StringAttr dimension symbols or IntegerAttr literals).
    static constexpr ::llvm::StringLiteral getDimsAttrName() {
      return ::llvm::StringLiteral("attn.dims");
    }
    /// Argument attribute with a scalar parameter's default value.
    static constexpr ::llvm::StringLiteral getDefaultAttrName() {
      return ::llvm::StringLiteral("attn.default");
    }
    /// Attribute attached by -attn-print-mask-deps to attn.attention.
    static constexpr ::llvm::StringLiteral getMaskDepsAttrName() {
      return ::llvm::StringLiteral("attn.mask_deps");
    }

    void registerAttributes();
    void registerInterfaces();
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

#endif // ATTNC_DIALECT_ATTN_IR_ATTNDIALECT_TD
