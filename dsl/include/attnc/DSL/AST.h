//===- AST.h - The attnc DSL abstract syntax tree ---------------*- C++ -*-===//
//
// Plain C++ classes for the DSL: no ANTLR types reach past the parse-tree
// visitor. The parser builds the tree; Sema resolves names and fills in the
// annotations marked "Sema" below; MLIRGen and the float64 reference read the
// annotated tree.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DSL_AST_H
#define ATTNC_DSL_AST_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Casting.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attnc::dsl {

/// A position in a source buffer; line and column are 1-based.
struct Location {
  std::string file;
  unsigned line = 0;
  unsigned col = 0;
};

/// Scalar types of DSL expressions. Tensors are parameters only; indexing one
/// yields its element type.
enum class ScalarType { Invalid, Bool, I32, I64, F32 };

llvm::StringRef toString(ScalarType type);
/// Parses "bool", "i32", "i64", "f32"; Invalid otherwise.
ScalarType parseScalarType(llvm::StringRef name);
inline bool isInteger(ScalarType t) {
  return t == ScalarType::I32 || t == ScalarType::I64;
}

class DefDecl;
class ParamDecl;
class LetStmt;

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

class Expr {
public:
  enum class Kind { IntLit, FloatLit, BoolLit, Name, Call, Index, Unary, Binary, Cond };

  Expr(Kind kind, Location loc) : kind(kind), loc(std::move(loc)) {}
  virtual ~Expr() = default;

  Kind getKind() const { return kind; }
  const Location &getLoc() const { return loc; }

  /// Sema: the type of the value.
  ScalarType type = ScalarType::Invalid;

private:
  const Kind kind;
  Location loc;
};

using ExprPtr = std::unique_ptr<Expr>;

class IntLitExpr : public Expr {
public:
  IntLitExpr(Location loc, int64_t value) : Expr(Kind::IntLit, std::move(loc)), value(value) {}
  /// An integer literal used where a float is expected has type F32 after Sema.
  int64_t value;
  static bool classof(const Expr *e) { return e->getKind() == Kind::IntLit; }
};

class FloatLitExpr : public Expr {
public:
  FloatLitExpr(Location loc, double value) : Expr(Kind::FloatLit, std::move(loc)), value(value) {}
  double value;
  static bool classof(const Expr *e) { return e->getKind() == Kind::FloatLit; }
};

class BoolLitExpr : public Expr {
public:
  BoolLitExpr(Location loc, bool value) : Expr(Kind::BoolLit, std::move(loc)), value(value) {}
  bool value;
  static bool classof(const Expr *e) { return e->getKind() == Kind::BoolLit; }
};

/// Built-in dimension symbols usable in tensor shapes.
enum class DimSymbol { B, Hq, Hkv, Nq, Nk, N, D };
llvm::StringRef toString(DimSymbol sym);

/// Built-in functions and casts.
enum class Builtin {
  None, Min, Max, Abs, Clamp, Select, Exp, Exp2, Log, Log2, Tanh, Sqrt, Sigmoid,
  Floor, CastI32, CastI64, CastF32, CastBool
};
Builtin lookupBuiltin(llvm::StringRef name);
llvm::StringRef toString(Builtin b);

struct CallArg {
  std::string name; // empty for positional arguments
  ExprPtr value;
  Location loc;
};

/// A call of a builtin or of a named definition. For definitions, Sema fills
/// `callee`, makes the index arguments explicit (an implicit call `causal` or
/// `softcap(x)` receives the caller's own b, h, q, k) and resolves bindings.
class CallExpr : public Expr {
public:
  CallExpr(Location loc, std::string callee, std::vector<CallArg> args)
      : Expr(Kind::Call, std::move(loc)), calleeName(std::move(callee)), args(std::move(args)) {}
  std::string calleeName;
  std::vector<CallArg> args;

  // Sema:
  Builtin builtin = Builtin::None;
  const DefDecl *callee = nullptr;
  /// Definitions: the full positional argument list (s?, b, h, q, k). Owned
  /// here; entries are either moved from `args` or synthesized.
  std::vector<ExprPtr> positional;
  /// Definitions: one entry per callee effective parameter, in order. Null
  /// means "not bound here: use the caller's parameter of the same name".
  std::vector<const Expr *> paramValues;
  static bool classof(const Expr *e) { return e->getKind() == Kind::Call; }
};

/// What a name refers to, once Sema resolved it.
struct NameRef {
  enum class Kind { Unresolved, IndexVar, ScoreVar, Let, Param, Dim, Definition };
  Kind kind = Kind::Unresolved;
  unsigned indexVar = 0;        // IndexVar: 0=b, 1=h, 2=q, 3=k
  const LetStmt *let = nullptr; // Let
  std::string param;            // Param: name in the enclosing definition's
                                //        effective parameter list
  DimSymbol dim = DimSymbol::B; // Dim
};

class NameExpr : public Expr {
public:
  NameExpr(Location loc, std::string name) : Expr(Kind::Name, std::move(loc)), name(std::move(name)) {}
  std::string name;
  NameRef ref; // Sema
  /// Sema: a bare definition name (`causal`) is an implicit call; this is
  /// that call with its arguments made explicit.
  std::unique_ptr<CallExpr> resolvedCall;
  static bool classof(const Expr *e) { return e->getKind() == Kind::Name; }
};

/// Element read of a tensor parameter: `doc[q]`, `bias[h, d + W]`.
class IndexExpr : public Expr {
public:
  IndexExpr(Location loc, std::string tensor, std::vector<ExprPtr> indices)
      : Expr(Kind::Index, std::move(loc)), tensor(std::move(tensor)), indices(std::move(indices)) {}
  std::string tensor;
  std::vector<ExprPtr> indices;
  std::string param; // Sema: the effective parameter name
  static bool classof(const Expr *e) { return e->getKind() == Kind::Index; }
};

enum class UnaryOp { Neg, Not };
enum class BinaryOp { Mul, Div, Mod, Add, Sub, Lt, Le, Gt, Ge, Eq, Ne, And, Or };
llvm::StringRef toString(UnaryOp op);
llvm::StringRef toString(BinaryOp op);

class UnaryExpr : public Expr {
public:
  UnaryExpr(Location loc, UnaryOp op, ExprPtr operand)
      : Expr(Kind::Unary, std::move(loc)), op(op), operand(std::move(operand)) {}
  UnaryOp op;
  ExprPtr operand;
  static bool classof(const Expr *e) { return e->getKind() == Kind::Unary; }
};

/// Integer `/` and `%` round toward negative infinity (Python semantics), so
/// relative positions behave the same on either side of the diagonal.
class BinaryExpr : public Expr {
public:
  BinaryExpr(Location loc, BinaryOp op, ExprPtr lhs, ExprPtr rhs)
      : Expr(Kind::Binary, std::move(loc)), op(op), lhs(std::move(lhs)), rhs(std::move(rhs)) {}
  BinaryOp op;
  ExprPtr lhs, rhs;
  static bool classof(const Expr *e) { return e->getKind() == Kind::Binary; }
};

class CondExpr : public Expr {
public:
  CondExpr(Location loc, ExprPtr cond, ExprPtr thenExpr, ExprPtr elseExpr)
      : Expr(Kind::Cond, std::move(loc)), cond(std::move(cond)), thenExpr(std::move(thenExpr)),
        elseExpr(std::move(elseExpr)) {}
  ExprPtr cond, thenExpr, elseExpr;
  static bool classof(const Expr *e) { return e->getKind() == Kind::Cond; }
};

//===----------------------------------------------------------------------===//
// Declarations
//===----------------------------------------------------------------------===//

/// `[const] name: type[dims] [= default]`. A tensor has dims; a scalar none.
class ParamDecl {
public:
  std::string name;
  bool isConst = false;
  ScalarType elemType = ScalarType::Invalid;
  std::vector<ExprPtr> dims;
  ExprPtr init;
  Location loc;
  /// The definition or kernel whose parameter list declares it: names in
  /// `dims` and `init` refer to that list.
  const void *owner = nullptr;
  bool isTensor() const { return !dims.empty(); }
};

class LetStmt {
public:
  std::string name;
  ExprPtr value;
  Location loc;
};

struct Ident {
  std::string name;
  Location loc;
};

/// A parameter as seen by a definition after propagation: its own parameters
/// plus those of the definitions it calls without binding them.
struct EffectiveParam {
  std::string name;
  const ParamDecl *decl; // where it was declared (for type, shape, default)
};

enum class DefKind { Mask, Score };

/// `mask name(b, h, q, k; params) = expr;` or `score name(s, b, h, q, k; ...)`.
class DefDecl {
public:
  DefKind kind = DefKind::Mask;
  std::string name;
  std::vector<Ident> indexArgs;
  std::vector<std::unique_ptr<ParamDecl>> params;
  std::vector<std::unique_ptr<LetStmt>> lets;
  ExprPtr body;
  Location loc;
  /// Synthesized by a kernel for its `mask =`/`score =`/`scale =` fields;
  /// such a definition sees the kernel's parameters (`borrowedParams`).
  bool isKernelField = false;
  std::vector<const ParamDecl *> borrowedParams;

  /// The parameters declared for this definition's body to see.
  std::vector<const ParamDecl *> declaredParams() const {
    std::vector<const ParamDecl *> out(borrowedParams);
    for (const auto &p : params)
      out.push_back(p.get());
    return out;
  }

  // Sema:
  std::vector<EffectiveParam> effectiveParams;
  std::string qualifiedModule; // file that defines it

  unsigned numIndexArgs() const { return kind == DefKind::Mask ? 4 : 5; }
  const EffectiveParam *findParam(llvm::StringRef n) const {
    for (const auto &p : effectiveParams)
      if (p.name == n)
        return &p;
    return nullptr;
  }
};

/// `name = value;` or `name = [v1, v2];` inside a kernel or cache block.
struct Field {
  std::string name;
  std::vector<ExprPtr> values;
  bool isList = false;
  Location loc;
};

enum class Normalizer { Softmax, Sigmoid };
enum class HeadMapping { Grouped, Interleaved };
enum class ElemType { F32, F16, BF16 };
llvm::StringRef toString(Normalizer n);
llvm::StringRef toString(HeadMapping h);
llvm::StringRef toString(ElemType e);

class KernelDecl {
public:
  std::string name;
  std::vector<std::unique_ptr<ParamDecl>> params;
  std::vector<Field> fields;
  Location loc;

  // Sema:
  std::unique_ptr<DefDecl> maskDef;  // body from `mask =` (default `true`)
  std::unique_ptr<DefDecl> scoreDef; // body from `score =` (default `s`)
  Normalizer normalizer = Normalizer::Softmax;
  HeadMapping heads = HeadMapping::Grouped;
  std::vector<ElemType> dtypes;  // default {f32, f16, bf16}
  std::vector<int64_t> headDims; // empty: any
  std::string cachePolicy;       // optional `cache = name;`
  /// Union of the parameters of the mask, score and scale, by name.
  std::vector<EffectiveParam> runtimeParams;
  std::vector<EffectiveParam> constParams;
  /// `scale =` as a score-shaped definition whose body may only use
  /// parameters and constants; null means the default 1/sqrt(D).
  std::unique_ptr<DefDecl> scaleDef;
};

struct CacheLayout {
  enum Kind { Contiguous, Paged } kind = Contiguous;
  int64_t pageSize = 0;
};
struct CacheRetention {
  enum Kind { All, SinkWindow, Budget } kind = All;
  int64_t sink = 0, window = 0, budget = 0;
  enum Eviction { H2O, SnapKV } eviction = H2O;
};
struct CacheStorage {
  enum Elem { BF16, F16, FP8, Int8, Int4 } elem = BF16;
  enum Scale { None, PerToken, PerGroup } scale = None;
  int64_t groupSize = 0;
  bool f16Scales = false; // scales stored as f16 (per_group only), else f32
};

class CacheDecl {
public:
  std::string name;
  std::vector<Field> fields;     // record form
  std::vector<Ident> perHead;    // per-head form: the policies to choose from
  Ident table;                   // per-head form: runtime i32[Hkv] table
  Location loc;
  bool isPerHead() const { return !perHead.empty(); }

  // Sema (record form):
  CacheLayout layout;
  CacheRetention retention;
  CacheStorage storage;
};

struct ImportDecl {
  std::string path;
  Location loc;
};

/// One parsed .attn file.
class Module {
public:
  std::string file;
  std::vector<ImportDecl> imports;
  std::vector<std::unique_ptr<DefDecl>> defs;
  std::vector<std::unique_ptr<KernelDecl>> kernels;
  std::vector<std::unique_ptr<CacheDecl>> caches;
};

} // namespace attnc::dsl

#endif // ATTNC_DSL_AST_H
