//===- TestBuilders.cpp - exercise the attn C++ builders ------------------===//
//
// A test-only pass that builds, through the C++ API a front end uses, one of
// each attn op and attribute and appends them to the module. The lit test
// test-builders.mlir checks that the result verifies and prints as expected,
// so the builders stay in sync with the verifiers.
//
//===----------------------------------------------------------------------===//

#include "TestPasses.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

struct TestAttnBuildersPass
    : public PassWrapper<TestAttnBuildersPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(TestAttnBuildersPass)

  StringRef getArgument() const final { return "attn-test-builders"; }
  StringRef getDescription() const final {
    return "Append attn ops built with the C++ builders (test only)";
  }
  void getDependentDialects(DialectRegistry &registry) const final {
    registry.insert<AttnDialect, arith::ArithDialect>();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    Location loc = UnknownLoc::get(ctx);
    OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());
    Type i32 = builder.getI32Type(), f32 = builder.getF32Type();
    auto docType = RankedTensorType::get({ShapedType::kDynamic}, i32);

    // attn.mask @same_doc(b, h, q, k, doc) -> i1
    auto mask = MaskOp::create(builder, loc, "same_doc",
                               MaskOp::getTypeFor(ctx, {docType}));
    {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&mask.getBody().front());
      Block::BlockArgListType args = mask.getBody().getArguments();
      Value doc = mask.getParams()[0];
      Value dq = LoadOp::create(builder, loc, doc, ValueRange{args[2]});
      Value dk = LoadOp::create(builder, loc, doc, ValueRange{args[3]});
      Value eq =
          arith::CmpIOp::create(builder, loc, arith::CmpIPredicate::eq, dq, dk);
      YieldOp::create(builder, loc, eq);
    }

    // attn.score @scaled(s, b, h, q, k, c) -> f32
    auto score = ScoreOp::create(builder, loc, "scaled",
                                 ScoreOp::getTypeFor(ctx, {f32}));
    {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&score.getBody().front());
      Value s = score.getBody().getArgument(0);
      Value c = score.getParams()[0];
      YieldOp::create(builder, loc,
                      arith::MulFOp::create(builder, loc, s, c).getResult());
    }

    // attn.kernel @built(doc, cap) with one attention.
    auto kernel = KernelOp::create(builder, loc, "built",
                                   builder.getFunctionType({docType, f32}, {}),
                                   ArrayRef<StringRef>{"doc", "cap"});
    kernel.setDtypesAttr(builder.getTypeArrayAttr({builder.getBF16Type()}));
    kernel.setHeadDimsAttr(builder.getDenseI64ArrayAttr({64, 128}));
    kernel.setArgAttr(0, AttnDialect::getDimsAttrName(),
                      builder.getStrArrayAttr({"N"}));
    kernel.setArgAttr(1, AttnDialect::getDefaultAttrName(),
                      builder.getF32FloatAttr(30.0f));
    {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&kernel.getBody().front());
      Value scale = arith::ConstantOp::create(builder, loc,
                                              builder.getF32FloatAttr(0.125f));
      auto attention = AttentionOp::create(builder, loc, Normalizer::Softmax,
                                           HeadMapping::Interleaved, scale);
      Value doc = kernel.getArgument(0), cap = kernel.getArgument(1);

      builder.setInsertionPointToStart(&attention.getMaskBlock());
      SmallVector<Value> maskArgs(attention.getMaskBlock().getArguments());
      maskArgs.push_back(doc);
      YieldOp::create(builder, loc,
                      CallOp::create(builder, loc, mask, maskArgs).getResult());

      builder.setInsertionPointToStart(&attention.getScoreBlock());
      SmallVector<Value> scoreArgs(attention.getScoreBlock().getArguments());
      scoreArgs.push_back(cap);
      Value scored =
          CallOp::create(builder, loc, "scaled", f32, scoreArgs).getResult();
      YieldOp::create(builder, loc, scored);
    }
    // A kernel with default enums and no scale.
    auto plain = KernelOp::create(builder, loc, "plain",
                                  builder.getFunctionType({}, {}));
    {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&plain.getBody().front());
      auto attention = AttentionOp::create(builder, loc);
      builder.setInsertionPointToStart(&attention.getMaskBlock());
      YieldOp::create(
          builder, loc,
          arith::ConstantOp::create(builder, loc, builder.getBoolAttr(true))
              .getResult());
      builder.setInsertionPointToStart(&attention.getScoreBlock());
      YieldOp::create(builder, loc, attention.getScoreBlock().getArgument(0));
    }

    // Cache policies.
    CachePolicyOp::create(builder, loc, "streaming",
                          LayoutAttr::getPaged(ctx, 16),
                          RetentionAttr::getSinkWindow(ctx, 4, 1020),
                          StorageAttr::get(builder.getIntegerType(8),
                                           ScaleGranularity::PerToken));
    CachePolicyOp::create(builder, loc, "full", LayoutAttr::getContiguous(ctx),
                          RetentionAttr::getAll(ctx),
                          StorageAttr::get(builder.getBF16Type()));
    CachePolicyOp::create(
        builder, loc, "budget", LayoutAttr::getContiguous(ctx),
        RetentionAttr::getBudget(ctx, 2048, EvictionScore::SnapKV),
        StorageAttr::get(builder.getIntegerType(4), ScaleGranularity::PerGroup,
                         32));
    HeadPolicyOp::create(
        builder, loc, "duo",
        builder.getArrayAttr({FlatSymbolRefAttr::get(ctx, "full"),
                              FlatSymbolRefAttr::get(ctx, "streaming")}),
        "head_kind");

    // getChecked reports invalid parameters instead of building them (pass
    // integers as uint64_t so the generated overload is chosen). The errors
    // are captured and re-emitted as remarks for the test to check.
    SmallVector<std::string> rejected;
    {
      ScopedDiagnosticHandler capture(ctx, [&](Diagnostic &diag) {
        rejected.push_back(diag.str());
        return success();
      });
      auto emitError = [&] { return mlir::emitError(module.getLoc()); };
      (void)LayoutAttr::getChecked(emitError, ctx, LayoutKind::Paged,
                                   uint64_t{12});
      (void)StorageAttr::getChecked(emitError, builder.getIntegerType(8));
    }
    for (const std::string &message : rejected)
      module.emitRemark("rejected: ") << message;
  }
};

} // namespace

void mlir::attn::registerTestAttnBuildersPass() {
  PassRegistration<TestAttnBuildersPass>();
}
