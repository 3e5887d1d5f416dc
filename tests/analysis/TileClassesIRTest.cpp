//===- TileClassesIRTest.cpp - Tile classes of random arith IR -----------===//
//
// The DSL emits only part of what TileClassifier models. This test builds
// random i1 expressions directly as arith/math IR over the block arguments
// b, h, q, k (ceildivsi, divsi, bare remsi, divisors that are ranges,
// unsigned predicates, i64 arithmetic between extsi and trunci, extui of
// i1, selects) and checks the classes against this file's own evaluation of
// the same tree with the ops' semantics.
//
//===----------------------------------------------------------------------===//

#include "attnc/Analysis/TileClasses.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <random>

using namespace mlir;
using namespace mlir::attn;

namespace {

struct Point {
  int32_t v[4]; // b, h, q, k
};

/// A value of the random tree: its IR and its concrete semantics.
struct Built {
  Value value;
  std::function<int64_t(const Point &)> eval; // i32 (or i1 as 0/1)
};

int32_t wrap32(int64_t v) { return int32_t(uint32_t(uint64_t(v))); }
int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
int64_t ceilDiv(int64_t a, int64_t b) { return -floorDiv(-a, b); }

class IRGen {
public:
  IRGen(OpBuilder &b, Location loc, Block &block, uint64_t seed)
      : b(b), loc(loc), block(block), rng(seed) {}

  int64_t pick(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  }

  Built cst(int64_t v) {
    return {arith::ConstantIntOp::create(b, loc, b.getI32Type(), v).getResult(),
            [v](const Point &) { return v; }};
  }

  Built leaf() {
    if (pick(0, 4) == 0) {
      static const int64_t table[] = {0, 1, 2, 3, 7, 16, 64, -1, -5, 100, 2147483647, -2147483647};
      return cst(table[pick(0, std::size(table) - 1)]);
    }
    int i = pick(0, 9) < 2 ? int(pick(0, 1)) : int(pick(2, 3));
    return {block.getArgument(i), [i](const Point &p) { return int64_t(p.v[i]); }};
  }

  /// A divisor: a non-zero constant, or a positive range `abs(x) % 9 + 1`.
  Built divisor(int depth) {
    if (pick(0, 2)) {
      static const int64_t table[] = {2, 3, 5, 8, 64, -2, -3, -16};
      return cst(table[pick(0, std::size(table) - 1)]);
    }
    Built x = intExpr(depth - 1);
    Value abs = math::AbsIOp::create(b, loc, x.value);
    Value nine = arith::ConstantIntOp::create(b, loc, b.getI32Type(), 9);
    Value one = arith::ConstantIntOp::create(b, loc, b.getI32Type(), 1);
    Value rem = arith::RemSIOp::create(b, loc, abs, nine);
    Value r = arith::AddIOp::create(b, loc, rem, one);
    auto f = x.eval;
    return {r, [f](const Point &p) {
              int64_t a = wrap32(std::abs(f(p))); // abs(INT_MIN) wraps: then -1
              return a % 9 + 1;
            }};
  }

  /// One of three binary ops (picked at random) on x and y; `fn(op, a, c)`
  /// is its semantics.
  template <typename Op0, typename Op1, typename Op2>
  Built binary(Built x, Built y, int64_t (*fn)(int, int64_t, int64_t)) {
    int op = int(pick(0, 2));
    Value v = op == 0   ? Op0::create(b, loc, x.value, y.value).getResult()
              : op == 1 ? Op1::create(b, loc, x.value, y.value).getResult()
                        : Op2::create(b, loc, x.value, y.value).getResult();
    return {v, [=](const Point &p) { return fn(op, x.eval(p), y.eval(p)); }};
  }

  Built intExpr(int depth) {
    if (depth <= 0 || pick(0, 9) < 2)
      return leaf();
    switch (pick(0, 14)) {
    case 0:
    case 1:
    case 2: {
      Built x = intExpr(depth - 1), y = intExpr(depth - 1);
      return binary<arith::AddIOp, arith::SubIOp, arith::MulIOp>(
          x, y, [](int op, int64_t a, int64_t c) {
            return int64_t(wrap32(op == 0 ? a + c : op == 1 ? a - c : a * c));
          });
    }
    case 3:
    case 4:
    case 5: {
      Built x = intExpr(depth - 1), y = divisor(depth);
      int op = int(pick(0, 3));
      Value v = op == 0   ? arith::FloorDivSIOp::create(b, loc, x.value, y.value).getResult()
                : op == 1 ? arith::CeilDivSIOp::create(b, loc, x.value, y.value).getResult()
                : op == 2 ? arith::DivSIOp::create(b, loc, x.value, y.value).getResult()
                          : arith::RemSIOp::create(b, loc, x.value, y.value).getResult();
      return {v, [=](const Point &p) {
                int64_t a = x.eval(p), c = y.eval(p);
                // INT_MIN / -1 wraps (the analysis gives the full range there).
                return int64_t(wrap32(op == 0   ? floorDiv(a, c)
                                      : op == 1 ? ceilDiv(a, c)
                                      : op == 2 ? a / c
                                                : a % c));
              }};
    }
    case 6:
    case 7: {
      Built x = intExpr(depth - 1), y = intExpr(depth - 1);
      bool isMin = pick(0, 1);
      Value v = isMin ? arith::MinSIOp::create(b, loc, x.value, y.value).getResult()
                      : arith::MaxSIOp::create(b, loc, x.value, y.value).getResult();
      return {v, [=](const Point &p) {
                return isMin ? std::min(x.eval(p), y.eval(p)) : std::max(x.eval(p), y.eval(p));
              }};
    }
    case 8: {
      Built x = intExpr(depth - 1);
      return {math::AbsIOp::create(b, loc, x.value),
              [=](const Point &p) { return int64_t(wrap32(std::abs(x.eval(p)))); }};
    }
    case 9:
    case 10: {
      Built c = boolExpr(depth - 1), x = intExpr(depth - 1), y = intExpr(depth - 1);
      return {arith::SelectOp::create(b, loc, c.value, x.value, y.value),
              [=](const Point &p) { return c.eval(p) ? x.eval(p) : y.eval(p); }};
    }
    case 11:
    case 12: {
      // i64 arithmetic between extsi and trunci.
      Built x = intExpr(depth - 1), y = intExpr(depth - 1);
      Type i64 = b.getI64Type();
      Value xe = arith::ExtSIOp::create(b, loc, i64, x.value);
      Value ye = arith::ExtSIOp::create(b, loc, i64, y.value);
      bool mul = pick(0, 1);
      Value w = mul ? arith::MulIOp::create(b, loc, xe, ye).getResult()
                    : arith::SubIOp::create(b, loc, xe, ye).getResult();
      Value t = arith::TruncIOp::create(b, loc, b.getI32Type(), w);
      return {t, [=](const Point &p) {
                int64_t a = x.eval(p), c = y.eval(p);
                return int64_t(wrap32(mul ? a * c : a - c));
              }};
    }
    case 13: {
      Built c = boolExpr(depth - 1);
      return {arith::ExtUIOp::create(b, loc, b.getI32Type(), c.value),
              [=](const Point &p) { return c.eval(p); }};
    }
    default: {
      Built c = boolExpr(depth - 1);
      return {arith::ExtSIOp::create(b, loc, b.getI32Type(), c.value),
              [=](const Point &p) { return -c.eval(p); }};
    }
    }
  }

  Built boolExpr(int depth) {
    if (depth <= 0 || pick(0, 2) == 0) {
      using P = arith::CmpIPredicate;
      static const P preds[] = {P::eq,  P::ne,  P::slt, P::sle, P::sgt,
                                P::sge, P::ult, P::ule, P::ugt, P::uge};
      P pred = preds[pick(0, 9)];
      Built x = intExpr(depth - 1), y = intExpr(depth - 1);
      return {arith::CmpIOp::create(b, loc, pred, x.value, y.value), [=](const Point &p) {
                int64_t a = x.eval(p), c = y.eval(p);
                uint32_t ua = uint32_t(a), uc = uint32_t(c);
                switch (pred) {
                case P::eq:
                  return int64_t(a == c);
                case P::ne:
                  return int64_t(a != c);
                case P::slt:
                  return int64_t(a < c);
                case P::sle:
                  return int64_t(a <= c);
                case P::sgt:
                  return int64_t(a > c);
                case P::sge:
                  return int64_t(a >= c);
                case P::ult:
                  return int64_t(ua < uc);
                case P::ule:
                  return int64_t(ua <= uc);
                case P::ugt:
                  return int64_t(ua > uc);
                default:
                  return int64_t(ua >= uc);
                }
              }};
    }
    switch (pick(0, 4)) {
    case 0:
    case 1:
    case 2: {
      Built x = boolExpr(depth - 1), y = boolExpr(depth - 1);
      return binary<arith::AndIOp, arith::OrIOp, arith::XOrIOp>(
          x, y, [](int op, int64_t a, int64_t c) {
            return op == 0 ? (a & c) : op == 1 ? (a | c) : (a ^ c);
          });
    }
    case 3: {
      Built c = boolExpr(depth - 1), x = boolExpr(depth - 1), y = boolExpr(depth - 1);
      return {arith::SelectOp::create(b, loc, c.value, x.value, y.value),
              [=](const Point &p) { return c.eval(p) ? x.eval(p) : y.eval(p); }};
    }
    default: {
      // Booleans compared as i1 (signed: true is -1).
      using P = arith::CmpIPredicate;
      static const P preds[] = {P::eq, P::ne, P::slt, P::ult, P::sge};
      P pred = preds[pick(0, 4)];
      Built x = boolExpr(depth - 1), y = boolExpr(depth - 1);
      return {arith::CmpIOp::create(b, loc, pred, x.value, y.value), [=](const Point &p) {
                int64_t a = x.eval(p), c = y.eval(p);
                switch (pred) {
                case P::eq:
                  return int64_t(a == c);
                case P::ne:
                  return int64_t(a != c);
                case P::slt:
                  return int64_t(-a < -c);
                case P::ult:
                  return int64_t(a < c);
                default:
                  return int64_t(-a >= -c);
                }
              }};
    }
    }
  }

private:
  OpBuilder &b;
  Location loc;
  Block &block;
  std::mt19937_64 rng;
};

TEST(TileClassesIR, RandomArithIsSound) {
  MLIRContext ctx;
  DialectRegistry registry;
  registerAttnDialect(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
  OpBuilder b(&ctx);
  Location loc = b.getUnknownLoc();
  std::mt19937_64 rng(11);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int64_t tiles = 0, trulyEmpty = 0, foundEmpty = 0, trulyFull = 0, foundFull = 0;
  const int kMasks = 1500;
  for (int iter = 0; iter < kMasks; ++iter) {
    OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
    b.setInsertionPointToEnd(module->getBody());
    Type i32 = b.getI32Type();
    auto fn = func::FuncOp::create(b, loc, "m", b.getFunctionType({i32, i32, i32, i32}, {}));
    Block *block = fn.addEntryBlock();
    b.setInsertionPointToEnd(block);
    IRGen gen(b, loc, *block, 1000 + iter);
    Built mask = gen.boolExpr(int(pick(1, 4)));
    func::ReturnOp::create(b, loc);
    TileClassifier classifier(*block, mask.value);

    for (int t = 0; t < 10; ++t) {
      TileBox box;
      int64_t tq = pick(1, 12), tk = pick(1, 12);
      box.q0 = pick(0, 3) ? pick(0, 200) : int64_t(INT32_MAX) - pick(tq, 100);
      box.q1 = box.q0 + tq;
      box.k0 = pick(0, 1) ? std::max<int64_t>(0, box.q0 + pick(-30, 30)) : pick(0, 200);
      box.k0 = std::min<int64_t>(box.k0, int64_t(INT32_MAX) - tk + 1);
      box.k1 = box.k0 + tk;
      box.b0 = pick(0, 3);
      box.b1 = box.b0 + pick(1, 2);
      box.h0 = pick(0, 3);
      box.h1 = box.h0 + pick(1, 2);
      bool anyTrue = false, anyFalse = false;
      for (int64_t bb = box.b0; bb < box.b1; ++bb)
        for (int64_t h = box.h0; h < box.h1; ++h)
          for (int64_t q = box.q0; q < box.q1; ++q)
            for (int64_t k = box.k0; k < box.k1; ++k) {
              Point p{{int32_t(bb), int32_t(h), int32_t(q), int32_t(k)}};
              (mask.eval(p) ? anyTrue : anyFalse) = true;
            }
      ++tiles;
      trulyEmpty += !anyTrue;
      trulyFull += !anyFalse;
      for (unsigned refine : {0u, 3u}) {
        TileClass cls = classifier.classify(box, refine);
        if (refine == 0) {
          foundEmpty += !anyTrue && cls == TileClass::Empty;
          foundFull += !anyFalse && cls == TileClass::Full;
        }
        std::string ir;
        if (cls != TileClass::Partial) {
          llvm::raw_string_ostream os(ir);
          fn.print(os);
        }
        if (cls == TileClass::Full) {
          ASSERT_FALSE(anyFalse) << "FULL tile q " << box.q0 << " k " << box.k0 << " size " << tq
                                 << " x " << tk << " refine " << refine << "\n"
                                 << ir;
        }
        if (cls == TileClass::Empty) {
          ASSERT_FALSE(anyTrue) << "EMPTY tile q " << box.q0 << " k " << box.k0 << " size " << tq
                                << " x " << tk << " refine " << refine << "\n"
                                << ir;
        }
      }
    }
  }
  std::printf("[precision] random arith IR: %lld tiles; truly empty %lld, found %lld; truly full "
              "%lld, found %lld\n",
              (long long)tiles, (long long)trulyEmpty, (long long)foundEmpty, (long long)trulyFull,
              (long long)foundFull);
  EXPECT_EQ(tiles, kMasks * 10);
}

} // namespace
