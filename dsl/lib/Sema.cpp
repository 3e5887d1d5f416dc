//===- Sema.cpp - Name resolution and type checking -----------------------===//
//
// Resolves every name, checks types and arities, binds and propagates
// parameters through calls, orders definitions so callees are checked first
// (diagnosing recursion), and turns kernel and cache fields into their typed
// form. Each error is reported at the offending token; checking goes on so
// that one run reports as many independent errors as it can.
//
//===----------------------------------------------------------------------===//

#include "Sema.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <functional>
#include <map>
#include <set>

using namespace attnc::dsl;

namespace {

const char *const kMaskIndexNames[] = {"b", "h", "q", "k"};

/// Lexical scope of one definition body.
/// Flags collected while checking an expression.
struct ExprInfo {
  bool usesIndices = false; // index variables or the score
  bool usesRuntime = false; // runtime parameters or tensor reads
};

struct Scope {
  DefDecl *def = nullptr;
  std::vector<const LetStmt *> lets; // visible let bindings, in order
  std::map<const LetStmt *, ExprInfo> letInfo;
  bool allowIndices = true; // false for `scale =` and parameter defaults
  /// Why index variables are not allowed here (for the diagnostic).
  const char *noIndicesReason = "";
  /// Only the first `visibleParams` declared parameters are visible (a
  /// default may only use parameters declared before it); -1: all.
  int visibleParams = -1;
};

class SemaImpl {
public:
  SemaImpl(Program &prog, mlir::MLIRContext &ctx) : prog(prog), ctx(ctx) {}

  bool run() {
    collectSymbols();
    if (failed)
      return false;
    orderDefinitions();
    for (DefDecl *def : ordered)
      checkDef(*def);
    for (auto &mod : prog.modules)
      for (auto &cache : mod->caches)
        checkCache(*cache);
    for (auto &mod : prog.modules)
      for (auto &kernel : mod->kernels)
        checkKernel(*kernel);
    return !failed;
  }

private:
  //===--------------------------------------------------------------------===//
  // Diagnostics
  //===--------------------------------------------------------------------===//

  mlir::InFlightDiagnostic error(const Location &l) {
    failed = true;
    return mlir::emitError(toMLIRLoc(ctx, l));
  }
  void note(mlir::InFlightDiagnostic &diag, const Location &l, const std::string &msg) {
    diag.attachNote(toMLIRLoc(ctx, l)) << msg;
  }

  //===--------------------------------------------------------------------===//
  // Symbols and ordering
  //===--------------------------------------------------------------------===//

  void collectSymbols() {
    // One namespace shared by definitions, kernels and cache policies so a
    // name always means one thing.
    std::map<std::string, Location> seen;
    auto declare = [&](const std::string &name, const Location &l, const char *what) {
      auto [it, inserted] = seen.emplace(name, l);
      if (!inserted) {
        auto diag = error(l);
        diag << "duplicate definition of " << what << " '" << name << "'";
        note(diag, it->second, "previous definition is here");
        return false;
      }
      if (lookupBuiltin(name) != Builtin::None || parseScalarType(name) != ScalarType::Invalid) {
        error(l) << "'" << name << "' is a builtin and cannot be redefined";
        return false;
      }
      return true;
    };
    // Imported modules first (modules are stored main file first), so a
    // clash is reported at the importing file's definition.
    for (auto &mod : llvm::reverse(prog.modules)) {
      for (auto &def : mod->defs) {
        def->qualifiedModule = mod->file;
        if (declare(def->name, def->loc, def->kind == DefKind::Mask ? "mask" : "score"))
          prog.defs[def->name] = def.get();
      }
      for (auto &kernel : mod->kernels)
        if (declare(kernel->name, kernel->loc, "kernel"))
          prog.kernels[kernel->name] = kernel.get();
      for (auto &cache : mod->caches)
        if (declare(cache->name, cache->loc, "cache policy"))
          prog.caches[cache->name] = cache.get();
    }
  }

  /// Calls of definitions made anywhere in `def` (syntactically), with the
  /// location of each call.
  void collectCalls(const Expr *e, std::vector<std::pair<DefDecl *, Location>> &out) {
    if (!e)
      return;
    auto lookup = [&](const std::string &name) -> DefDecl * {
      auto it = prog.defs.find(name);
      return it == prog.defs.end() ? nullptr : it->second;
    };
    switch (e->getKind()) {
    case Expr::Kind::Name:
      if (DefDecl *d = lookup(llvm::cast<NameExpr>(e)->name))
        out.push_back({d, e->getLoc()});
      break;
    case Expr::Kind::Call: {
      auto *call = llvm::cast<CallExpr>(e);
      if (DefDecl *d = lookup(call->calleeName))
        out.push_back({d, e->getLoc()});
      for (auto &a : call->args)
        collectCalls(a.value.get(), out);
      break;
    }
    case Expr::Kind::Index:
      for (auto &i : llvm::cast<IndexExpr>(e)->indices)
        collectCalls(i.get(), out);
      break;
    case Expr::Kind::Unary:
      collectCalls(llvm::cast<UnaryExpr>(e)->operand.get(), out);
      break;
    case Expr::Kind::Binary:
      collectCalls(llvm::cast<BinaryExpr>(e)->lhs.get(), out);
      collectCalls(llvm::cast<BinaryExpr>(e)->rhs.get(), out);
      break;
    case Expr::Kind::Cond: {
      auto *c = llvm::cast<CondExpr>(e);
      collectCalls(c->cond.get(), out);
      collectCalls(c->thenExpr.get(), out);
      collectCalls(c->elseExpr.get(), out);
      break;
    }
    default:
      break;
    }
  }

  std::vector<std::pair<DefDecl *, Location>> callsOf(DefDecl *def) {
    std::vector<std::pair<DefDecl *, Location>> calls;
    for (auto &p : def->params) {
      for (auto &d : p->dims)
        collectCalls(d.get(), calls);
      collectCalls(p->init.get(), calls);
    }
    for (auto &let : def->lets)
      collectCalls(let->value.get(), calls);
    collectCalls(def->body.get(), calls);
    return calls;
  }

  /// Post-order over the call graph; a back edge is a recursive definition.
  void orderDefinitions() {
    enum State { Unvisited, Visiting, Done };
    std::map<DefDecl *, State> state;
    std::vector<DefDecl *> stack;
    std::function<void(DefDecl *)> visit = [&](DefDecl *def) {
      state[def] = Visiting;
      stack.push_back(def);
      for (auto &[callee, l] : callsOf(def)) {
        if (state[callee] == Visiting) {
          std::string chain;
          auto it = llvm::find(stack, callee);
          for (; it != stack.end(); ++it)
            chain += "'" + (*it)->name + "' -> ";
          chain += "'" + callee->name + "'";
          error(l) << "recursive definition: " << chain;
          recursive.insert(def);
          continue;
        }
        if (state[callee] == Unvisited)
          visit(callee);
      }
      stack.pop_back();
      state[def] = Done;
      ordered.push_back(def);
    };
    for (auto &mod : prog.modules)
      for (auto &def : mod->defs)
        if (prog.defs[def->name] == def.get() && state[def.get()] == Unvisited)
          visit(def.get());
  }

  //===--------------------------------------------------------------------===//
  // Definitions
  //===--------------------------------------------------------------------===//

  void checkParams(DefDecl &def, const std::vector<const ParamDecl *> &params) {
    llvm::StringSet<> names;
    for (auto &arg : def.indexArgs)
      names.insert(arg.name);
    for (size_t index = 0; index < params.size(); ++index) {
      const ParamDecl *p = params[index];
      // A kernel's parameters are visible in its mask, score and scale, where
      // s, b, h, q and k are the index arguments.
      if (llvm::any_of(def.indexArgs, [&](const Ident &i) { return i.name == p->name; }) ||
          (def.isKernelField && p->name == "s"))
        error(p->loc) << "parameter '" << p->name << "' has the name of an index argument";
      else if (!names.insert(p->name).second)
        error(p->loc) << "duplicate parameter '" << p->name << "'";
      if (p->isTensor()) {
        if (p->isConst)
          error(p->loc) << "tensor parameter '" << p->name << "' cannot be const";
        if (p->init)
          error(p->init->getLoc()) << "tensor parameter '" << p->name
                                   << "' cannot have a default value";
        for (auto &dim : p->dims)
          checkDim(def, *dim);
      } else if (p->init) {
        Scope scope;
        scope.def = &def;
        scope.allowIndices = false;
        scope.noIndicesReason = "a parameter default must be a constant expression";
        scope.visibleParams = int(index);
        ExprInfo info;
        ScalarType t = checkExpr(*p->init, scope, info);
        coerce(*p->init, p->elemType);
        t = p->init->type;
        if (t != ScalarType::Invalid && t != p->elemType)
          error(p->init->getLoc()) << "default value of '" << p->name << "' has type "
                                   << toString(t) << ", expected " << toString(p->elemType);
        else if (info.usesRuntime || info.usesIndices)
          error(p->init->getLoc()) << "default value of '" << p->name
                                   << "' must be a constant expression";
      }
    }
  }

  /// Tensor dimensions: integer expressions over literals, the built-in
  /// dimension symbols and `const` parameters.
  void checkDim(DefDecl &def, Expr &e) {
    if (auto *n = llvm::dyn_cast<NameExpr>(&e)) {
      static const std::pair<const char *, DimSymbol> dims[] = {
          {"B", DimSymbol::B},   {"H", DimSymbol::Hq}, {"Hq", DimSymbol::Hq},
          {"Hkv", DimSymbol::Hkv}, {"Nq", DimSymbol::Nq}, {"Nk", DimSymbol::Nk},
          {"N", DimSymbol::N},   {"D", DimSymbol::D}};
      for (auto &[text, sym] : dims) {
        if (n->name == text) {
          n->ref.kind = NameRef::Kind::Dim;
          n->ref.dim = sym;
          n->type = ScalarType::I64;
          return;
        }
      }
      for (const ParamDecl *p : def.declaredParams()) {
        if (p->name == n->name) {
          if (!p->isConst || p->isTensor() || !isInteger(p->elemType)) {
            error(e.getLoc()) << "dimension '" << n->name
                              << "' must be a const integer parameter or one of B, H, Hq, "
                                 "Hkv, Nq, Nk, N, D";
            return;
          }
          n->ref.kind = NameRef::Kind::Param;
          n->ref.param = p->name;
          n->type = ScalarType::I64;
          return;
        }
      }
      error(e.getLoc()) << "unknown dimension '" << n->name
                        << "' (expected B, H, Hq, Hkv, Nq, Nk, N, D, a const parameter or an "
                           "integer)";
      return;
    }
    if (auto *lit = llvm::dyn_cast<IntLitExpr>(&e)) {
      if (lit->value <= 0)
        error(e.getLoc()) << "tensor dimension must be positive, got " << lit->value;
      lit->type = ScalarType::I64;
      return;
    }
    if (auto *b = llvm::dyn_cast<BinaryExpr>(&e)) {
      if (b->op == BinaryOp::Add || b->op == BinaryOp::Sub || b->op == BinaryOp::Mul ||
          b->op == BinaryOp::Div) {
        checkDim(def, *b->lhs);
        checkDim(def, *b->rhs);
        b->type = ScalarType::I64;
        return;
      }
    }
    error(e.getLoc()) << "invalid tensor dimension: use integers, dimension names, const "
                         "parameters and + - * /";
  }

  void checkDef(DefDecl &def) {
    unsigned want = def.numIndexArgs();
    bool badIndexArgs = def.indexArgs.size() != want;
    if (badIndexArgs) {
      error(def.loc) << (def.kind == DefKind::Mask ? "mask" : "score") << " '" << def.name
                     << "' must take " << want << " index arguments "
                     << (def.kind == DefKind::Mask ? "(b, h, q, k)" : "(s, b, h, q, k)")
                     << ", got " << def.indexArgs.size();
    }
    std::vector<const ParamDecl *> params = def.declaredParams();
    checkParams(def, params);
    for (const ParamDecl *p : params)
      def.effectiveParams.push_back({p->name, p});

    if (recursive.count(&def))
      return; // its calls would chase the cycle again
    if (badIndexArgs)
      return; // implicit calls in the body would use index arguments it lacks

    Scope scope;
    scope.def = &def;
    ExprInfo info;
    for (auto &let : def.lets) {
      ExprInfo letInfo;
      checkExpr(*let->value, scope, letInfo);
      scope.lets.push_back(let.get());
      scope.letInfo[let.get()] = letInfo;
      info.usesIndices |= letInfo.usesIndices;
      info.usesRuntime |= letInfo.usesRuntime;
    }
    ScalarType t = checkExpr(*def.body, scope, info);
    ScalarType expected = def.kind == DefKind::Mask ? ScalarType::Bool : ScalarType::F32;
    coerce(*def.body, expected);
    t = def.body->type;
    if (t != ScalarType::Invalid && t != expected) {
      error(def.body->getLoc()) << (def.kind == DefKind::Mask ? "mask" : "score") << " '"
                                << def.name << "' must yield " << toString(expected) << ", got "
                                << toString(t);
    }
  }

  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  /// Integer literals take the type their context asks for, so `s * 2` and
  /// `q - 1` both read naturally.
  static void coerce(Expr &e, ScalarType target) {
    if (target != ScalarType::F32 && target != ScalarType::I64)
      return;
    if (auto *lit = llvm::dyn_cast<IntLitExpr>(&e)) {
      if (lit->type == ScalarType::I32 || (lit->type == ScalarType::I64 && target == ScalarType::F32))
        lit->type = target;
      return;
    }
    if (auto *u = llvm::dyn_cast<UnaryExpr>(&e)) {
      if (u->op == UnaryOp::Neg && isLiteralTree(*u->operand)) {
        coerce(*u->operand, target);
        u->type = u->operand->type;
      }
      return;
    }
    if (auto *b = llvm::dyn_cast<BinaryExpr>(&e)) {
      if (isArith(b->op) && isLiteralTree(*b->lhs) && isLiteralTree(*b->rhs)) {
        if (target == ScalarType::F32 && (b->op == BinaryOp::Mod || b->op == BinaryOp::Div))
          return; // integer division of literals stays integer
        coerce(*b->lhs, target);
        coerce(*b->rhs, target);
        b->type = b->lhs->type;
      }
    }
  }
  static bool isArith(BinaryOp op) {
    return op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul ||
           op == BinaryOp::Div || op == BinaryOp::Mod;
  }
  /// An expression made only of integer literals and arithmetic.
  static bool isLiteralTree(const Expr &e) {
    if (llvm::isa<IntLitExpr>(&e))
      return isInteger(e.type);
    if (auto *u = llvm::dyn_cast<UnaryExpr>(&e))
      return u->op == UnaryOp::Neg && isLiteralTree(*u->operand);
    if (auto *b = llvm::dyn_cast<BinaryExpr>(&e))
      return isArith(b->op) && isLiteralTree(*b->lhs) && isLiteralTree(*b->rhs);
    return false;
  }

  /// Makes two operands agree, coercing literals; reports a mismatch.
  bool unify(Expr &a, Expr &b, const Location &l, llvm::StringRef what) {
    if (a.type == ScalarType::Invalid || b.type == ScalarType::Invalid)
      return false;
    if (a.type != b.type && isLiteralTree(a))
      coerce(a, b.type);
    if (a.type != b.type && isLiteralTree(b))
      coerce(b, a.type);
    if (a.type != b.type) {
      error(l) << "type mismatch in " << what << ": " << toString(a.type) << " and "
               << toString(b.type) << castHint(a.type, b.type);
      return false;
    }
    return true;
  }
  static std::string castHint(ScalarType a, ScalarType b) {
    if (a == ScalarType::F32 || b == ScalarType::F32)
      return " (convert with f32(...))";
    if (isInteger(a) && isInteger(b))
      return " (convert with i64(...) or i32(...))";
    return "";
  }

  ScalarType checkExpr(Expr &e, Scope &scope, ExprInfo &info) {
    e.type = checkExprImpl(e, scope, info);
    return e.type;
  }

  ScalarType checkExprImpl(Expr &e, Scope &scope, ExprInfo &info) {
    switch (e.getKind()) {
    case Expr::Kind::IntLit: {
      int64_t v = llvm::cast<IntLitExpr>(e).value;
      return (v >= INT32_MIN && v <= INT32_MAX) ? ScalarType::I32 : ScalarType::I64;
    }
    case Expr::Kind::FloatLit:
      return ScalarType::F32;
    case Expr::Kind::BoolLit:
      return ScalarType::Bool;
    case Expr::Kind::Name:
      return checkName(llvm::cast<NameExpr>(e), scope, info);
    case Expr::Kind::Call:
      return checkCall(llvm::cast<CallExpr>(e), scope, info);
    case Expr::Kind::Index:
      return checkIndex(llvm::cast<IndexExpr>(e), scope, info);
    case Expr::Kind::Unary: {
      auto &u = llvm::cast<UnaryExpr>(e);
      ScalarType t = checkExpr(*u.operand, scope, info);
      if (t == ScalarType::Invalid)
        return t;
      if (u.op == UnaryOp::Not && t != ScalarType::Bool) {
        error(e.getLoc()) << "operator '!' expects bool, got " << toString(t);
        return ScalarType::Invalid;
      }
      if (u.op == UnaryOp::Neg && t == ScalarType::Bool) {
        error(e.getLoc()) << "operator '-' expects a number, got bool";
        return ScalarType::Invalid;
      }
      return t;
    }
    case Expr::Kind::Binary:
      return checkBinary(llvm::cast<BinaryExpr>(e), scope, info);
    case Expr::Kind::Cond: {
      auto &c = llvm::cast<CondExpr>(e);
      ScalarType ct = checkExpr(*c.cond, scope, info);
      checkExpr(*c.thenExpr, scope, info);
      checkExpr(*c.elseExpr, scope, info);
      if (ct != ScalarType::Invalid && ct != ScalarType::Bool) {
        error(c.cond->getLoc()) << "condition must be bool, got " << toString(ct);
        return ScalarType::Invalid;
      }
      if (!unify(*c.thenExpr, *c.elseExpr, e.getLoc(), "'?:' branches"))
        return ScalarType::Invalid;
      return c.thenExpr->type;
    }
    }
    return ScalarType::Invalid;
  }

  ScalarType checkBinary(BinaryExpr &b, Scope &scope, ExprInfo &info) {
    ScalarType lt = checkExpr(*b.lhs, scope, info);
    ScalarType rt = checkExpr(*b.rhs, scope, info);
    if (lt == ScalarType::Invalid || rt == ScalarType::Invalid)
      return ScalarType::Invalid;
    std::string what = "operator '" + toString(b.op).str() + "'";
    switch (b.op) {
    case BinaryOp::And:
    case BinaryOp::Or:
      if (lt != ScalarType::Bool || rt != ScalarType::Bool) {
        error(b.getLoc()) << what << " expects bool operands, got " << toString(lt) << " and "
                          << toString(rt);
        return ScalarType::Invalid;
      }
      return ScalarType::Bool;
    case BinaryOp::Eq:
    case BinaryOp::Ne:
      return unify(*b.lhs, *b.rhs, b.getLoc(), what) ? ScalarType::Bool : ScalarType::Invalid;
    case BinaryOp::Lt:
    case BinaryOp::Le:
    case BinaryOp::Gt:
    case BinaryOp::Ge:
      if (!unify(*b.lhs, *b.rhs, b.getLoc(), what))
        return ScalarType::Invalid;
      if (b.lhs->type == ScalarType::Bool) {
        error(b.getLoc()) << what << " expects numbers, got bool";
        return ScalarType::Invalid;
      }
      return ScalarType::Bool;
    default:
      if (!unify(*b.lhs, *b.rhs, b.getLoc(), what))
        return ScalarType::Invalid;
      if (b.lhs->type == ScalarType::Bool) {
        error(b.getLoc()) << what << " expects numbers, got bool";
        return ScalarType::Invalid;
      }
      if (b.op == BinaryOp::Mod && b.lhs->type == ScalarType::F32) {
        error(b.getLoc()) << "operator '%' expects integers, got f32";
        return ScalarType::Invalid;
      }
      return b.lhs->type;
    }
  }

  const ParamDecl *lookupParam(const Scope &scope, llvm::StringRef name) {
    auto params = scope.def->declaredParams();
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i]->name != name)
        continue;
      if (scope.visibleParams >= 0 && int(i) >= scope.visibleParams)
        return nullptr; // declared later: see checkName's diagnostic
      return params[i];
    }
    return nullptr;
  }

  ScalarType checkName(NameExpr &n, Scope &scope, ExprInfo &info) {
    for (auto it = scope.lets.rbegin(); it != scope.lets.rend(); ++it) {
      if ((*it)->name == n.name) {
        n.ref.kind = NameRef::Kind::Let;
        n.ref.let = *it;
        const ExprInfo &li = scope.letInfo[*it];
        info.usesIndices |= li.usesIndices;
        info.usesRuntime |= li.usesRuntime;
        return (*it)->value->type;
      }
    }
    const DefDecl &def = *scope.def;
    for (unsigned i = 0; i < def.indexArgs.size(); ++i) {
      if (def.indexArgs[i].name != n.name)
        continue;
      if (!scope.allowIndices) {
        error(n.getLoc()) << "'" << n.name << "' cannot be used here: "
                          << scope.noIndicesReason;
        return ScalarType::Invalid;
      }
      info.usesIndices = true;
      bool isScore = def.kind == DefKind::Score;
      if (isScore && i == 0) {
        n.ref.kind = NameRef::Kind::ScoreVar;
        return ScalarType::F32;
      }
      n.ref.kind = NameRef::Kind::IndexVar;
      n.ref.indexVar = isScore ? i - 1 : i;
      return ScalarType::I32;
    }
    if (const ParamDecl *p = lookupParam(scope, n.name)) {
      if (p->isTensor()) {
        error(n.getLoc()) << "tensor parameter '" << n.name << "' must be indexed, e.g. "
                          << n.name << "[...]";
        return ScalarType::Invalid;
      }
      if (!p->isConst)
        info.usesRuntime = true;
      n.ref.kind = NameRef::Kind::Param;
      n.ref.param = p->name;
      return p->elemType;
    }
    if (prog.defs.count(n.name)) {
      // A bare definition name is an implicit call at the caller's indices.
      std::vector<CallArg> none;
      return checkDefCall(n, n.name, none, scope, info, /*bare=*/true);
    }
    if (scope.visibleParams >= 0 &&
        llvm::any_of(scope.def->declaredParams(),
                     [&](const ParamDecl *p) { return p->name == n.name; })) {
      error(n.getLoc()) << "'" << n.name
                        << "' is declared after this default; a default may only use the "
                           "parameters declared before it";
      return ScalarType::Invalid;
    }
    static const char *const dims[] = {"B", "H", "Hq", "Hkv", "Nq", "Nk", "N", "D"};
    for (const char *d : dims) {
      if (n.name == d) {
        error(n.getLoc()) << "dimension '" << n.name << "' can only be used in tensor shapes";
        return ScalarType::Invalid;
      }
    }
    error(n.getLoc()) << "unknown name '" << n.name << "'";
    return ScalarType::Invalid;
  }

  ScalarType checkIndex(IndexExpr &ix, Scope &scope, ExprInfo &info) {
    const ParamDecl *p = lookupParam(scope, ix.tensor);
    for (auto &i : ix.indices)
      checkExpr(*i, scope, info);
    if (!p) {
      error(ix.getLoc()) << (prog.defs.count(ix.tensor) ? "cannot index definition '"
                                                         : "unknown tensor parameter '")
                         << ix.tensor << "'";
      return ScalarType::Invalid;
    }
    if (!p->isTensor()) {
      error(ix.getLoc()) << "'" << ix.tensor << "' is a scalar parameter and cannot be indexed";
      return ScalarType::Invalid;
    }
    if (ix.indices.size() != p->dims.size()) {
      error(ix.getLoc()) << "tensor '" << ix.tensor << "' has rank " << p->dims.size() << " but "
                         << ix.indices.size() << (ix.indices.size() == 1 ? " index was" : " indices were")
                         << " given";
      return ScalarType::Invalid;
    }
    for (auto &i : ix.indices) {
      if (i->type != ScalarType::Invalid && !isInteger(i->type)) {
        error(i->getLoc()) << "tensor index must be an integer, got " << toString(i->type);
        return ScalarType::Invalid;
      }
    }
    info.usesRuntime = true;
    ix.param = p->name;
    return p->elemType;
  }

  ScalarType checkCall(CallExpr &call, Scope &scope, ExprInfo &info) {
    Builtin b = lookupBuiltin(call.calleeName);
    if (b == Builtin::None) {
      if (prog.defs.count(call.calleeName))
        return checkDefCall(call, call.calleeName, call.args, scope, info, /*bare=*/false);
      if (lookupParam(scope, call.calleeName)) {
        error(call.getLoc()) << "'" << call.calleeName
                             << "' is a parameter, not a function; index tensors with [...]";
        return ScalarType::Invalid;
      }
      error(call.getLoc()) << "unknown function '" << call.calleeName << "'";
      return ScalarType::Invalid;
    }
    call.builtin = b;
    for (auto &a : call.args) {
      if (!a.name.empty()) {
        error(a.loc) << "builtin '" << call.calleeName << "' takes no named arguments";
        return ScalarType::Invalid;
      }
      checkExpr(*a.value, scope, info);
    }
    for (auto &a : call.args)
      if (a.value->type == ScalarType::Invalid)
        return ScalarType::Invalid;

    auto arity = [&](unsigned n) {
      if (call.args.size() == n)
        return true;
      error(call.getLoc()) << "'" << call.calleeName << "' expects " << n << " argument"
                           << (n == 1 ? "" : "s") << ", got " << call.args.size();
      return false;
    };
    auto numeric = [&](Expr &e) {
      if (e.type == ScalarType::Bool) {
        error(e.getLoc()) << "'" << call.calleeName << "' expects a number, got bool";
        return false;
      }
      return true;
    };
    switch (b) {
    case Builtin::Min:
    case Builtin::Max:
      if (!arity(2) || !unify(*call.args[0].value, *call.args[1].value, call.getLoc(),
                              "'" + call.calleeName + "'") ||
          !numeric(*call.args[0].value))
        return ScalarType::Invalid;
      return call.args[0].value->type;
    case Builtin::Abs:
      if (!arity(1) || !numeric(*call.args[0].value))
        return ScalarType::Invalid;
      return call.args[0].value->type;
    case Builtin::Clamp: {
      if (!arity(3))
        return ScalarType::Invalid;
      std::string what = "'clamp'";
      if (!unify(*call.args[0].value, *call.args[1].value, call.getLoc(), what) ||
          !unify(*call.args[0].value, *call.args[2].value, call.getLoc(), what) ||
          !unify(*call.args[1].value, *call.args[2].value, call.getLoc(), what) ||
          !numeric(*call.args[0].value))
        return ScalarType::Invalid;
      return call.args[0].value->type;
    }
    case Builtin::Select:
      if (!arity(3))
        return ScalarType::Invalid;
      if (call.args[0].value->type != ScalarType::Bool) {
        error(call.args[0].value->getLoc())
            << "'select' condition must be bool, got " << toString(call.args[0].value->type);
        return ScalarType::Invalid;
      }
      if (!unify(*call.args[1].value, *call.args[2].value, call.getLoc(), "'select'"))
        return ScalarType::Invalid;
      return call.args[1].value->type;
    case Builtin::CastI32:
    case Builtin::CastI64:
    case Builtin::CastF32:
    case Builtin::CastBool:
      if (!arity(1))
        return ScalarType::Invalid;
      return b == Builtin::CastI32   ? ScalarType::I32
             : b == Builtin::CastI64 ? ScalarType::I64
             : b == Builtin::CastF32 ? ScalarType::F32
                                     : ScalarType::Bool;
    default: // exp, exp2, log, log2, tanh, sqrt, sigmoid, floor
      if (!arity(1))
        return ScalarType::Invalid;
      coerce(*call.args[0].value, ScalarType::F32);
      if (call.args[0].value->type != ScalarType::F32) {
        error(call.args[0].value->getLoc())
            << "'" << call.calleeName << "' expects f32, got "
            << toString(call.args[0].value->type) << castHint(call.args[0].value->type, ScalarType::F32);
        return ScalarType::Invalid;
      }
      return ScalarType::F32;
    }
  }

  /// Calls of named definitions; `node` is the CallExpr or a bare NameExpr.
  ScalarType checkDefCall(Expr &node, const std::string &name, std::vector<CallArg> &args,
                          Scope &scope, ExprInfo &info, bool bare) {
    DefDecl *callee = prog.defs[name];
    DefDecl &caller = *scope.def;
    bool calleeIsScore = callee->kind == DefKind::Score;
    ScalarType result = calleeIsScore ? ScalarType::F32 : ScalarType::Bool;

    std::vector<CallArg *> positional;
    std::vector<CallArg *> named;
    for (auto &a : args) {
      if (!a.name.empty())
        named.push_back(&a);
      else if (!named.empty()) {
        error(a.loc) << "positional argument after a named argument";
        return ScalarType::Invalid;
      } else
        positional.push_back(&a);
    }

    // Decide which index arguments are implicit.
    unsigned full = callee->numIndexArgs();
    unsigned implicitFrom; // positional args given explicitly
    if (positional.size() == full)
      implicitFrom = full;
    else if (!calleeIsScore && positional.empty())
      implicitFrom = 0;
    else if (calleeIsScore && positional.size() == 1)
      implicitFrom = 1;
    else if (calleeIsScore && positional.empty() && caller.kind == DefKind::Score)
      implicitFrom = 0; // bare score inside a score: applies to the caller's s
    else if (calleeIsScore && positional.empty()) {
      error(node.getLoc()) << "score '" << name << "' needs a score argument here: write " << name
                           << "(x)";
      return ScalarType::Invalid;
    } else {
      error(node.getLoc()) << (calleeIsScore ? "score" : "mask") << " '" << name << "' expects "
                           << (calleeIsScore ? "1 argument (s) or 5 (s, b, h, q, k)"
                                             : "no arguments or 4 (b, h, q, k)")
                           << ", got " << positional.size();
      return ScalarType::Invalid;
    }
    if (implicitFrom < full && !scope.allowIndices) {
      error(node.getLoc()) << "'" << name << "' needs index arguments, which a kernel scale has not";
      return ScalarType::Invalid;
    }
    if (implicitFrom == 0 && calleeIsScore && caller.kind != DefKind::Score) {
      error(node.getLoc()) << "score '" << name << "' needs a score argument here: write " << name
                           << "(x)";
      return ScalarType::Invalid;
    }

    auto *call = llvm::dyn_cast<CallExpr>(&node);
    std::vector<ExprPtr> resolved;
    bool ok = true;
    for (unsigned i = 0; i < full; ++i) {
      ExprPtr arg;
      if (i < implicitFrom) {
        arg = std::move(positional[i]->value);
        checkExpr(*arg, scope, info);
      } else {
        // The caller's own argument at the same position: the score s, or
        // index variable number `var` (b, h, q, k).
        bool wantsScore = calleeIsScore && i == 0;
        if (wantsScore && caller.kind != DefKind::Score) {
          ok = false;
          break;
        }
        unsigned var = calleeIsScore ? i - 1 : i;
        unsigned callerPos = wantsScore ? 0 : var + (caller.kind == DefKind::Score ? 1 : 0);
        auto n = std::make_unique<NameExpr>(node.getLoc(), caller.indexArgs.size() > callerPos
                                                               ? caller.indexArgs[callerPos].name
                                                               : "?");
        checkExpr(*n, scope, info);
        arg = std::move(n);
      }
      ScalarType want = (calleeIsScore && i == 0) ? ScalarType::F32 : ScalarType::I32;
      coerce(*arg, want);
      if (arg->type != ScalarType::Invalid && arg->type != want) {
        error(arg->getLoc()) << "argument " << (i + 1) << " of '" << name << "' must be "
                             << toString(want) << ", got " << toString(arg->type);
        ok = false;
      }
      if (arg->type == ScalarType::Invalid)
        ok = false;
      resolved.push_back(std::move(arg));
    }

    // Parameter bindings.
    std::vector<const Expr *> values(callee->effectiveParams.size(), nullptr);
    for (CallArg *a : named) {
      auto it = llvm::find_if(callee->effectiveParams,
                              [&](const EffectiveParam &p) { return p.name == a->name; });
      if (it == callee->effectiveParams.end()) {
        error(a->loc) << "'" << name << "' has no parameter '" << a->name << "'";
        ok = false;
        continue;
      }
      unsigned idx = it - callee->effectiveParams.begin();
      if (values[idx]) {
        error(a->loc) << "parameter '" << a->name << "' is bound twice";
        ok = false;
        continue;
      }
      const ParamDecl *p = it->decl;
      ExprInfo argInfo;
      if (p->isTensor()) {
        // A tensor is passed through by name: rename, not compute.
        auto *n = llvm::dyn_cast<NameExpr>(a->value.get());
        const ParamDecl *src = n ? lookupParam(scope, n->name) : nullptr;
        if (!src || !src->isTensor()) {
          error(a->value->getLoc()) << "tensor parameter '" << a->name
                                    << "' must be bound to a tensor parameter";
          ok = false;
          continue;
        }
        if (src->elemType != p->elemType || src->dims.size() != p->dims.size()) {
          error(a->value->getLoc()) << "tensor '" << n->name << "' does not match parameter '"
                                    << a->name << "' (element type or rank differs)";
          ok = false;
          continue;
        }
        n->ref.kind = NameRef::Kind::Param;
        n->ref.param = src->name;
        n->type = src->elemType;
        info.usesRuntime = true;
      } else {
        checkExpr(*a->value, scope, argInfo);
        coerce(*a->value, p->elemType);
        if (a->value->type != ScalarType::Invalid && a->value->type != p->elemType) {
          error(a->value->getLoc()) << "parameter '" << a->name << "' has type "
                                    << toString(p->elemType) << ", got "
                                    << toString(a->value->type);
          ok = false;
          continue;
        }
        if (p->isConst && (argInfo.usesRuntime || argInfo.usesIndices)) {
          error(a->value->getLoc()) << "const parameter '" << a->name
                                    << "' must be bound to a constant expression";
          ok = false;
          continue;
        }
        info.usesIndices |= argInfo.usesIndices;
        info.usesRuntime |= argInfo.usesRuntime;
      }
      values[idx] = a->value.get();
    }

    // Unbound parameters flow up into the caller.
    for (unsigned i = 0; i < values.size(); ++i) {
      if (values[i])
        continue;
      const EffectiveParam &p = callee->effectiveParams[i];
      if (!propagate(caller, p, node.getLoc(), name))
        ok = false;
      if (!p.decl->isConst)
        info.usesRuntime = true;
    }

    if (!ok)
      return ScalarType::Invalid;
    if (call) {
      call->callee = callee;
      call->positional = std::move(resolved);
      call->paramValues = std::move(values);
    } else {
      // A bare name becomes a call node owned by the NameExpr's parent; keep
      // the resolution on a synthesized CallExpr stored in the name's slot.
      pendingBare.push_back({static_cast<NameExpr *>(&node), callee, std::move(resolved),
                             std::move(values)});
    }
    return result;
  }

  /// `const i32`, `f32 tensor of rank 2`: what must agree between two
  /// declarations of one parameter.
  static std::string describe(const ParamDecl &p) {
    std::string s = (p.isConst ? "const " : "") + toString(p.elemType).str();
    if (p.isTensor())
      s += " tensor of rank " + std::to_string(p.dims.size());
    return s;
  }

  bool propagate(DefDecl &caller, const EffectiveParam &p, const Location &at,
                 const std::string &callee) {
    if (const EffectiveParam *existing = caller.findParam(p.name)) {
      const ParamDecl *a = existing->decl, *b = p.decl;
      if (a == b)
        return true;
      if (a->elemType != b->elemType || a->isConst != b->isConst ||
          a->dims.size() != b->dims.size()) {
        // The caller's parameter may be its own or come from another call.
        std::string owner = caller.isKernelField
                                ? "kernel '" + llvm::StringRef(caller.name).rsplit('.').first.str() + "'"
                                : "'" + caller.name + "'";
        auto diag = error(at);
        diag << "parameter '" << p.name << "' of '" << callee << "' (" << describe(*b)
             << ") conflicts with the '" << p.name << "' that " << owner << " already has ("
             << describe(*a) << "); bind it explicitly, e.g. " << callee << "(" << p.name
             << ": ...)";
        note(diag, a->loc, "'" + p.name + "' (" + describe(*a) + ") declared here");
        note(diag, b->loc, "conflicting '" + p.name + "' (" + describe(*b) + ") declared here");
        return false;
      }
      return true;
    }
    caller.effectiveParams.push_back(p);
    return true;
  }

  //===--------------------------------------------------------------------===//
  // Kernels
  //===--------------------------------------------------------------------===//

  std::unique_ptr<DefDecl> makeFieldDef(KernelDecl &k, DefKind kind, const std::string &suffix,
                                        ExprPtr body, const Location &l) {
    auto def = std::make_unique<DefDecl>();
    def->kind = kind;
    def->name = k.name + "." + suffix;
    def->loc = l;
    def->isKernelField = true;
    if (kind == DefKind::Score)
      def->indexArgs.push_back({"s", l});
    for (const char *n : kMaskIndexNames)
      def->indexArgs.push_back({n, l});
    for (auto &p : k.params)
      def->borrowedParams.push_back(p.get());
    def->body = std::move(body);
    return def;
  }

  std::optional<std::string> identValue(const Field &f) {
    if (f.isList || f.values.size() != 1)
      return std::nullopt;
    if (auto *n = llvm::dyn_cast<NameExpr>(f.values[0].get()))
      return n->name;
    return std::nullopt;
  }

  void checkKernel(KernelDecl &k) {
    std::map<std::string, const Field *> fields;
    static const char *const known[] = {"mask",  "score",   "scale",    "normalizer",
                                        "heads", "dtype",   "head_dim", "cache"};
    for (auto &f : k.fields) {
      if (!llvm::is_contained(llvm::ArrayRef<const char *>(known), llvm::StringRef(f.name))) {
        error(f.loc) << "unknown kernel field '" << f.name
                     << "' (expected mask, score, scale, normalizer, heads, dtype, head_dim or "
                        "cache)";
        continue;
      }
      auto [it, inserted] = fields.emplace(f.name, &f);
      if (!inserted) {
        auto diag = error(f.loc);
        diag << "field '" << f.name << "' is set twice";
        note(diag, it->second->loc, "first set here");
      }
    }
    auto exprField = [&](const char *name) -> ExprPtr {
      auto it = fields.find(name);
      if (it == fields.end())
        return nullptr;
      Field &f = const_cast<Field &>(*it->second);
      if (f.isList || f.values.size() != 1) {
        error(f.loc) << "field '" << name << "' takes one expression, not a list";
        return nullptr;
      }
      return std::move(f.values[0]);
    };

    ExprPtr maskBody = exprField("mask");
    if (!maskBody)
      maskBody = std::make_unique<BoolLitExpr>(k.loc, true);
    ExprPtr scoreBody = exprField("score");
    if (!scoreBody)
      scoreBody = std::make_unique<NameExpr>(k.loc, "s");
    k.maskDef = makeFieldDef(k, DefKind::Mask, "mask", std::move(maskBody), k.loc);
    k.scoreDef = makeFieldDef(k, DefKind::Score, "score", std::move(scoreBody), k.loc);
    checkFieldDef(*k.maskDef, /*allowIndices=*/true);
    checkFieldDef(*k.scoreDef, true);
    if (ExprPtr scale = exprField("scale")) {
      k.scaleDef = makeFieldDef(k, DefKind::Score, "scale", std::move(scale), k.loc);
      checkFieldDef(*k.scaleDef, false);
    }

    auto it = fields.find("normalizer");
    if (it != fields.end()) {
      auto v = identValue(*it->second);
      if (v == "softmax")
        k.normalizer = Normalizer::Softmax;
      else if (v == "sigmoid")
        k.normalizer = Normalizer::Sigmoid;
      else
        error(it->second->loc) << "normalizer must be softmax or sigmoid";
    }
    it = fields.find("heads");
    if (it != fields.end()) {
      auto v = identValue(*it->second);
      if (v == "grouped")
        k.heads = HeadMapping::Grouped;
      else if (v == "interleaved")
        k.heads = HeadMapping::Interleaved;
      else
        error(it->second->loc) << "heads must be grouped (h / (Hq/Hkv)) or interleaved (h % Hkv)";
    }
    it = fields.find("dtype");
    if (it != fields.end()) {
      for (auto &v : it->second->values) {
        auto *n = llvm::dyn_cast<NameExpr>(v.get());
        std::string s = n ? n->name : "";
        if (s == "f32")
          k.dtypes.push_back(ElemType::F32);
        else if (s == "f16")
          k.dtypes.push_back(ElemType::F16);
        else if (s == "bf16")
          k.dtypes.push_back(ElemType::BF16);
        else
          error(v->getLoc()) << "dtype must be f32, f16 or bf16";
      }
    } else {
      k.dtypes = {ElemType::F32, ElemType::F16, ElemType::BF16};
    }
    it = fields.find("head_dim");
    if (it != fields.end()) {
      for (auto &v : it->second->values) {
        auto *lit = llvm::dyn_cast<IntLitExpr>(v.get());
        if (!lit || lit->value <= 0 || lit->value > 1024)
          error(v->getLoc()) << "head_dim must be an integer in [1, 1024]";
        else if (llvm::is_contained(k.headDims, lit->value))
          error(v->getLoc()) << "head_dim " << lit->value << " is listed twice";
        else
          k.headDims.push_back(lit->value);
      }
    }
    it = fields.find("cache");
    if (it != fields.end()) {
      auto v = identValue(*it->second);
      if (!v)
        error(it->second->loc) << "cache must name a cache policy";
      else if (!prog.caches.count(*v))
        error(it->second->values[0]->getLoc()) << "unknown cache policy '" << *v << "'";
      else
        k.cachePolicy = *v;
    }

    // The kernel's parameters: its own, then those its fields pulled in.
    DefDecl *defs[] = {k.maskDef.get(), k.scoreDef.get(), k.scaleDef.get()};
    std::vector<EffectiveParam> all;
    for (DefDecl *d : defs) {
      if (!d)
        continue;
      for (auto &p : d->effectiveParams) {
        auto found = llvm::find_if(all, [&](const EffectiveParam &e) { return e.name == p.name; });
        if (found == all.end()) {
          all.push_back(p);
        } else if (found->decl != p.decl &&
                   (found->decl->elemType != p.decl->elemType ||
                    found->decl->isConst != p.decl->isConst ||
                    found->decl->dims.size() != p.decl->dims.size())) {
          auto diag = error(k.loc);
          diag << "kernel '" << k.name << "': parameter '" << p.name
               << "' is declared with different types by its fields (" << describe(*found->decl)
               << " and " << describe(*p.decl) << "); bind it explicitly in one of them";
          note(diag, found->decl->loc, "'" + p.name + "' (" + describe(*found->decl) + ") declared here");
          note(diag, p.decl->loc, "'" + p.name + "' (" + describe(*p.decl) + ") declared here");
        }
      }
    }
    for (auto &p : all)
      (p.decl->isConst ? k.constParams : k.runtimeParams).push_back(p);
  }

  void checkFieldDef(DefDecl &def, bool allowIndices) {
    for (const ParamDecl *p : def.declaredParams())
      def.effectiveParams.push_back({p->name, p});
    // Kernel parameters are checked once, with the mask definition.
    if (def.name.size() > 5 && llvm::StringRef(def.name).ends_with(".mask"))
      checkParams(def, def.declaredParams());
    Scope scope;
    scope.def = &def;
    scope.allowIndices = allowIndices;
    scope.noIndicesReason = "a kernel scale may only use parameters and constants";
    ExprInfo info;
    checkExpr(*def.body, scope, info);
    ScalarType expected = def.kind == DefKind::Mask ? ScalarType::Bool : ScalarType::F32;
    coerce(*def.body, expected);
    if (def.body->type != ScalarType::Invalid && def.body->type != expected) {
      llvm::StringRef field = llvm::StringRef(def.name).rsplit('.').second;
      error(def.body->getLoc()) << "kernel field '" << field << "' must be " << toString(expected)
                                << ", got " << toString(def.body->type);
    }
  }

  //===--------------------------------------------------------------------===//
  // Cache policies
  //===--------------------------------------------------------------------===//

  /// `name` or `name(args...)` as (callee, args).
  static bool asCall(const Expr &e, std::string &name, std::vector<const Expr *> &args) {
    args.clear();
    if (auto *n = llvm::dyn_cast<NameExpr>(&e)) {
      name = n->name;
      return true;
    }
    if (auto *c = llvm::dyn_cast<CallExpr>(&e)) {
      name = c->calleeName;
      for (auto &a : c->args) {
        if (!a.name.empty())
          return false;
        args.push_back(a.value.get());
      }
      return true;
    }
    return false;
  }
  std::optional<int64_t> positiveInt(const Expr *e, const char *what) {
    auto *lit = llvm::dyn_cast<IntLitExpr>(e);
    if (!lit || lit->value <= 0) {
      error(e->getLoc()) << what << " must be a positive integer";
      return std::nullopt;
    }
    return lit->value;
  }

  void checkCache(CacheDecl &c) {
    if (c.isPerHead()) {
      for (auto &id : c.perHead) {
        auto it = prog.caches.find(id.name);
        if (it == prog.caches.end())
          error(id.loc) << "unknown cache policy '" << id.name << "'";
        else if (it->second->isPerHead())
          error(id.loc) << "per_head cannot choose another per_head policy ('" << id.name << "')";
      }
      return;
    }
    std::set<std::string> seen;
    for (auto &f : c.fields) {
      if (!seen.insert(f.name).second) {
        error(f.loc) << "field '" << f.name << "' is set twice";
        continue;
      }
      if (f.isList || f.values.size() != 1) {
        error(f.loc) << "field '" << f.name << "' takes one value";
        continue;
      }
      const Expr &v = *f.values[0];
      if (f.name == "layout")
        checkLayout(c, v);
      else if (f.name == "retention")
        checkRetention(c, v);
      else if (f.name == "storage")
        checkStorage(c, v);
      else
        error(f.loc) << "unknown cache field '" << f.name
                     << "' (expected layout, retention or storage)";
    }
  }

  void checkLayout(CacheDecl &c, const Expr &v) {
    std::string name;
    std::vector<const Expr *> args;
    if (asCall(v, name, args) && name == "contiguous" && args.empty()) {
      c.layout.kind = CacheLayout::Contiguous;
      return;
    }
    if (asCall(v, name, args) && name == "paged" && args.size() == 1) {
      if (auto p = positiveInt(args[0], "page size")) {
        if (*p & (*p - 1))
          error(args[0]->getLoc()) << "page size must be a power of two, got " << *p;
        c.layout = {CacheLayout::Paged, *p};
      }
      return;
    }
    error(v.getLoc()) << "layout must be contiguous or paged(P)";
  }

  void checkRetention(CacheDecl &c, const Expr &v) {
    std::string name;
    std::vector<const Expr *> args;
    if (asCall(v, name, args) && name == "all" && args.empty()) {
      c.retention.kind = CacheRetention::All;
      return;
    }
    // sink(S) + window(W), or window(W) alone.
    auto term = [&](const Expr &e, const char *want) -> std::optional<int64_t> {
      std::string n;
      std::vector<const Expr *> a;
      if (!asCall(e, n, a) || n != want || a.size() != 1)
        return std::nullopt;
      return positiveInt(a[0], want);
    };
    // Whether `e` is `want(x)`; the value of x is checked by term().
    auto isTerm = [&](const Expr &e, const char *want) {
      std::string n;
      std::vector<const Expr *> a;
      return asCall(e, n, a) && n == want && a.size() == 1;
    };
    if (auto *b = llvm::dyn_cast<BinaryExpr>(&v);
        b && b->op == BinaryOp::Add && isTerm(*b->lhs, "sink") && isTerm(*b->rhs, "window")) {
      auto s = term(*b->lhs, "sink");
      auto w = term(*b->rhs, "window");
      if (s && w) {
        c.retention.kind = CacheRetention::SinkWindow;
        c.retention.sink = *s;
        c.retention.window = *w;
      }
      return;
    } else if (isTerm(v, "window")) {
      if (auto w = term(v, "window")) {
        c.retention.kind = CacheRetention::SinkWindow;
        c.retention.window = *w;
      }
      return;
    } else if (asCall(v, name, args) && name == "budget" && args.size() == 2) {
      std::string ev;
      std::vector<const Expr *> none;
      if (auto n = positiveInt(args[0], "budget")) {
        c.retention.kind = CacheRetention::Budget;
        c.retention.budget = *n;
        if (asCall(*args[1], ev, none) && ev == "h2o")
          c.retention.eviction = CacheRetention::H2O;
        else if (asCall(*args[1], ev, none) && ev == "snapkv")
          c.retention.eviction = CacheRetention::SnapKV;
        else
          error(args[1]->getLoc()) << "eviction score must be h2o or snapkv";
      }
      return;
    }
    error(v.getLoc()) << "retention must be all, window(W), sink(S) + window(W) or budget(N, "
                         "h2o|snapkv)";
  }

  void checkStorage(CacheDecl &c, const Expr &v) {
    std::string name;
    std::vector<const Expr *> args;
    if (!asCall(v, name, args)) {
      error(v.getLoc()) << "storage must be bf16, f16, fp8, int8(scale) or int4(scale)";
      return;
    }
    static const std::pair<const char *, CacheStorage::Elem> elems[] = {
        {"bf16", CacheStorage::BF16}, {"f16", CacheStorage::F16}, {"fp8", CacheStorage::FP8},
        {"int8", CacheStorage::Int8}, {"int4", CacheStorage::Int4}};
    auto it = llvm::find_if(elems, [&](auto &e) { return name == e.first; });
    if (it == std::end(elems)) {
      error(v.getLoc()) << "unknown storage '" << name
                        << "' (expected bf16, f16, fp8, int8 or int4)";
      return;
    }
    c.storage.elem = it->second;
    bool quantized = it->second == CacheStorage::Int8 || it->second == CacheStorage::Int4 ||
                     it->second == CacheStorage::FP8;
    if (!quantized) {
      if (!args.empty())
        error(v.getLoc()) << "storage '" << name << "' takes no scale";
      return;
    }
    if (args.empty() || args.size() > 2) {
      error(v.getLoc()) << "storage '" << name
                        << "' needs a scale granularity: per_token or per_group(G), and "
                           "optionally the scales' type (f32, f16)";
      return;
    }
    // The scales' type: f32 (the default) or f16, which halves their bytes
    // (int4 per group of 32: 144 bytes a token and head instead of 160).
    if (args.size() == 2) {
      auto *type = llvm::dyn_cast<NameExpr>(args[1]);
      if (!type || (type->name != "f32" && type->name != "f16")) {
        error(args[1]->getLoc()) << "scale type must be f32 or f16";
        return;
      }
      c.storage.f16Scales = type->name == "f16";
    }
    std::string g;
    std::vector<const Expr *> gargs;
    if (asCall(*args[0], g, gargs) && g == "per_token" && gargs.empty()) {
      c.storage.scale = CacheStorage::PerToken;
    } else if (asCall(*args[0], g, gargs) && g == "per_group" && gargs.size() == 1) {
      if (auto n = positiveInt(gargs[0], "group size")) {
        c.storage.scale = CacheStorage::PerGroup;
        c.storage.groupSize = *n;
      }
    } else {
      error(args[0]->getLoc()) << "scale granularity must be per_token or per_group(G)";
      return;
    }
    if (c.storage.f16Scales && c.storage.scale != CacheStorage::PerGroup)
      error(args[1]->getLoc()) << "f16 scales need per_group(G) scales";
  }

public:
  /// Bare definition names resolved as implicit calls; the Sema driver
  /// rewrites them into CallExpr nodes after checking.
  struct BareCall {
    NameExpr *name;
    DefDecl *callee;
    std::vector<ExprPtr> positional;
    std::vector<const Expr *> values;
  };
  std::vector<BareCall> pendingBare;

private:
  Program &prog;
  mlir::MLIRContext &ctx;
  bool failed = false;
  std::vector<DefDecl *> ordered;
  std::set<DefDecl *> recursive;
};

} // namespace

bool attnc::dsl::runSema(Program &prog, mlir::MLIRContext &ctx) {
  SemaImpl sema(prog, ctx);
  bool ok = sema.run();
  for (auto &bare : sema.pendingBare) {
    bare.name->ref.kind = NameRef::Kind::Definition;
    bare.name->resolvedCall = std::make_unique<CallExpr>(bare.name->getLoc(), bare.name->name,
                                                         std::vector<CallArg>{});
    CallExpr &call = *bare.name->resolvedCall;
    call.callee = bare.callee;
    call.positional = std::move(bare.positional);
    call.paramValues = std::move(bare.values);
    call.type = bare.name->type;
  }
  return ok;
}
