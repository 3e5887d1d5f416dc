//===- TileClasses.cpp - FULL / EMPTY / PARTIAL tiles of a mask ----------===//

#include "attnc/Analysis/TileClasses.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/DenseMap.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::attn;

char mlir::attn::toChar(TileClass c) {
  switch (c) {
  case TileClass::Empty:
    return 'E';
  case TileClass::Full:
    return 'F';
  case TileClass::Partial:
    return 'P';
  }
  return '?';
}

namespace {

using i128 = __int128;

/// The ops of the mask, compiled to a list in operand-first order.
enum class Kind {
  Var,     // a = 0..3: b, h, q, k
  Const,   // a = value (booleans: 0 or 1)
  Known,   // a scalar parameter with a known value a
  Unknown, // anything of its type
  Add,
  Sub,
  Mul,
  FloorDiv,
  CeilDiv,
  DivS,     // truncating
  RemS,     // truncating
  FloorMod, // the select/remsi idiom of the DSL's `%`
  Min,
  Max,
  Abs,
  Cmp, // a = arith::CmpIPredicate
  And,
  Or,
  Xor,
  Select,
  ExtS,
  ExtU,
  Trunc,
};

struct Node {
  Kind kind;
  unsigned width; // 1: a boolean; 0: not an integer (floats, tensors)
  int64_t a = 0;
  int ops[3] = {-1, -1, -1};
};

/// An abstract value. Integers: [lo, hi] within their type, and, when `aff`,
/// the exact value c[0] b + c[1] h + c[2] q + c[3] k + c[4] (no wrap-around
/// anywhere in the box). Booleans: which of false / true it may be.
struct AV {
  int64_t lo = 0, hi = 0;
  bool canF = true, canT = true;
  bool aff = false;
  int64_t c[5] = {0, 0, 0, 0, 0};
};

int64_t typeMin(unsigned w) { return w >= 64 ? INT64_MIN : -(int64_t(1) << (w - 1)); }
int64_t typeMax(unsigned w) { return w >= 64 ? INT64_MAX : (int64_t(1) << (w - 1)) - 1; }

i128 floorDiv(i128 a, i128 b) {
  i128 q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    --q;
  return q;
}
i128 ceilDiv(i128 a, i128 b) { return -floorDiv(-a, b); }

} // namespace

struct TileClassifier::Impl {
  std::vector<Node> nodes;
  int root = -1;
  std::vector<std::string> tensorReads, unmodeled, unknownScalars;
  llvm::DenseMap<Value, int> ids;
  Block *maskBlock = nullptr;
  const llvm::StringMap<int64_t> *known = nullptr;

  // Box of the current evaluation, inclusive bounds of b, h, q, k.
  mutable int64_t vlo[4], vhi[4];

  static unsigned widthOf(Type t) {
    if (auto it = dyn_cast<IntegerType>(t))
      return it.getWidth() <= 64 ? it.getWidth() : 0;
    return 0;
  }

  static void addOnce(std::vector<std::string> &list, StringRef s) {
    if (std::find(list.begin(), list.end(), s) == list.end())
      list.push_back(s.str());
  }

  static std::string argName(BlockArgument arg) {
    if (auto fn = dyn_cast_or_null<FunctionOpInterface>(arg.getOwner()->getParentOp()))
      if (auto name = fn.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "attn.name"))
        return name.str();
    return "#" + std::to_string(arg.getArgNumber());
  }

  int add(Node n) {
    nodes.push_back(n);
    return int(nodes.size()) - 1;
  }
  int unknown(Value v) { return add({Kind::Unknown, widthOf(v.getType())}); }
  int unmodeledOp(Operation *op, Value v) {
    addOnce(unmodeled, op->getName().getStringRef());
    return unknown(v);
  }

  static bool isConstInt(Value v, int64_t &out) {
    APInt ap;
    if (!matchPattern(v, m_ConstantInt(&ap)) || ap.getBitWidth() > 64)
      return false;
    out = ap.getSExtValue();
    return true;
  }

  /// `cond` is `r < 0` (neg) or `r > 0` (!neg), possibly and-ed with `r != 0`.
  static bool isSignTest(Value cond, Value r, bool neg) {
    int64_t z;
    auto cmpIs = [&](Value c, arith::CmpIPredicate p) {
      auto cmp = c.getDefiningOp<arith::CmpIOp>();
      return cmp && cmp.getPredicate() == p && cmp.getLhs() == r && isConstInt(cmp.getRhs(), z) &&
             z == 0;
    };
    using P = arith::CmpIPredicate;
    auto isTest = [&](Value c, bool withNe) {
      if (neg)
        return cmpIs(c, P::slt);
      return cmpIs(c, P::sgt) || (withNe && cmpIs(c, P::sge));
    };
    if (isTest(cond, false))
      return true;
    if (auto andOp = cond.getDefiningOp<arith::AndIOp>()) {
      Value x = andOp.getLhs(), y = andOp.getRhs();
      return (cmpIs(x, P::ne) && isTest(y, true)) || (cmpIs(y, P::ne) && isTest(x, true));
    }
    return false;
  }

  /// select(r < 0, r + c, r) with r = remsi(x, c), c > 0 (and the mirror for
  /// c < 0): floor modulo, as MLIRGen emits the DSL's `%`.
  bool matchFloorMod(arith::SelectOp sel, Value &x, int64_t &c) {
    auto rem = sel.getFalseValue().getDefiningOp<arith::RemSIOp>();
    auto addOp = sel.getTrueValue().getDefiningOp<arith::AddIOp>();
    if (!rem || !addOp || !isConstInt(rem.getRhs(), c) || c == 0)
      return false;
    Value r = rem.getResult();
    Value other = addOp.getLhs() == r   ? addOp.getRhs()
                  : addOp.getRhs() == r ? addOp.getLhs()
                                        : Value();
    int64_t c2;
    if (!other || !isConstInt(other, c2) || c2 != c)
      return false;
    if (!isSignTest(sel.getCondition(), r, /*neg=*/c > 0))
      return false;
    x = rem.getLhs();
    return true;
  }

  int node(Value v) {
    auto it = ids.find(v);
    if (it != ids.end())
      return it->second;
    int id = build(v);
    ids[v] = id;
    return id;
  }

  int build(Value v) {
    unsigned w = widthOf(v.getType());
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      if (arg.getOwner() == maskBlock && arg.getArgNumber() < 4)
        return add({Kind::Var, w, arg.getArgNumber()});
      std::string name = argName(arg);
      if (isa<TensorType>(v.getType()))
        return unknown(v);
      if (w) {
        auto k = known->find(name);
        if (k != known->end()) {
          int64_t val = k->second;
          if (val >= typeMin(w) && val <= typeMax(w))
            return add({Kind::Known, w, w == 1 ? (val != 0) : val});
        }
      }
      addOnce(unknownScalars, name);
      return unknown(v);
    }
    Operation *op = v.getDefiningOp();
    if (!w)
      return unmodeledOp(op, v); // floats: not modeled
    int64_t cst;
    if (isConstInt(v, cst) && op->getNumOperands() == 0)
      return add({Kind::Const, w, w == 1 ? (cst != 0) : cst});
    if (auto load = dyn_cast<LoadOp>(op)) {
      Value t = load->getOperand(0);
      if (auto arg = dyn_cast<BlockArgument>(t))
        addOnce(tensorReads, argName(arg));
      else
        addOnce(tensorReads, "<tensor>");
      return unknown(v);
    }
    auto bin = [&](Kind k) {
      bool logical = k == Kind::And || k == Kind::Or || k == Kind::Xor;
      if ((w == 1) != logical)
        return unmodeledOp(op, v);
      int a = node(op->getOperand(0)), b = node(op->getOperand(1));
      Node n{k, w};
      n.ops[0] = a;
      n.ops[1] = b;
      return add(n);
    };
    auto un = [&](Kind k) {
      if (w == 1 && k != Kind::Trunc)
        return unmodeledOp(op, v);
      int a = node(op->getOperand(0));
      Node n{k, w};
      n.ops[0] = a;
      return add(n);
    };
    if (isa<arith::AddIOp>(op))
      return bin(Kind::Add);
    if (isa<arith::SubIOp>(op))
      return bin(Kind::Sub);
    if (isa<arith::MulIOp>(op))
      return bin(Kind::Mul);
    if (isa<arith::FloorDivSIOp>(op))
      return bin(Kind::FloorDiv);
    if (isa<arith::CeilDivSIOp>(op))
      return bin(Kind::CeilDiv);
    if (isa<arith::DivSIOp>(op))
      return bin(Kind::DivS);
    if (isa<arith::RemSIOp>(op))
      return bin(Kind::RemS);
    if (isa<arith::MinSIOp>(op))
      return bin(Kind::Min);
    if (isa<arith::MaxSIOp>(op))
      return bin(Kind::Max);
    if (isa<math::AbsIOp>(op))
      return un(Kind::Abs);
    if (isa<arith::AndIOp>(op))
      return w == 1 ? bin(Kind::And) : unmodeledOp(op, v);
    if (isa<arith::OrIOp>(op))
      return w == 1 ? bin(Kind::Or) : unmodeledOp(op, v);
    if (isa<arith::XOrIOp>(op))
      return w == 1 ? bin(Kind::Xor) : unmodeledOp(op, v);
    if (isa<arith::ExtSIOp>(op) && widthOf(op->getOperand(0).getType()))
      return un(Kind::ExtS);
    if (isa<arith::ExtUIOp>(op) && widthOf(op->getOperand(0).getType()))
      return un(Kind::ExtU);
    if (isa<arith::TruncIOp>(op) && widthOf(op->getOperand(0).getType()))
      return un(Kind::Trunc);
    if (auto cmp = dyn_cast<arith::CmpIOp>(op)) {
      if (!widthOf(cmp.getLhs().getType()))
        return unmodeledOp(op, v);
      int a = node(cmp.getLhs()), b = node(cmp.getRhs());
      Node n{Kind::Cmp, 1, int64_t(cmp.getPredicate())};
      n.ops[0] = a;
      n.ops[1] = b;
      return add(n);
    }
    if (auto sel = dyn_cast<arith::SelectOp>(op)) {
      Value x;
      int64_t c;
      if (matchFloorMod(sel, x, c)) {
        Node n{Kind::FloorMod, w, c};
        n.ops[0] = node(x);
        return add(n);
      }
      int cnd = node(sel.getCondition()), t = node(sel.getTrueValue()),
          f = node(sel.getFalseValue());
      Node n{Kind::Select, w};
      n.ops[0] = cnd;
      n.ops[1] = t;
      n.ops[2] = f;
      return add(n);
    }
    return unmodeledOp(op, v);
  }

  //===--------------------------------------------------------------------===//
  // Evaluation
  //===--------------------------------------------------------------------===//

  AV full(unsigned w) const {
    AV r;
    if (w > 1) {
      r.lo = typeMin(w);
      r.hi = typeMax(w);
    }
    return r;
  }
  static AV boolean(bool canF, bool canT) {
    AV r;
    r.canF = canF;
    r.canT = canT;
    return r;
  }

  /// The exact range of an affine form over the box.
  void affRange(const i128 *c, i128 &lo, i128 &hi) const {
    lo = hi = c[4];
    for (int i = 0; i < 4; ++i) {
      if (c[i] >= 0) {
        lo += c[i] * vlo[i];
        hi += c[i] * vhi[i];
      } else {
        lo += c[i] * vhi[i];
        hi += c[i] * vlo[i];
      }
    }
  }

  /// An integer of width w whose exact value lies in [lo, hi] (computed
  /// without wrap-around) and equals the affine form `c` if given. When the
  /// exact values leave the type, the op wrapped somewhere: anything.
  AV mk(unsigned w, i128 lo, i128 hi, const i128 *c = nullptr) const {
    bool affOk = false;
    if (c) {
      affOk = true;
      for (int i = 0; i < 5; ++i)
        affOk &= c[i] >= INT64_MIN && c[i] <= INT64_MAX;
      if (affOk) {
        i128 alo, ahi;
        affRange(c, alo, ahi);
        lo = std::max(lo, alo);
        hi = std::min(hi, ahi);
      }
    }
    if (lo < typeMin(w) || hi > typeMax(w))
      return full(w);
    AV r;
    r.lo = int64_t(lo);
    r.hi = int64_t(hi);
    r.aff = affOk;
    if (affOk)
      for (int i = 0; i < 5; ++i)
        r.c[i] = int64_t(c[i]);
    return r;
  }

  /// a * x + b * y as an affine form when both have one (b may be 0).
  static bool combine(const AV &x, i128 a, const AV *y, i128 b, i128 *out) {
    if (!x.aff || (y && !y->aff))
      return false;
    for (int i = 0; i < 5; ++i)
      out[i] = a * x.c[i] + (y ? b * y->c[i] : 0);
    return true;
  }

  static bool isConst(const AV &x) { return x.lo == x.hi; }

  AV evalDiv(const Node &n, const AV &x, const AV &y) const {
    // Division by a range that excludes 0 is monotone in each argument on
    // each sign-constant quadrant: the extremes are at the corners.
    if (y.lo <= 0 && y.hi >= 0)
      return full(n.width);
    i128 best[2] = {0, 0};
    bool first = true;
    for (i128 a : {i128(x.lo), i128(x.hi)})
      for (i128 b : {i128(y.lo), i128(y.hi)}) {
        i128 q = n.kind == Kind::FloorDiv  ? floorDiv(a, b)
                 : n.kind == Kind::CeilDiv ? ceilDiv(a, b)
                                           : a / b;
        if (first || q < best[0])
          best[0] = q;
        if (first || q > best[1])
          best[1] = q;
        first = false;
      }
    return mk(n.width, best[0], best[1]);
  }

  AV evalFloorMod(const Node &n, const AV &x) const {
    i128 c = n.a;
    i128 m0 = floorDiv(x.lo, c), m1 = floorDiv(x.hi, c);
    if (m0 == m1) {
      // One period: x - m c, exactly.
      i128 aff[5];
      AV cst;
      cst.aff = true;
      cst.c[4] = 1;
      bool hasAff = combine(x, 1, &cst, -m0 * c, aff);
      return mk(n.width, x.lo - m0 * c, x.hi - m0 * c, hasAff ? aff : nullptr);
    }
    if (c > 0)
      return mk(n.width, 0, c - 1);
    return mk(n.width, c + 1, 0);
  }

  AV evalRemS(const Node &n, const AV &x, const AV &y) const {
    if (!isConst(y) || y.lo == 0)
      return full(n.width);
    i128 c = y.lo < 0 ? -i128(y.lo) : i128(y.lo);
    if (x.lo >= 0) {
      if (x.lo / c == x.hi / c) {
        i128 m = x.lo / c * c;
        return mk(n.width, x.lo - m, x.hi - m);
      }
      return mk(n.width, 0, std::min<i128>(x.hi, c - 1));
    }
    if (x.hi <= 0) {
      if (x.lo / c == x.hi / c) {
        i128 m = x.hi / c * c;
        return mk(n.width, x.lo - m, x.hi - m);
      }
      return mk(n.width, std::max<i128>(x.lo, -(c - 1)), 0);
    }
    return mk(n.width, std::max<i128>(x.lo, -(c - 1)), std::min<i128>(x.hi, c - 1));
  }

  AV evalCmp(const Node &n, const AV &x, const AV &y) const {
    using P = arith::CmpIPredicate;
    auto p = P(n.a);
    const Node &operand = nodes[n.ops[0]];
    if (operand.width == 1) {
      // Booleans: only decided when both sides are.
      bool xKnown = x.canF != x.canT, yKnown = y.canF != y.canT;
      if (!xKnown || !yKnown)
        return boolean(true, true);
      // As integers, i1 true is -1 for signed predicates and 1 for unsigned.
      int64_t xv = x.canT, yv = y.canT;
      bool sgn = p == P::slt || p == P::sle || p == P::sgt || p == P::sge;
      if (sgn) {
        xv = -xv;
        yv = -yv;
      }
      bool r = p == P::eq                     ? xv == yv
               : p == P::ne                   ? xv != yv
               : (p == P::slt || p == P::ult) ? xv < yv
               : (p == P::sle || p == P::ule) ? xv <= yv
               : (p == P::sgt || p == P::ugt) ? xv > yv
                                              : xv >= yv;
      return boolean(!r, r);
    }
    switch (p) {
    case P::ult:
    case P::ule:
    case P::ugt:
    case P::uge:
      // Unsigned order equals the signed one on non-negative values.
      if (x.lo < 0 || y.lo < 0)
        return boolean(true, true);
      p = p == P::ult ? P::slt : p == P::ule ? P::sle : p == P::ugt ? P::sgt : P::sge;
      break;
    default:
      break;
    }
    // d = x - y, exactly.
    i128 lo = i128(x.lo) - y.hi, hi = i128(x.hi) - y.lo;
    i128 c[5];
    if (combine(x, 1, &y, -1, c)) {
      i128 alo, ahi;
      affRange(c, alo, ahi);
      lo = std::max(lo, alo);
      hi = std::min(hi, ahi);
    }
    switch (p) {
    case P::eq:
      return boolean(!(lo == 0 && hi == 0), lo <= 0 && hi >= 0);
    case P::ne:
      return boolean(lo <= 0 && hi >= 0, !(lo == 0 && hi == 0));
    case P::slt:
      return boolean(hi >= 0, lo < 0);
    case P::sle:
      return boolean(hi > 0, lo <= 0);
    case P::sgt:
      return boolean(lo <= 0, hi > 0);
    case P::sge:
      return boolean(lo < 0, hi >= 0);
    default:
      return boolean(true, true);
    }
  }

  AV eval(const Node &n, const std::vector<AV> &v) const {
    const AV *x = n.ops[0] >= 0 ? &v[n.ops[0]] : nullptr;
    const AV *y = n.ops[1] >= 0 ? &v[n.ops[1]] : nullptr;
    i128 c[5];
    switch (n.kind) {
    case Kind::Var: {
      int i = int(n.a);
      AV r;
      r.lo = vlo[i];
      r.hi = vhi[i];
      r.aff = true;
      r.c[i] = 1;
      return r;
    }
    case Kind::Const:
    case Kind::Known: {
      if (n.width == 1)
        return boolean(n.a == 0, n.a != 0);
      AV r;
      r.lo = r.hi = n.a;
      r.aff = true;
      r.c[4] = n.a;
      return r;
    }
    case Kind::Unknown:
      return full(n.width);
    case Kind::Add:
      return mk(n.width, i128(x->lo) + y->lo, i128(x->hi) + y->hi,
                combine(*x, 1, y, 1, c) ? c : nullptr);
    case Kind::Sub:
      return mk(n.width, i128(x->lo) - y->hi, i128(x->hi) - y->lo,
                combine(*x, 1, y, -1, c) ? c : nullptr);
    case Kind::Mul: {
      i128 p[4] = {i128(x->lo) * y->lo, i128(x->lo) * y->hi, i128(x->hi) * y->lo,
                   i128(x->hi) * y->hi};
      bool hasAff = (isConst(*y) && combine(*x, y->lo, nullptr, 0, c)) ||
                    (isConst(*x) && combine(*y, x->lo, nullptr, 0, c));
      return mk(n.width, *std::min_element(p, p + 4), *std::max_element(p, p + 4),
                hasAff ? c : nullptr);
    }
    case Kind::FloorDiv:
    case Kind::CeilDiv:
    case Kind::DivS:
      return evalDiv(n, *x, *y);
    case Kind::RemS:
      return evalRemS(n, *x, *y);
    case Kind::FloorMod:
      return evalFloorMod(n, *x);
    case Kind::Min:
      if (x->hi <= y->lo)
        return *x;
      if (y->hi <= x->lo)
        return *y;
      return mk(n.width, std::min(x->lo, y->lo), std::min(x->hi, y->hi));
    case Kind::Max:
      if (x->lo >= y->hi)
        return *x;
      if (y->lo >= x->hi)
        return *y;
      return mk(n.width, std::max(x->lo, y->lo), std::max(x->hi, y->hi));
    case Kind::Abs:
      if (x->lo >= 0)
        return *x;
      if (x->hi <= 0)
        return mk(n.width, -i128(x->hi), -i128(x->lo),
                  combine(*x, -1, nullptr, 0, c) ? c : nullptr);
      return mk(n.width, 0, std::max(-i128(x->lo), i128(x->hi)));
    case Kind::Cmp:
      return evalCmp(n, *x, *y);
    case Kind::And:
      return boolean(x->canF || y->canF, x->canT && y->canT);
    case Kind::Or:
      return boolean(x->canF && y->canF, x->canT || y->canT);
    case Kind::Xor:
      return boolean((x->canF && y->canF) || (x->canT && y->canT),
                     (x->canF && y->canT) || (x->canT && y->canF));
    case Kind::Select: {
      const AV &t = v[n.ops[1]], &f = v[n.ops[2]];
      if (!x->canF)
        return t;
      if (!x->canT)
        return f;
      if (n.width == 1)
        return boolean(t.canF || f.canF, t.canT || f.canT);
      return mk(n.width, std::min(t.lo, f.lo), std::max(t.hi, f.hi));
    }
    case Kind::ExtS:
      if (nodes[n.ops[0]].width == 1)
        return mk(n.width, x->canT ? -1 : 0, x->canF ? 0 : -1);
      return *x;
    case Kind::ExtU:
      if (nodes[n.ops[0]].width == 1)
        return mk(n.width, x->canF ? 0 : 1, x->canT ? 1 : 0);
      if (x->lo >= 0)
        return *x;
      return mk(n.width, 0, (i128(1) << nodes[n.ops[0]].width) - 1);
    case Kind::Trunc:
      if (n.width == 1) {
        // The low bit: decided only for a single value.
        if (isConst(*x))
          return boolean((x->lo & 1) == 0, (x->lo & 1) != 0);
        return boolean(true, true);
      }
      if (x->lo >= typeMin(n.width) && x->hi <= typeMax(n.width))
        return *x;
      return full(n.width);
    }
    return full(n.width);
  }

  TileClass classify(const TileBox &box) const {
    if (box.q0 >= box.q1 || box.k0 >= box.k1 || box.b0 >= box.b1 || box.h0 >= box.h1)
      return TileClass::Empty;
    auto clampI32 = [](int64_t v) {
      return std::min<int64_t>(std::max<int64_t>(v, INT32_MIN), INT32_MAX);
    };
    int64_t lo[4] = {box.b0, box.h0, box.q0, box.k0}, hi[4] = {box.b1, box.h1, box.q1, box.k1};
    for (int i = 0; i < 4; ++i) {
      vlo[i] = clampI32(lo[i]);
      vhi[i] = clampI32(hi[i] - 1);
    }
    std::vector<AV> vals(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i)
      vals[i] = eval(nodes[i], vals);
    const AV &r = vals[root];
    if (!r.canF)
      return TileClass::Full;
    if (!r.canT)
      return TileClass::Empty;
    return TileClass::Partial;
  }
};

TileClassifier::TileClassifier(Block &maskBlock, Value maskValue,
                               const llvm::StringMap<int64_t> &known)
    : impl(std::make_unique<Impl>()) {
  impl->maskBlock = &maskBlock;
  impl->known = &known;
  impl->root = impl->node(maskValue);
  impl->known = nullptr;
  impl->ids.clear();
}

TileClassifier::TileClassifier(AttentionOp op, const llvm::StringMap<int64_t> &known)
    : TileClassifier(op.getMaskBlock(), op.getMaskValue(), known) {}

TileClassifier::~TileClassifier() = default;
TileClassifier::TileClassifier(TileClassifier &&) = default;
TileClassifier &TileClassifier::operator=(TileClassifier &&) = default;

TileClass TileClassifier::classify(const TileBox &box, unsigned refine) const {
  TileClass c = impl->classify(box);
  if (c != TileClass::Partial || refine == 0)
    return c;
  // Bisect the longer of the q and k sides: the box is FULL (EMPTY) when
  // both halves are.
  TileBox lo = box, hi = box;
  int64_t qn = box.q1 - box.q0, kn = box.k1 - box.k0;
  if (qn < 2 && kn < 2)
    return c;
  if (qn >= kn)
    lo.q1 = hi.q0 = box.q0 + qn / 2;
  else
    lo.k1 = hi.k0 = box.k0 + kn / 2;
  TileClass a = classify(lo, refine - 1);
  if (a == TileClass::Partial)
    return a;
  return classify(hi, refine - 1) == a ? a : TileClass::Partial;
}

const std::vector<std::string> &TileClassifier::tensorReads() const { return impl->tensorReads; }
const std::vector<std::string> &TileClassifier::unmodeledOps() const { return impl->unmodeled; }
const std::vector<std::string> &TileClassifier::unknownScalars() const {
  return impl->unknownScalars;
}
