//===- TileClassesTest.cpp - Soundness of the mask tile classes ----------===//
//
// Random mask expressions over b, h, q, k, literals, a runtime scalar `w`
// and two i32 id tensors read at q or k go through the real front end
// (DSL text -> Sema -> MLIRGen -> inline + canonicalize) into
// TileClassifier; every (b, h, q, k) of random tiles is then evaluated by
// this file's own scalar evaluator of the expression tree (DSL semantics:
// i32 wrap-around, floor / and %). FULL must mean all true, EMPTY all false.
// The precision (how many truly full / empty tiles the analysis finds) is
// printed, not asserted.
//
//===----------------------------------------------------------------------===//

#include "LoadedProgram.h"

#include "attnc/Analysis/TileBounds.h"
#include "attnc/Analysis/TileClasses.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace mlir::attn;

namespace {

//===----------------------------------------------------------------------===//
// Random masks
//===----------------------------------------------------------------------===//

struct Env {
  int32_t b, h, q, k, w;
  const std::vector<int32_t> *doc, *tag;
};

int32_t wrap(int64_t v) { return int32_t(uint32_t(uint64_t(v))); }
int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

struct Expr {
  enum Kind {
    // integers
    B,
    H,
    Q,
    K,
    Lit,
    W,
    Doc,
    Tag,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Neg,
    Min,
    Max,
    Abs,
    Clamp,
    SelI,
    Wide,
    FromBool,
    // booleans
    BLit,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Not,
    BEq,
    BNe,
    SelB
  } kind;
  // literal value, divisor; Doc/Tag: 0 reads at q, 1 at k; Wide: 0 +, 1 -, 2 *
  int64_t a = 0;
  std::vector<std::unique_ptr<Expr>> c;

  int32_t evalInt(const Env &e) const {
    switch (kind) {
    case B:
      return e.b;
    case H:
      return e.h;
    case Q:
      return e.q;
    case K:
      return e.k;
    case Lit:
      return int32_t(a);
    case W:
      return e.w;
    case Doc:
      return (*e.doc)[a ? e.k : e.q];
    case Tag:
      return (*e.tag)[a ? e.k : e.q];
    case Add:
      return wrap(int64_t(c[0]->evalInt(e)) + c[1]->evalInt(e));
    case Sub:
      return wrap(int64_t(c[0]->evalInt(e)) - c[1]->evalInt(e));
    case Mul:
      return wrap(int64_t(c[0]->evalInt(e)) * c[1]->evalInt(e));
    case Div:
      return wrap(floorDiv(c[0]->evalInt(e), a));
    case Mod: {
      int64_t x = c[0]->evalInt(e);
      return wrap(x - floorDiv(x, a) * a);
    }
    case Neg:
      return wrap(-int64_t(c[0]->evalInt(e)));
    case Min:
      return std::min(c[0]->evalInt(e), c[1]->evalInt(e));
    case Max:
      return std::max(c[0]->evalInt(e), c[1]->evalInt(e));
    case Abs:
      return wrap(std::abs(int64_t(c[0]->evalInt(e))));
    case Clamp:
      return std::min(std::max(c[0]->evalInt(e), c[1]->evalInt(e)), c[2]->evalInt(e));
    case SelI:
      return c[0]->evalBool(e) ? c[1]->evalInt(e) : c[2]->evalInt(e);
    case Wide: {
      // Exact in i64 (i32 operands), then truncated.
      int64_t x = c[0]->evalInt(e), y = c[1]->evalInt(e);
      return wrap(a == 0 ? x + y : a == 1 ? x - y : x * y);
    }
    case FromBool:
      return c[0]->evalBool(e) ? 1 : 0;
    default:
      return 0;
    }
  }

  bool evalBool(const Env &e) const {
    switch (kind) {
    case BLit:
      return a != 0;
    case Lt:
      return c[0]->evalInt(e) < c[1]->evalInt(e);
    case Le:
      return c[0]->evalInt(e) <= c[1]->evalInt(e);
    case Gt:
      return c[0]->evalInt(e) > c[1]->evalInt(e);
    case Ge:
      return c[0]->evalInt(e) >= c[1]->evalInt(e);
    case Eq:
      return c[0]->evalInt(e) == c[1]->evalInt(e);
    case Ne:
      return c[0]->evalInt(e) != c[1]->evalInt(e);
    case And:
      return c[0]->evalBool(e) && c[1]->evalBool(e);
    case Or:
      return c[0]->evalBool(e) || c[1]->evalBool(e);
    case Not:
      return !c[0]->evalBool(e);
    case BEq:
      return c[0]->evalBool(e) == c[1]->evalBool(e);
    case BNe:
      return c[0]->evalBool(e) != c[1]->evalBool(e);
    case SelB:
      return c[0]->evalBool(e) ? c[1]->evalBool(e) : c[2]->evalBool(e);
    default:
      return false;
    }
  }

  void print(std::string &s) const {
    auto bin = [&](const char *op) {
      s += "(";
      c[0]->print(s);
      s += op;
      c[1]->print(s);
      s += ")";
    };
    auto call = [&](const char *f) {
      s += f;
      s += "(";
      for (size_t i = 0; i < c.size(); ++i) {
        if (i)
          s += ", ";
        c[i]->print(s);
      }
      s += ")";
    };
    switch (kind) {
    case B:
      s += "b";
      return;
    case H:
      s += "h";
      return;
    case Q:
      s += "q";
      return;
    case K:
      s += "k";
      return;
    case Lit:
      s += a < 0 ? "(" + std::to_string(a) + ")" : std::to_string(a);
      return;
    case W:
      s += "w";
      return;
    case Doc:
      s += a ? "doc[k]" : "doc[q]";
      return;
    case Tag:
      s += a ? "tag[k]" : "tag[q]";
      return;
    case Add:
      return bin(" + ");
    case Sub:
      return bin(" - ");
    case Mul:
      return bin(" * ");
    case Div:
    case Mod:
      s += "(";
      c[0]->print(s);
      s += kind == Div ? " / " : " % ";
      s += a < 0 ? "(" + std::to_string(a) + ")" : std::to_string(a);
      s += ")";
      return;
    case Neg:
      s += "(-";
      c[0]->print(s);
      s += ")";
      return;
    case Min:
      return call("min");
    case Max:
      return call("max");
    case Abs:
      return call("abs");
    case Clamp:
      return call("clamp");
    case SelI:
    case SelB:
      s += "(";
      c[0]->print(s);
      s += " ? ";
      c[1]->print(s);
      s += " : ";
      c[2]->print(s);
      s += ")";
      return;
    case Wide:
      s += "i32(i64(";
      c[0]->print(s);
      s += a == 0 ? ") + i64(" : a == 1 ? ") - i64(" : ") * i64(";
      c[1]->print(s);
      s += "))";
      return;
    case FromBool:
      s += "i32(";
      c[0]->print(s);
      s += ")";
      return;
    case BLit:
      s += a ? "true" : "false";
      return;
    case Lt:
      return bin(" < ");
    case Le:
      return bin(" <= ");
    case Gt:
      return bin(" > ");
    case Ge:
      return bin(" >= ");
    case Eq:
    case BEq:
      return bin(" == ");
    case Ne:
    case BNe:
      return bin(" != ");
    case And:
      return bin(" && ");
    case Or:
      return bin(" || ");
    case Not:
      s += "(!";
      c[0]->print(s);
      s += ")";
      return;
    }
  }
};

using ExprPtr = std::unique_ptr<Expr>;

class Generator {
public:
  explicit Generator(uint64_t seed) : rng(seed) {}

  int64_t pick(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  }

  ExprPtr node(Expr::Kind k, int64_t a = 0) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->a = a;
    return e;
  }

  /// Literals near the scales of positions and tiles, some negative.
  int64_t literal() {
    static const int64_t table[] = {0,  1,  2,   3,   4,   7,  8,  16, 31,
                                    32, 64, 100, 128, 256, -1, -3, -64};
    return pick(0, 3) == 0 ? pick(-300, 300) : table[pick(0, std::size(table) - 1)];
  }
  int64_t divisor() {
    static const int64_t table[] = {2, 3, 4, 5, 7, 8, 16, 32, 64, 100, -2, -3, -7, -16};
    return table[pick(0, std::size(table) - 1)];
  }

  ExprPtr intExpr(int depth) {
    if (depth <= 0 || pick(0, 9) < 3) {
      switch (pick(0, 11)) {
      case 0:
        return node(Expr::B);
      case 1:
        return node(Expr::H);
      case 2:
      case 3:
      case 4:
        return node(Expr::Q);
      case 5:
      case 6:
      case 7:
        return node(Expr::K);
      case 8:
        return node(Expr::W);
      case 9:
        return node(pick(0, 1) ? Expr::Doc : Expr::Tag, pick(0, 1));
      default:
        return node(Expr::Lit, literal());
      }
    }
    auto withKids = [&](Expr::Kind k, int n, int64_t a = 0) {
      ExprPtr e = node(k, a);
      for (int i = 0; i < n; ++i)
        e->c.push_back(intExpr(depth - 1));
      return e;
    };
    switch (pick(0, 15)) {
    case 0:
    case 1:
      return withKids(Expr::Add, 2);
    case 2:
    case 3:
      return withKids(Expr::Sub, 2);
    case 4: {
      // Mostly by a literal, sometimes two variables.
      ExprPtr e = node(Expr::Mul);
      e->c.push_back(intExpr(depth - 1));
      e->c.push_back(pick(0, 3) ? node(Expr::Lit, pick(-4, 8)) : intExpr(depth - 1));
      return e;
    }
    case 5:
      return withKids(Expr::Div, 1, divisor());
    case 6:
      return withKids(Expr::Mod, 1, divisor());
    case 7:
      return withKids(Expr::Neg, 1);
    case 8:
      return withKids(Expr::Min, 2);
    case 9:
      return withKids(Expr::Max, 2);
    case 10:
      return withKids(Expr::Abs, 1);
    case 11:
      return withKids(Expr::Clamp, 3);
    case 12: {
      ExprPtr e = node(Expr::SelI);
      e->c.push_back(boolExpr(depth - 1));
      e->c.push_back(intExpr(depth - 1));
      e->c.push_back(intExpr(depth - 1));
      return e;
    }
    case 13:
      return withKids(Expr::Wide, 2, pick(0, 2));
    case 14: {
      ExprPtr e = node(Expr::FromBool);
      e->c.push_back(boolExpr(depth - 1));
      return e;
    }
    default:
      return withKids(Expr::Sub, 2);
    }
  }

  ExprPtr boolExpr(int depth) {
    if (depth <= 0)
      return pick(0, 9) ? cmp(0) : node(Expr::BLit, pick(0, 1));
    switch (pick(0, 11)) {
    case 0:
    case 1:
    case 2:
    case 3:
      return cmp(depth - 1);
    case 4:
    case 5: {
      ExprPtr e = node(Expr::And);
      e->c.push_back(boolExpr(depth - 1));
      e->c.push_back(boolExpr(depth - 1));
      return e;
    }
    case 6:
    case 7: {
      ExprPtr e = node(Expr::Or);
      e->c.push_back(boolExpr(depth - 1));
      e->c.push_back(boolExpr(depth - 1));
      return e;
    }
    case 8: {
      ExprPtr e = node(Expr::Not);
      e->c.push_back(boolExpr(depth - 1));
      return e;
    }
    case 9: {
      ExprPtr e = node(pick(0, 1) ? Expr::BEq : Expr::BNe);
      e->c.push_back(boolExpr(depth - 1));
      e->c.push_back(boolExpr(depth - 1));
      return e;
    }
    case 10: {
      ExprPtr e = node(Expr::SelB);
      e->c.push_back(boolExpr(depth - 1));
      e->c.push_back(boolExpr(depth - 1));
      e->c.push_back(boolExpr(depth - 1));
      return e;
    }
    default:
      return node(Expr::BLit, pick(0, 1));
    }
  }

  /// A comparison; half of them in the shapes masks take (`k <= q + c`,
  /// `q - k < c`, `x / c == y / c`), the rest of random terms.
  ExprPtr cmp(int depth) {
    static const Expr::Kind preds[] = {Expr::Lt, Expr::Le, Expr::Gt, Expr::Ge, Expr::Eq, Expr::Ne};
    ExprPtr e = node(preds[pick(0, 5)]);
    if (pick(0, 1)) {
      e->c.push_back(intExpr(depth));
      e->c.push_back(intExpr(depth));
      return e;
    }
    switch (pick(0, 3)) {
    case 0: {
      ExprPtr d = node(Expr::Sub);
      d->c.push_back(node(Expr::Q));
      d->c.push_back(node(Expr::K));
      e->c.push_back(std::move(d));
      e->c.push_back(node(Expr::Lit, literal()));
      break;
    }
    case 1: {
      e->c.push_back(node(Expr::K));
      ExprPtr s = node(Expr::Add);
      s->c.push_back(node(Expr::Q));
      s->c.push_back(node(Expr::Lit, literal()));
      e->c.push_back(std::move(s));
      break;
    }
    case 2: {
      int64_t d = divisor();
      e->c.push_back(node(Expr::Div, d));
      e->c.back()->c.push_back(node(Expr::Q));
      e->c.push_back(node(Expr::Div, d));
      e->c.back()->c.push_back(node(Expr::K));
      break;
    }
    default:
      e->c.push_back(node(pick(0, 1) ? Expr::Q : Expr::K));
      e->c.push_back(intExpr(depth));
      break;
    }
    return e;
  }

  std::mt19937_64 rng;
};

//===----------------------------------------------------------------------===//
// The pipeline
//===----------------------------------------------------------------------===//

/// The mask as the compiler sees it: front end, MLIRGen, inline + canonicalize.
struct Compiled {
  attnc::test::LoadedProgram loaded;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  AttentionOp attention;

  explicit Compiled(const std::string &source)
      : loaded("random.attn", llvm::StringRef(source), attnc::dsl::FrontendOptions{{}, false}) {
    if (!loaded.program)
      return;
    attnc::dsl::MLIRGenOptions options;
    options.kernel = "t";
    module = attnc::dsl::mlirGen(loaded.ctx, *loaded.program, options);
    if (!module || mlir::failed(attnc::pipeline::runInlineAndSimplify(*module)))
      return;
    module->walk([&](AttentionOp op) { attention = op; });
  }
};

struct Precision {
  int64_t tiles = 0, trulyEmpty = 0, foundEmpty = 0, trulyFull = 0, foundFull = 0;
};

/// Precision counts: all masks, then masks of index arithmetic only (no
/// tensor read, `w` known); each without and with bisection
/// (TileClassifier::classify's refine).
enum { kAll, kAllRefined, kIndexOnly, kIndexOnlyRefined, kNumCounts };
constexpr unsigned kRefine = 4;

/// A random mask through the front end, as `kernel t(w, doc, tag)`.
struct RandomMask {
  ExprPtr expr;
  std::string source;
  std::unique_ptr<Compiled> compiled;
};
RandomMask randomMask(Generator &gen, int maxDepth) {
  RandomMask m;
  m.expr = gen.boolExpr(gen.pick(1, maxDepth));
  std::string text;
  m.expr->print(text);
  m.source = "kernel t(w: i32, doc: i32[N], tag: i32[N]) {\n  mask = " + text + ";\n}\n";
  m.compiled = std::make_unique<Compiled>(m.source);
  return m;
}

/// The id tensors: sorted segment ids (doc) and small random ids (tag).
void randomTensors(Generator &gen, int64_t n, std::vector<int32_t> &doc,
                   std::vector<int32_t> &tag) {
  doc.assign(n, 0);
  tag.assign(n, 0);
  int32_t seg = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (gen.pick(0, 40) == 0)
      ++seg;
    doc[i] = seg;
    tag[i] = int32_t(gen.pick(-2, 3));
  }
}

/// Checks `count` random masks, counting the precision in `p`.
void runProperty(uint64_t seed, int count, int maxDepth, Precision (&counts)[kNumCounts]) {
  Generator gen(seed);
  const int64_t kPositions = 600;
  for (int iter = 0; iter < count; ++iter) {
    RandomMask rm = randomMask(gen, maxDepth);
    const ExprPtr &mask = rm.expr;
    const std::string &source = rm.source;
    Compiled &compiled = *rm.compiled;
    ASSERT_TRUE(compiled.attention) << source << "\n" << compiled.loaded.diagnostics;
    std::vector<int32_t> doc, tag;
    randomTensors(gen, kPositions, doc, tag);
    int32_t w = int32_t(gen.literal());
    bool knowW = gen.pick(0, 1);
    llvm::StringMap<int64_t> known;
    if (knowW)
      known["w"] = w;
    TileClassifier classifier(compiled.attention, known);

    for (int t = 0; t < 12; ++t) {
      static const int64_t sizes[] = {1, 2, 3, 5, 8, 8, 16, 16, 32};
      TileBox box;
      int64_t tq = sizes[gen.pick(0, std::size(sizes) - 1)];
      int64_t tk = sizes[gen.pick(0, std::size(sizes) - 1)];
      box.q0 = gen.pick(0, kPositions - tq);
      box.q1 = box.q0 + tq;
      box.k0 = gen.pick(0, 2)
                   ? std::max<int64_t>(0, std::min(box.q0 + gen.pick(-64, 64), kPositions - tk))
                   : gen.pick(0, kPositions - tk);
      box.k1 = box.k0 + tk;
      box.b0 = gen.pick(0, 3);
      box.b1 = box.b0 + gen.pick(1, 2);
      box.h0 = gen.pick(0, 7);
      box.h1 = box.h0 + gen.pick(1, 2);
      TileClass cls = classifier.classify(box);
      TileClass refined = classifier.classify(box, kRefine);

      // Unknown w: every w the oracle tries must agree.
      std::vector<int32_t> ws = {w};
      if (!knowW)
        ws = {w, 0, -1, 1, 63, -300, 1000, int32_t(gen.literal())};
      bool anyTrue = false, anyFalse = false;
      for (int32_t wv : ws)
        for (int64_t b = box.b0; b < box.b1; ++b)
          for (int64_t h = box.h0; h < box.h1; ++h)
            for (int64_t q = box.q0; q < box.q1; ++q)
              for (int64_t k = box.k0; k < box.k1; ++k) {
                Env env{int32_t(b), int32_t(h), int32_t(q), int32_t(k), wv, &doc, &tag};
                (mask->evalBool(env) ? anyTrue : anyFalse) = true;
              }
      bool indexOnly = knowW && classifier.tensorReads().empty();
      for (auto [c, slot] : {std::pair(cls, kAll), std::pair(refined, kAllRefined),
                             std::pair(cls, kIndexOnly), std::pair(refined, kIndexOnlyRefined)}) {
        if ((slot == kIndexOnly || slot == kIndexOnlyRefined) && !indexOnly)
          continue;
        Precision &p = counts[slot];
        ++p.tiles;
        p.trulyEmpty += !anyTrue;
        p.trulyFull += !anyFalse;
        p.foundEmpty += !anyTrue && c == TileClass::Empty;
        p.foundFull += !anyFalse && c == TileClass::Full;
        std::string where = "(q " + std::to_string(box.q0) + ".." + std::to_string(box.q1) +
                            ", k " + std::to_string(box.k0) + ".." + std::to_string(box.k1) +
                            ", w " + (knowW ? std::to_string(w) : "unknown") +
                            (slot == kAll ? "" : ", refined") + ")\n" + source;
        if (c == TileClass::Full) {
          ASSERT_FALSE(anyFalse) << "FULL tile with a false " << where;
        }
        if (c == TileClass::Empty) {
          ASSERT_FALSE(anyTrue) << "EMPTY tile with a true " << where;
        }
      }
    }
  }
}

void report(const char *what, const Precision &p) {
  std::printf("[precision] %s: %lld tiles; truly empty %lld, found %lld (%.1f%%); truly full "
              "%lld, found %lld (%.1f%%)\n",
              what, (long long)p.tiles, (long long)p.trulyEmpty, (long long)p.foundEmpty,
              p.trulyEmpty ? 100.0 * p.foundEmpty / p.trulyEmpty : 100.0, (long long)p.trulyFull,
              (long long)p.foundFull, p.trulyFull ? 100.0 * p.foundFull / p.trulyFull : 100.0);
}

/// $ATTNC_TILES_SEED shifts the seeds (for longer soak runs by hand).
void runAndReport(const char *what, uint64_t seed, int count, int maxDepth) {
  if (const char *env = std::getenv("ATTNC_TILES_SEED"))
    seed += std::strtoull(env, nullptr, 10) * 1000;
  Precision counts[kNumCounts];
  ASSERT_NO_FATAL_FAILURE(runProperty(seed, count, maxDepth, counts));
  std::string w = what;
  report((w + ", all masks").c_str(), counts[kAll]);
  report((w + ", all masks, refine 4").c_str(), counts[kAllRefined]);
  report((w + ", index-only masks").c_str(), counts[kIndexOnly]);
  report((w + ", index-only masks, refine 4").c_str(), counts[kIndexOnlyRefined]);
  EXPECT_EQ(counts[kAll].tiles, count * 12);
  // Bisection only ever decides more.
  EXPECT_GE(counts[kAllRefined].foundEmpty, counts[kAll].foundEmpty);
  EXPECT_GE(counts[kAllRefined].foundFull, counts[kAll].foundFull);
}

TEST(TileClassesProperty, ShallowMasksAreSound) { runAndReport("depth <= 2", 1, 2000, 2); }

TEST(TileClassesProperty, DeepMasksAreSound) { runAndReport("depth <= 5", 2, 2000, 5); }

//===----------------------------------------------------------------------===//
// Run-time tile bounds (TileBounds.h)
//===----------------------------------------------------------------------===//

/// Builds tile bounds with `build` into a function returning (mayKeep,
/// mustKeep) and folds it with the canonicalizer; the two constants, or
/// nothing if they did not fold.
std::optional<std::pair<bool, bool>>
foldBounds(mlir::MLIRContext &ctx,
           llvm::function_ref<TileKeepBounds(mlir::OpBuilder &, mlir::Location)> build) {
  ctx.getOrLoadDialect<mlir::func::FuncDialect>();
  ctx.getOrLoadDialect<mlir::arith::ArithDialect>();
  ctx.getOrLoadDialect<mlir::scf::SCFDialect>();
  mlir::OpBuilder b(&ctx);
  mlir::Location loc = b.getUnknownLoc();
  mlir::OwningOpRef<mlir::ModuleOp> module = mlir::ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  auto fn = mlir::func::FuncOp::create(b, loc, "bounds",
                                       b.getFunctionType({}, {b.getI1Type(), b.getI1Type()}));
  b.setInsertionPointToStart(fn.addEntryBlock());
  TileKeepBounds bounds = build(b, loc);
  mlir::func::ReturnOp::create(b, loc, mlir::ValueRange{bounds.mayKeep, bounds.mustKeep});
  mlir::PassManager pm(&ctx);
  pm.addPass(mlir::createCanonicalizerPass());
  if (mlir::failed(pm.run(*module)))
    return std::nullopt;
  auto ret = llvm::cast<mlir::func::ReturnOp>(fn.getBody().front().getTerminator());
  auto mayC = ret.getOperand(0).getDefiningOp<mlir::arith::ConstantIntOp>();
  auto mustC = ret.getOperand(1).getDefiningOp<mlir::arith::ConstantIntOp>();
  if (!mayC || !mustC)
    return std::nullopt;
  return std::make_pair(mayC.value() != 0, mustC.value() != 0);
}

/// buildTileKeepBounds over the same random masks, with the id tensors'
/// ranges over each tile's rows and keys as the load intervals (what the
/// CUDA kernel computes at run time). The IR it builds is folded to
/// constants by the canonicalizer; `mayKeep` false must mean no (q, k) of
/// the tile is kept, `mustKeep` true that every one is.
void runTileBounds(uint64_t seed, int count, int maxDepth, Precision &p) {
  Generator gen(seed);
  const int64_t kPositions = 600;
  for (int iter = 0; iter < count; ++iter) {
    RandomMask rm = randomMask(gen, maxDepth);
    const ExprPtr &mask = rm.expr;
    const std::string &source = rm.source;
    Compiled &compiled = *rm.compiled;
    ASSERT_TRUE(compiled.attention) << source << "\n" << compiled.loaded.diagnostics;
    mlir::MLIRContext &ctx = compiled.loaded.ctx;
    auto kernel = compiled.attention->getParentOfType<KernelOp>();
    ASSERT_TRUE(kernel);
    std::vector<int32_t> doc, tag;
    randomTensors(gen, kPositions, doc, tag);
    int32_t w = int32_t(gen.literal());
    mlir::Block &maskBlock = compiled.attention.getMaskBlock();
    llvm::SmallVector<RangeLoad> loads = tileRangeLoads(maskBlock);

    for (int t = 0; t < 12; ++t) {
      static const int64_t sizes[] = {1, 2, 3, 5, 8, 8, 16, 16, 32, 64};
      int64_t tq = sizes[gen.pick(0, std::size(sizes) - 1)];
      int64_t tk = sizes[gen.pick(0, std::size(sizes) - 1)];
      int64_t q0 = gen.pick(0, kPositions - tq), q1 = q0 + tq;
      int64_t k0 = gen.pick(0, 2)
                       ? std::max<int64_t>(0, std::min(q0 + gen.pick(-64, 64), kPositions - tk))
                       : gen.pick(0, kPositions - tk);
      int64_t k1 = k0 + tk;
      int32_t bv = int32_t(gen.pick(0, 3)), hv = int32_t(gen.pick(0, 7));

      auto folded = foldBounds(ctx, [&](mlir::OpBuilder &b, mlir::Location loc) {
        auto c64 = [&](int64_t v) -> mlir::Value {
          return mlir::arith::ConstantIntOp::create(b, loc, v, 64);
        };
        mlir::IRMapping outer;
        outer.map(kernel.getArgument(0), mlir::arith::ConstantIntOp::create(b, loc, w, 32));
        for (mlir::Operation &op : kernel.getBody().front())
          if (!llvm::isa<AttentionOp>(op) &&
              llvm::all_of(op.getOperands(), [&](mlir::Value v) { return outer.contains(v); }))
            b.clone(op, outer);
        llvm::SmallVector<IntervalValues> ranges;
        for (RangeLoad rl : loads) {
          const std::vector<int32_t> &data =
              rl.load.getTensor() == kernel.getArgument(1) ? doc : tag;
          int64_t lo = rl.byKey ? k0 : q0, hi = rl.byKey ? k1 : q1;
          int32_t mn = data[lo], mx = data[lo];
          for (int64_t i = lo; i < hi; ++i)
            mn = std::min(mn, data[i]), mx = std::max(mx, data[i]);
          ranges.push_back({c64(mn), c64(mx)});
        }
        return buildTileKeepBounds(
            b, loc, maskBlock, compiled.attention.getMaskValue(), outer,
            mlir::arith::ConstantIntOp::create(b, loc, bv, 32),
            mlir::arith::ConstantIntOp::create(b, loc, hv, 32), {c64(q0), c64(q1 - 1)},
            {c64(k0), c64(k1 - 1)}, [&](unsigned i) { return ranges[i]; },
            [&](LoadOp, llvm::ArrayRef<mlir::Value>) { return mlir::Value(); });
      });
      ASSERT_TRUE(folded) << "bounds did not fold to constants\n" << source;
      auto [may, must] = *folded;

      bool anyTrue = false, anyFalse = false;
      for (int64_t q = q0; q < q1; ++q)
        for (int64_t k = k0; k < k1; ++k) {
          Env env{bv, hv, int32_t(q), int32_t(k), w, &doc, &tag};
          (mask->evalBool(env) ? anyTrue : anyFalse) = true;
        }
      std::string where = "(q " + std::to_string(q0) + ".." + std::to_string(q1) + ", k " +
                          std::to_string(k0) + ".." + std::to_string(k1) + ", w " +
                          std::to_string(w) + ")\n" + source;
      ASSERT_TRUE(may || !anyTrue) << "mayKeep false on a tile with a kept key " << where;
      ASSERT_TRUE(!must || !anyFalse) << "mustKeep true on a tile with a dropped key " << where;
      ++p.tiles;
      p.trulyEmpty += !anyTrue;
      p.trulyFull += !anyFalse;
      p.foundEmpty += !anyTrue && !may;
      p.foundFull += !anyFalse && must;
    }
  }
}

TEST(TileBoundsProperty, RandomMasksAreSound) {
  uint64_t seed = 11;
  if (const char *env = std::getenv("ATTNC_TILES_SEED"))
    seed += std::strtoull(env, nullptr, 10) * 1000;
  Precision p;
  ASSERT_NO_FATAL_FAILURE(runTileBounds(seed, 600, 4, p));
  report("run-time tile bounds, depth <= 4", p);
  EXPECT_EQ(p.tiles, 600 * 12);
}

/// A mask without range loads (every read through the uniform-load hook,
/// `read` building the element from constant-foldable indices), bounded on
/// the tile [q0, q1) x [k0, k1) of batch `bv`, head 0, and folded.
std::optional<std::pair<bool, bool>> foldHookedBounds(
    Compiled &compiled, int64_t bv, int64_t q0, int64_t q1, int64_t k0, int64_t k1,
    llvm::function_ref<mlir::Value(mlir::OpBuilder &, mlir::Location, llvm::ArrayRef<mlir::Value>)>
        read) {
  return foldBounds(compiled.loaded.ctx, [&](mlir::OpBuilder &b, mlir::Location loc) {
    auto c64 = [&](int64_t v) -> mlir::Value {
      return mlir::arith::ConstantIntOp::create(b, loc, v, 64);
    };
    mlir::IRMapping outer;
    return buildTileKeepBounds(
        b, loc, compiled.attention.getMaskBlock(), compiled.attention.getMaskValue(), outer,
        mlir::arith::ConstantIntOp::create(b, loc, bv, 32),
        mlir::arith::ConstantIntOp::create(b, loc, 0, 32), {c64(q0), c64(q1 - 1)},
        {c64(k0), c64(k1 - 1)}, [&](unsigned) -> IntervalValues { return {}; },
        [&](LoadOp, llvm::ArrayRef<mlir::Value> idx) { return read(b, loc, idx); });
  });
}

/// A read indexed by b only (prefix-LM's `plen[b]`) goes through the
/// backend's uniform-load hook and is exact: random tiles and prefix lengths
/// against every (q, k), and tiles entirely past max(q, plen) must be found
/// EMPTY, tiles entirely inside the prefix FULL.
TEST(TileBoundsProperty, UniformReadsAreExact) {
  Compiled compiled("kernel t(plen: i32[B]) {\n  mask = k <= q || k < plen[b];\n}\n");
  ASSERT_TRUE(compiled.attention) << compiled.loaded.diagnostics;
  EXPECT_TRUE(tileRangeLoads(compiled.attention.getMaskBlock()).empty());
  std::mt19937_64 rng(5);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int64_t empty = 0, foundEmpty = 0, full = 0, foundFull = 0;
  for (int t = 0; t < 400; ++t) {
    std::vector<int64_t> plen = {pick(0, 300), pick(0, 300), pick(0, 300), pick(0, 300)};
    int64_t q0 = pick(0, 280), q1 = q0 + pick(1, 20), k0 = pick(0, 280), k1 = k0 + pick(1, 20);
    int64_t bv = pick(0, 3);
    int uniformReads = 0;
    auto folded = foldHookedBounds(
        compiled, bv, q0, q1, k0, k1,
        [&](mlir::OpBuilder &b, mlir::Location loc, llvm::ArrayRef<mlir::Value> idx) {
          ++uniformReads;
          // plen[idx] as IR the canonicalizer folds once idx is constant.
          auto c64 = [&](int64_t v) -> mlir::Value {
            return mlir::arith::ConstantIntOp::create(b, loc, v, 64);
          };
          mlir::Value v = mlir::arith::ConstantIntOp::create(b, loc, plen[3], 32);
          for (int i = 2; i >= 0; --i) {
            mlir::Value is =
                mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::eq, idx[0], c64(i));
            v = mlir::arith::SelectOp::create(
                b, loc, is, mlir::arith::ConstantIntOp::create(b, loc, plen[i], 32), v);
          }
          return v;
        });
    ASSERT_EQ(uniformReads, 1);
    ASSERT_TRUE(folded);
    auto [may, must] = *folded;
    bool anyTrue = false, anyFalse = false;
    for (int64_t q = q0; q < q1; ++q)
      for (int64_t k = k0; k < k1; ++k)
        ((k <= q || k < plen[bv]) ? anyTrue : anyFalse) = true;
    ASSERT_TRUE(may || !anyTrue) << "q " << q0 << ".." << q1 << " k " << k0 << ".." << k1;
    ASSERT_TRUE(!must || !anyFalse) << "q " << q0 << ".." << q1 << " k " << k0 << ".." << k1;
    // Exact where the union is an interval test per side: past both bounds
    // is EMPTY; inside the prefix (or entirely below the diagonal) is FULL.
    if (k0 > q1 - 1 && k0 >= plen[bv]) {
      ++empty;
      foundEmpty += !may;
    }
    if (k1 - 1 < plen[bv] || k1 - 1 <= q0) {
      ++full;
      foundFull += must;
    }
  }
  EXPECT_EQ(foundEmpty, empty);
  EXPECT_EQ(foundFull, full);
  EXPECT_GT(empty, 0);
  EXPECT_GT(full, 0);
}

/// A block mask (`blk[q / 8, k / 8]`, a runtime tensor as FlexAttention's
/// BlockMask or a top-k block selection): on a tile inside one block the
/// read is one element, read through the uniform-load hook at run time, and
/// the class is exact; on a tile across blocks the read is the element
/// type's range (PARTIAL), never unsound.
TEST(TileBoundsProperty, BlockMaskReadsAreExactInsideABlock) {
  Compiled compiled("kernel t(blk: i32[4, 4]) {\n  mask = blk[q / 8, k / 8] != 0;\n}\n");
  ASSERT_TRUE(compiled.attention) << compiled.loaded.diagnostics;
  EXPECT_TRUE(tileRangeLoads(compiled.attention.getMaskBlock()).empty());
  std::mt19937_64 rng(9);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int64_t inside = 0, decided = 0, across = 0;
  for (int t = 0; t < 400; ++t) {
    int32_t blk[4][4];
    for (auto &row : blk)
      for (int32_t &v : row)
        v = int32_t(pick(0, 2)) - 1; // -1, 0, 1: nonzero is kept
    bool aligned = pick(0, 1);
    int64_t q0, q1, k0, k1;
    if (aligned) {
      int64_t qb = pick(0, 3), kb = pick(0, 3);
      q0 = qb * 8 + pick(0, 7), q1 = pick(q0 + 1, qb * 8 + 8);
      k0 = kb * 8 + pick(0, 7), k1 = pick(k0 + 1, kb * 8 + 8);
    } else {
      q0 = pick(0, 30), q1 = pick(q0 + 1, 32), k0 = pick(0, 30), k1 = pick(k0 + 1, 32);
    }
    auto folded = foldHookedBounds(
        compiled, 0, q0, q1, k0, k1,
        [&](mlir::OpBuilder &b, mlir::Location loc, llvm::ArrayRef<mlir::Value> idx) {
          // blk[i][j] as IR the canonicalizer folds once i, j are constant.
          auto c64 = [&](int64_t v) -> mlir::Value {
            return mlir::arith::ConstantIntOp::create(b, loc, v, 64);
          };
          mlir::Value v = mlir::arith::ConstantIntOp::create(b, loc, 0, 32);
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              mlir::Value is = mlir::arith::AndIOp::create(
                  b, loc,
                  mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::eq, idx[0],
                                              c64(i)),
                  mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::eq, idx[1],
                                              c64(j)));
              v = mlir::arith::SelectOp::create(
                  b, loc, is, mlir::arith::ConstantIntOp::create(b, loc, blk[i][j], 32), v);
            }
          return v;
        });
    ASSERT_TRUE(folded) << "q " << q0 << ".." << q1 << " k " << k0 << ".." << k1;
    auto [may, must] = *folded;
    bool anyTrue = false, anyFalse = false;
    for (int64_t q = q0; q < q1; ++q)
      for (int64_t k = k0; k < k1; ++k)
        (blk[q / 8][k / 8] != 0 ? anyTrue : anyFalse) = true;
    ASSERT_TRUE(may || !anyTrue) << "q " << q0 << ".." << q1 << " k " << k0 << ".." << k1;
    ASSERT_TRUE(!must || !anyFalse) << "q " << q0 << ".." << q1 << " k " << k0 << ".." << k1;
    bool oneBlock = q0 / 8 == (q1 - 1) / 8 && k0 / 8 == (k1 - 1) / 8;
    if (oneBlock) {
      ++inside;
      decided += anyTrue ? must : !may;
    } else {
      ++across;
      EXPECT_TRUE(may && !must) << "a tile across blocks is PARTIAL";
    }
  }
  EXPECT_EQ(decided, inside);
  EXPECT_GT(inside, 100);
  EXPECT_GT(across, 100);
}

} // namespace
