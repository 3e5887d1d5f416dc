//===- TileBounds.cpp - Run-time tile classes of data-dependent masks ----===//

#include "attnc/Analysis/TileBounds.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdint>
#include <limits>

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Strips the sign/zero extensions the front end puts around positions.
Value stripExt(Value v) {
  while (true) {
    if (auto e = v.getDefiningOp<arith::ExtSIOp>())
      v = e.getIn();
    else if (auto e = v.getDefiningOp<arith::ExtUIOp>())
      v = e.getIn();
    else
      return v;
  }
}

/// The abstract value of one SSA value: an interval of i64 values (booleans
/// as 0/1), or unknown. `uniform`: computed from b, h and invariants only,
/// so lo == hi is the value itself.
struct Abs {
  Value lo, hi;
  bool known = false;
  bool uniform = false;
};

class TileBoundsBuilder {
public:
  TileBoundsBuilder(OpBuilder &b, Location loc, Block &block, IRMapping &outer, Value bIdx,
                    Value hIdx, IntervalValues q, IntervalValues k, LoadRangeFn loadRange,
                    UniformLoadFn uniformLoad)
      : b(b), loc(loc), block(block), outer(outer), loadRange(loadRange), uniformLoad(uniformLoad) {
    Value b64 = ext(bIdx), h64 = ext(hIdx);
    vals[block.getArgument(0)] = {b64, b64, true, true};
    vals[block.getArgument(1)] = {h64, h64, true, true};
    vals[block.getArgument(2)] = {q.lo, q.hi, true, false};
    vals[block.getArgument(3)] = {k.lo, k.hi, true, false};
    rangeLoads = tileRangeLoads(block);
  }

  TileKeepBounds run(Value mask) {
    for (Operation &op : block) {
      if (isa<YieldOp>(op))
        break;
      if (op.getNumResults() != 1)
        continue;
      vals[op.getResult(0)] = visit(op);
    }
    Abs m = get(mask);
    Value one = c(1);
    return {cmp(arith::CmpIPredicate::eq, m.hi, one), cmp(arith::CmpIPredicate::eq, m.lo, one)};
  }

private:
  // ---- IR helpers ---------------------------------------------------------
  Value c(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); }
  Value ext(Value v) {
    return v.getType().isInteger(64) ? v : arith::ExtSIOp::create(b, loc, b.getI64Type(), v);
  }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value sel(Value cond, Value x, Value y) { return arith::SelectOp::create(b, loc, cond, x, y); }
  Value min(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value max(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value and1(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value or1(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value toI64(Value i1) { return arith::ExtUIOp::create(b, loc, b.getI64Type(), i1); }

  Abs unknown() { return {}; }
  Abs boolRange(Value mayFalse, Value mayTrue) {
    // [lo, hi] = [!mayFalse, mayTrue]
    Value t = arith::ConstantIntOp::create(b, loc, 1, 1);
    return {toI64(arith::XOrIOp::create(b, loc, mayFalse, t)), toI64(mayTrue), true, false};
  }
  Abs anyBool() { return {c(0), c(1), true, false}; }
  Abs exact(Value v, bool uniform) { return {v, v, true, uniform}; }

  /// Width of an integer type the analysis tracks exactly in i64 (booleans
  /// and up to 32 bits); 0 otherwise.
  static unsigned trackedWidth(Type t) {
    auto it = dyn_cast<IntegerType>(t);
    return it && it.getWidth() <= 32 ? it.getWidth() : 0;
  }

  Abs get(Value v) {
    if (auto it = vals.find(v); it != vals.end())
      return it->second;
    if (Value m = outer.lookupOrNull(v)) {
      if (isa<IntegerType>(m.getType()) && m.getType().getIntOrFloatBitWidth() <= 64) {
        Value e = m.getType().isInteger(1) ? toI64(m) : ext(m);
        return exact(e, true);
      }
    }
    return unknown();
  }

  /// A result of width `w` that may have wrapped: the full range of the
  /// type unless [lo, hi] fits it.
  Abs wrapCheck(Abs r, unsigned w) {
    if (w == 1 || w > 32)
      return w == 1 ? anyBool() : unknown();
    int64_t tmin = -(int64_t(1) << (w - 1)), tmax = (int64_t(1) << (w - 1)) - 1;
    Value fits = and1(cmp(arith::CmpIPredicate::sge, r.lo, c(tmin)),
                      cmp(arith::CmpIPredicate::sle, r.hi, c(tmax)));
    return {sel(fits, r.lo, c(tmin)), sel(fits, r.hi, c(tmax)), true, r.uniform};
  }

  /// [lo, hi] op positive constant divisor, monotone non-decreasing in x.
  template <typename OpT> Abs monotoneDiv(Abs x, int64_t d) {
    Value dv = c(d);
    return {OpT::create(b, loc, x.lo, dv), OpT::create(b, loc, x.hi, dv), true, x.uniform};
  }

  std::optional<int64_t> constOf(Value v) {
    Abs a = get(v);
    if (!a.known)
      return std::nullopt;
    if (auto ci = a.lo.getDefiningOp<arith::ConstantIntOp>())
      if (a.lo == a.hi)
        return ci.value();
    // A constant of the kernel body (outside the region): its interval is
    // an extension of the clone, so read the original.
    if (auto cst = v.getDefiningOp<arith::ConstantIntOp>())
      return cst.value();
    return std::nullopt;
  }

  Abs compare(arith::CmpIPredicate p, Abs x, Abs y) {
    using P = arith::CmpIPredicate;
    if (!x.known || !y.known)
      return anyBool();
    auto lt = [&](Value a, Value bb) { return cmp(P::slt, a, bb); };
    auto le = [&](Value a, Value bb) { return cmp(P::sle, a, bb); };
    Value mayT, mayF;
    switch (p) {
    case P::slt:
    case P::ult:
      mayT = lt(x.lo, y.hi), mayF = le(y.lo, x.hi);
      break;
    case P::sle:
    case P::ule:
      mayT = le(x.lo, y.hi), mayF = lt(y.lo, x.hi);
      break;
    case P::sgt:
    case P::ugt:
      mayT = lt(y.lo, x.hi), mayF = le(x.lo, y.hi);
      break;
    case P::sge:
    case P::uge:
      mayT = le(y.lo, x.hi), mayF = lt(x.lo, y.hi);
      break;
    case P::eq:
    case P::ne: {
      Value overlap = and1(le(x.lo, y.hi), le(y.lo, x.hi));
      Value allSame =
          and1(and1(cmp(P::eq, x.lo, x.hi), cmp(P::eq, y.lo, y.hi)), cmp(P::eq, x.lo, y.lo));
      Value t = arith::ConstantIntOp::create(b, loc, 1, 1);
      Value notSame = arith::XOrIOp::create(b, loc, allSame, t);
      mayT = p == P::eq ? overlap : notSame;
      mayF = p == P::eq ? notSame : overlap;
      break;
    }
    }
    Abs r = boolRange(mayF, mayT);
    bool unsignedPred = p == P::ult || p == P::ule || p == P::ugt || p == P::uge;
    if (unsignedPred) {
      // The signed reading is the unsigned one only for non-negative sides.
      Value nonNeg = and1(cmp(P::sge, x.lo, c(0)), cmp(P::sge, y.lo, c(0)));
      r = {sel(nonNeg, r.lo, c(0)), sel(nonNeg, r.hi, c(1)), true, false};
    }
    r.uniform = x.uniform && y.uniform;
    return r;
  }

  Abs visit(Operation &op) {
    Type resultType = op.getResult(0).getType();
    unsigned w = trackedWidth(resultType);
    auto operand = [&](unsigned i) { return get(op.getOperand(i)); };
    auto fallback = [&]() { return w == 1 ? anyBool() : unknown(); };

    if (auto cst = dyn_cast<arith::ConstantOp>(op)) {
      auto ia = dyn_cast<IntegerAttr>(cst.getValue());
      if (!ia || !w)
        return unknown();
      int64_t v = w == 1 ? (ia.getValue().isZero() ? 0 : 1) : ia.getValue().getSExtValue();
      return exact(c(v), true);
    }
    if (auto load = dyn_cast<LoadOp>(op))
      return visitLoad(load, w);
    if (auto cmpOp = dyn_cast<arith::CmpIOp>(op))
      return compare(cmpOp.getPredicate(), operand(0), operand(1));
    if (isa<arith::ExtUIOp>(op)) {
      Abs x = operand(0);
      // Zero extension keeps booleans 0/1 and non-negative values.
      if (x.known && op.getOperand(0).getType().isInteger(1))
        return x;
      if (x.known && w && w <= 32) {
        Value nonNeg = cmp(arith::CmpIPredicate::sge, x.lo, c(0));
        unsigned iw = op.getOperand(0).getType().getIntOrFloatBitWidth();
        int64_t umax = (int64_t(1) << iw) - 1;
        return {sel(nonNeg, x.lo, c(0)), sel(nonNeg, x.hi, c(umax)), true, x.uniform};
      }
      return fallback();
    }
    if (isa<arith::ExtSIOp>(op)) {
      Abs x = operand(0);
      if (!x.known)
        return fallback();
      if (op.getOperand(0).getType().isInteger(1)) // true -> -1
        return {sub(c(0), x.hi), sub(c(0), x.lo), true, x.uniform};
      return x;
    }
    if (isa<arith::TruncIOp>(op)) {
      Abs x = operand(0);
      if (!x.known || !w)
        return fallback();
      if (w == 1) // the low bit
        return x.uniform ? exact(arith::AndIOp::create(b, loc, x.lo, c(1)), true) : anyBool();
      return wrapCheck(x, w);
    }
    if (!w) // i64 and float arithmetic: not tracked
      return unknown();
    if (isa<arith::AddIOp, arith::SubIOp, arith::MulIOp>(op) && w > 1) {
      Abs x = operand(0), y = operand(1);
      if (!x.known || !y.known)
        return unknown();
      Abs r;
      r.known = true;
      r.uniform = x.uniform && y.uniform;
      if (isa<arith::AddIOp>(op)) {
        r.lo = add(x.lo, y.lo), r.hi = add(x.hi, y.hi);
      } else if (isa<arith::SubIOp>(op)) {
        r.lo = sub(x.lo, y.hi), r.hi = sub(x.hi, y.lo);
      } else {
        Value p1 = mul(x.lo, y.lo), p2 = mul(x.lo, y.hi), p3 = mul(x.hi, y.lo),
              p4 = mul(x.hi, y.hi);
        r.lo = min(min(p1, p2), min(p3, p4));
        r.hi = max(max(p1, p2), max(p3, p4));
      }
      return wrapCheck(r, w);
    }
    if (isa<arith::DivSIOp, arith::FloorDivSIOp, arith::CeilDivSIOp, arith::RemSIOp>(op) && w > 1) {
      Abs x = operand(0);
      std::optional<int64_t> d = constOf(op.getOperand(1));
      if (!x.known || !d || *d <= 0)
        return unknown();
      if (isa<arith::DivSIOp>(op))
        return monotoneDiv<arith::DivSIOp>(x, *d);
      if (isa<arith::FloorDivSIOp>(op))
        return monotoneDiv<arith::FloorDivSIOp>(x, *d);
      if (isa<arith::CeilDivSIOp>(op))
        return monotoneDiv<arith::CeilDivSIOp>(x, *d);
      // remsi: exact within one period of non-negative values, else the
      // sign-dependent range.
      Value dv = c(*d);
      Value nonNeg = cmp(arith::CmpIPredicate::sge, x.lo, c(0));
      Value rlo = arith::RemSIOp::create(b, loc, x.lo, dv),
            rhi = arith::RemSIOp::create(b, loc, x.hi, dv);
      Value onePeriod = and1(cmp(arith::CmpIPredicate::slt, sub(x.hi, x.lo), dv),
                             cmp(arith::CmpIPredicate::sle, rlo, rhi));
      Value exactCase = and1(nonNeg, onePeriod);
      Value lo = sel(exactCase, rlo, sel(nonNeg, c(0), c(1 - *d)));
      Value hi =
          sel(exactCase, rhi, sel(cmp(arith::CmpIPredicate::sle, x.hi, c(0)), c(0), c(*d - 1)));
      return {lo, hi, true, x.uniform};
    }
    if (isa<arith::MinSIOp, arith::MaxSIOp>(op) && w > 1) {
      Abs x = operand(0), y = operand(1);
      if (!x.known || !y.known)
        return unknown();
      bool isMin = isa<arith::MinSIOp>(op);
      return {isMin ? min(x.lo, y.lo) : max(x.lo, y.lo), isMin ? min(x.hi, y.hi) : max(x.hi, y.hi),
              true, x.uniform && y.uniform};
    }
    if (isa<math::AbsIOp>(op) && w > 1) {
      Abs x = operand(0);
      if (!x.known)
        return unknown();
      Value nx = sub(c(0), x.hi), nlo = sub(c(0), x.lo);
      Value lo = sel(cmp(arith::CmpIPredicate::sge, x.lo, c(0)), x.lo,
                     sel(cmp(arith::CmpIPredicate::sle, x.hi, c(0)), nx, c(0)));
      Value hi = max(x.hi, nlo);
      // |INT_MIN| wraps to INT_MIN in the reference: wrapCheck covers it.
      return wrapCheck({lo, hi, true, x.uniform}, w);
    }
    if (isa<arith::AndIOp, arith::OrIOp, arith::XOrIOp>(op) && w == 1) {
      Abs x = operand(0), y = operand(1);
      if (isa<arith::AndIOp>(op))
        return {and1(x.lo, y.lo), and1(x.hi, y.hi), true, x.uniform && y.uniform};
      if (isa<arith::OrIOp>(op))
        return {or1(x.lo, y.lo), or1(x.hi, y.hi), true, x.uniform && y.uniform};
      // xor: may be 1 if one side may be 1 while the other may be 0.
      auto may1 = [&](Abs a) { return cmp(arith::CmpIPredicate::eq, a.hi, c(1)); };
      auto may0 = [&](Abs a) { return cmp(arith::CmpIPredicate::eq, a.lo, c(0)); };
      Value mayT = or1(and1(may1(x), may0(y)), and1(may0(x), may1(y)));
      Value mayF = or1(and1(may0(x), may0(y)), and1(may1(x), may1(y)));
      Abs r = boolRange(mayF, mayT);
      r.uniform = x.uniform && y.uniform;
      return r;
    }
    if (auto s = dyn_cast<arith::SelectOp>(op)) {
      Abs cnd = get(s.getCondition()), x = get(s.getTrueValue()), y = get(s.getFalseValue());
      if (!x.known || !y.known)
        return fallback();
      Value onlyT = cmp(arith::CmpIPredicate::eq, cnd.lo, c(1));
      Value onlyF = cmp(arith::CmpIPredicate::eq, cnd.hi, c(0));
      Value lo = sel(onlyT, x.lo, sel(onlyF, y.lo, min(x.lo, y.lo)));
      Value hi = sel(onlyT, x.hi, sel(onlyF, y.hi, max(x.hi, y.hi)));
      return {lo, hi, true, cnd.uniform && x.uniform && y.uniform};
    }
    return fallback();
  }

  Abs visitLoad(LoadOp load, unsigned w) {
    Type elem = load.getResult().getType();
    bool tracked = elem.isInteger(1) || elem.isInteger(32) || elem.isInteger(64);
    if (!tracked)
      return unknown();
    for (auto [i, rl] : llvm::enumerate(rangeLoads))
      if (rl.load == load) {
        IntervalValues r = loadRange(i);
        return {r.lo, r.hi, true, false};
      }
    SmallVector<Value> indices;
    bool uniform = true;
    for (Value idx : load.getIndices()) {
      Abs a = get(idx);
      if (!a.known)
        return w == 1 ? anyBool() : unknown();
      uniform &= a.uniform;
      indices.push_back(a.lo);
    }
    if (uniform) {
      Value v = uniformLoad(load, indices);
      if (!v)
        return w == 1 ? anyBool() : unknown();
      return exact(v.getType().isInteger(1) ? toI64(v) : ext(v), true);
    }
    if (elem.isInteger(64))
      return unknown();
    return visitPointLoad(load, w);
  }

  /// A read whose every index is a single value over the tile, known only
  /// at run time: a block mask `blocks[b, h, q / 128, k / 128]` on a tile
  /// inside one block. Then the element itself (its index is one that the
  /// mask reads at every (q, k) of the tile, so it is in bounds); otherwise
  /// the element type's range. The backend's read is built inside the
  /// branch, at this builder's insertion point.
  Abs visitPointLoad(LoadOp load, unsigned w) {
    Value point = arith::ConstantIntOp::create(b, loc, 1, 1);
    SmallVector<Value> indices;
    for (Value idx : load.getIndices()) {
      Abs a = get(idx);
      point = and1(point, cmp(arith::CmpIPredicate::eq, a.lo, a.hi));
      indices.push_back(a.lo);
    }
    Type i64 = b.getI64Type();
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{i64, i64}, point, /*withElseRegion=*/true);
    Value v;
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      v = uniformLoad(load, indices);
      if (v) {
        Value e = v.getType().isInteger(1) ? toI64(v) : ext(v);
        scf::YieldOp::create(b, loc, ValueRange{e, e});
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        int64_t lo = w == 1 ? 0 : std::numeric_limits<int32_t>::min();
        int64_t hi = w == 1 ? 1 : std::numeric_limits<int32_t>::max();
        scf::YieldOp::create(b, loc, ValueRange{c(lo), c(hi)});
      }
    }
    if (!v) {
      ifOp.erase();
      return w == 1 ? anyBool() : unknown();
    }
    return {ifOp.getResult(0), ifOp.getResult(1), true, false};
  }

  OpBuilder &b;
  Location loc;
  Block &block;
  IRMapping &outer;
  LoadRangeFn loadRange;
  UniformLoadFn uniformLoad;
  SmallVector<RangeLoad> rangeLoads;
  llvm::DenseMap<Value, Abs> vals;
};

} // namespace

bool mlir::attn::maskIsAlwaysTrue(AttentionOp attention) {
  auto c = attention.getMaskValue().getDefiningOp<arith::ConstantOp>();
  auto ia = c ? dyn_cast<IntegerAttr>(c.getValue()) : IntegerAttr();
  return ia && ia.getValue().isOne();
}

bool mlir::attn::needsRunTimeTileClasses(AttentionOp attention) {
  if (maskIsAlwaysTrue(attention))
    return false;
  bool nonConvex = false;
  attention.getMaskBlock().walk([&](Operation *op) {
    // Float contents bound nothing (a mask reading only those stays PARTIAL
    // wherever they matter, so classes would cost without deciding).
    if (auto load = dyn_cast<LoadOp>(op))
      nonConvex |= load.getResult().getType().isInteger();
    if (isa<arith::DivSIOp, arith::DivUIOp, arith::FloorDivSIOp, arith::CeilDivSIOp,
            arith::RemSIOp, arith::RemUIOp>(op))
      nonConvex = true;
  });
  return nonConvex;
}

SmallVector<RangeLoad> mlir::attn::tileRangeLoads(Block &maskBlock) {
  SmallVector<RangeLoad> out;
  Value q = maskBlock.getArgument(2), k = maskBlock.getArgument(3);
  maskBlock.walk([&](LoadOp load) {
    if (load.getIndices().size() != 1)
      return;
    Value idx = stripExt(load.getIndices()[0]);
    Type elem = load.getResult().getType();
    if (!(elem.isInteger(1) || elem.isInteger(32) || elem.isInteger(64)))
      return;
    if (idx == q || idx == k)
      out.push_back({load, idx == k});
  });
  return out;
}

TileKeepBounds mlir::attn::buildTileKeepBounds(OpBuilder &b, Location loc, Block &maskBlock,
                                               Value maskValue, IRMapping &outer, Value bIdx,
                                               Value hIdx, IntervalValues q, IntervalValues k,
                                               LoadRangeFn loadRange, UniformLoadFn uniformLoad) {
  return TileBoundsBuilder(b, loc, maskBlock, outer, bIdx, hIdx, q, k, loadRange, uniformLoad)
      .run(maskValue);
}
