//===- KvRange.cpp - Keys a mask may admit for a block of rows -----------===//

#include "attnc/Analysis/KvRange.h"

#include "mlir/Dialect/Arith/IR/Arith.h"

#include <optional>

using namespace mlir;
using namespace mlir::attn;

namespace {

class KvRangeBuilder {
public:
  /// `inner`: build the subset of keys the mask admits for *every* row
  /// instead of the superset of keys it admits for *some* row.
  KvRangeBuilder(OpBuilder &b, Location loc, Block &maskBlock, IRMapping &outer, Value qmin,
                 Value qmax, Value nk, bool inner = false)
      : b(b), loc(loc), qArg(maskBlock.getArgument(2)), kArg(maskBlock.getArgument(3)),
        outer(outer), qmin(qmin), qmax(qmax), nk(nk), inner(inner) {}

  using Range = KvRange;

  Range build(Value mask) {
    if (auto c = mask.getDefiningOp<arith::ConstantOp>()) {
      if (auto ia = dyn_cast<IntegerAttr>(c.getValue()); ia && ia.getValue().isZero())
        return empty();
      return full();
    }
    if (auto andOp = mask.getDefiningOp<arith::AndIOp>()) {
      Range x = build(andOp.getLhs()), y = build(andOp.getRhs());
      if (!x.bounded)
        return y;
      if (!y.bounded)
        return x;
      return {arith::MaxSIOp::create(b, loc, x.lo, y.lo),
              arith::MinSIOp::create(b, loc, x.hi, y.hi), true};
    }
    if (auto orOp = mask.getDefiningOp<arith::OrIOp>()) {
      Range x = build(orOp.getLhs()), y = build(orOp.getRhs());
      if (inner) {
        // The union of two intervals is not an interval; either one is a
        // sound subset. Prefer one the analysis understood.
        if (!x.bounded)
          return x;
        if (!y.bounded)
          return y;
        return isEmptyConst(x) ? y : x;
      }
      if (!x.bounded || !y.bounded)
        return full();
      return {arith::MinSIOp::create(b, loc, x.lo, y.lo),
              arith::MaxSIOp::create(b, loc, x.hi, y.hi), true};
    }
    if (auto cmp = mask.getDefiningOp<arith::CmpIOp>())
      return leaf(cmp);
    return unknown();
  }

private:
  /// coeffQ*q + coeffK*k + c (c: an i64 invariant, or null for 0).
  struct Lin {
    int coeffQ = 0, coeffK = 0;
    Value c;
  };

  Range full() { return {i64(0), nk, false}; }
  /// A leaf the rule does not understand: any key for the superset, none for
  /// the inner range.
  Range unknown() { return inner ? empty() : full(); }
  Range empty() { return {i64(0), i64(0), true}; }
  static bool isEmptyConst(const Range &r) {
    auto c = r.hi.getDefiningOp<arith::ConstantIntOp>();
    return c && c.value() == 0;
  }
  Value i64(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); }

  Value strip(Value v) {
    while (auto ext = v.getDefiningOp<arith::ExtSIOp>())
      v = ext.getIn();
    return v;
  }

  std::optional<Lin> term(Value v) {
    v = strip(v);
    if (v == qArg)
      return Lin{1, 0, {}};
    if (v == kArg)
      return Lin{0, 1, {}};
    if (auto sub = v.getDefiningOp<arith::SubIOp>()) {
      Value l = strip(sub.getLhs()), r = strip(sub.getRhs());
      if (l == qArg && r == kArg)
        return Lin{1, -1, {}};
      if (l == kArg && r == qArg)
        return Lin{-1, 1, {}};
      return std::nullopt;
    }
    if (!isa<IntegerType>(v.getType()))
      return std::nullopt;
    Value inv;
    if (auto c = v.getDefiningOp<arith::ConstantOp>()) {
      auto ia = dyn_cast<IntegerAttr>(c.getValue());
      if (!ia)
        return std::nullopt;
      inv = i64(ia.getValue().getSExtValue());
    } else if (Value m = outer.lookupOrNull(v)) {
      inv = m.getType().isInteger(64) ? m : arith::ExtSIOp::create(b, loc, b.getI64Type(), m);
    } else {
      return std::nullopt;
    }
    return Lin{0, 0, inv};
  }

  Range leaf(arith::CmpIOp cmp) {
    using P = arith::CmpIPredicate;
    P pred = cmp.getPredicate();
    if (pred != P::slt && pred != P::sle && pred != P::sgt && pred != P::sge)
      return unknown();
    auto lhs = term(cmp.getLhs()), rhs = term(cmp.getRhs());
    if (!lhs || !rhs || (lhs->c && rhs->c))
      return unknown();
    // e = lhs - rhs; normalize `e pred 0` to `sign*e + t < 0`.
    int sign = (pred == P::slt || pred == P::sle) ? 1 : -1;
    int64_t t = (pred == P::slt || pred == P::sgt) ? 0 : -1;
    int a = sign * (lhs->coeffQ - rhs->coeffQ);
    int bk = sign * (lhs->coeffK - rhs->coeffK);
    if (bk == 0 || a < -1 || a > 1)
      return unknown();
    // g = sign*(c_lhs - c_rhs) + t.
    Value g = i64(t);
    if (lhs->c)
      g = sign > 0 ? arith::AddIOp::create(b, loc, g, lhs->c).getResult()
                   : arith::SubIOp::create(b, loc, g, lhs->c).getResult();
    if (rhs->c)
      g = sign > 0 ? arith::SubIOp::create(b, loc, g, rhs->c).getResult()
                   : arith::AddIOp::create(b, loc, g, rhs->c).getResult();
    // The superset takes each bound at its loosest row, the inner range at
    // its tightest.
    Value qLoose = inner ? qmin : qmax, qTight = inner ? qmax : qmin;
    if (bk == 1) {
      // k < -a*q - g: loosest at the q maximizing -a*q.
      Value bound =
          a == -1  ? arith::SubIOp::create(b, loc, qLoose, g).getResult()
          : a == 0 ? arith::SubIOp::create(b, loc, i64(0), g).getResult()
                   : arith::SubIOp::create(b, loc, arith::SubIOp::create(b, loc, i64(0), qTight), g)
                         .getResult();
      return {i64(0), bound, true};
    }
    // -k + a*q + g < 0  <=>  k >= a*q + g + 1: loosest at the q minimizing a*q.
    Value base = a == 1   ? qTight
                 : a == 0 ? i64(0)
                          : arith::SubIOp::create(b, loc, i64(0), qLoose).getResult();
    Value bound = arith::AddIOp::create(b, loc, arith::AddIOp::create(b, loc, base, g), i64(1));
    return {bound, nk, true};
  }

  OpBuilder &b;
  Location loc;
  Value qArg, kArg;
  IRMapping &outer;
  Value qmin, qmax, nk;
  bool inner;
};

} // namespace

KvRange mlir::attn::buildKvRange(OpBuilder &b, Location loc, Block &maskBlock, Value maskValue,
                                 IRMapping &outer, Value qmin, Value qmax, Value nk) {
  return KvRangeBuilder(b, loc, maskBlock, outer, qmin, qmax, nk).build(maskValue);
}

KvRange mlir::attn::buildKvInnerRange(OpBuilder &b, Location loc, Block &maskBlock, Value maskValue,
                                      IRMapping &outer, Value qmin, Value qmax, Value nk) {
  return KvRangeBuilder(b, loc, maskBlock, outer, qmin, qmax, nk,
                        /*inner=*/true)
      .build(maskValue);
}
