//===- Reference.cpp - The float64 reference interpreter ------------------===//
//
// A tree-walking interpreter over the Sema-annotated AST. Each definition
// call gets a Frame: its index arguments, its effective parameters (scalar
// values or tensor slots) and memoized let values. Parameters a call does not
// bind (a null paramValues entry) are the caller's parameter of the same name,
// so every value ultimately comes from the kernel's top frame.
//
// Before any arithmetic, a static walk over the call tree evaluates every
// tensor parameter's declared shape in the frame of the definition that
// declares it (where its const parameters have their bound values) and
// records, per kernel-level tensor, the shape the caller must pass.
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Reference.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>

using namespace attnc;
using namespace attnc::dsl;
using namespace attnc::reference;

namespace {

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

/// A DSL scalar. Integers and bools live in `i` (already wrapped to their
/// width), f32 in `f` (as a double: the reference computes in float64).
struct Value {
  ScalarType type = ScalarType::Invalid;
  int64_t i = 0;
  double f = 0;

  static Value ofF32(double v) { return {ScalarType::F32, 0, v}; }
  static Value ofBool(bool v) { return {ScalarType::Bool, v ? 1 : 0, 0}; }
  static Value ofInt(ScalarType t, int64_t v);

  bool isFloat() const { return type == ScalarType::F32; }
  double asDouble() const { return isFloat() ? f : static_cast<double>(i); }
  bool truthy() const { return isFloat() ? f != 0 : i != 0; }
};

/// Two's-complement wrap of `v` to the width of `t`.
int64_t wrapTo(ScalarType t, int64_t v) {
  if (t == ScalarType::I32)
    return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v)));
  if (t == ScalarType::Bool)
    return v != 0;
  return v;
}

Value Value::ofInt(ScalarType t, int64_t v) { return {t, wrapTo(t, v), 0}; }

/// Converts between DSL types as the casts i32(), i64(), f32(), bool() do.
/// Float to integer truncates toward zero and saturates at the target's range
/// (NaN gives 0): the IR leaves that case undefined, so the oracle picks the
/// behaviour that never invokes C++ undefined behaviour.
Value convert(const Value &v, ScalarType to) {
  if (to == ScalarType::Invalid || v.type == to)
    return v;
  switch (to) {
  case ScalarType::F32:
    return Value::ofF32(v.asDouble());
  case ScalarType::Bool:
    return Value::ofBool(v.truthy());
  case ScalarType::I32:
  case ScalarType::I64: {
    if (!v.isFloat())
      return Value::ofInt(to, v.i);
    double lo = to == ScalarType::I32 ? -2147483648.0 : -9223372036854775808.0;
    double hi = to == ScalarType::I32 ? 2147483647.0 : 9223372036854775807.0;
    double t = std::trunc(v.f);
    if (std::isnan(t))
      return Value::ofInt(to, 0);
    if (t <= lo)
      return Value::ofInt(to, to == ScalarType::I32 ? INT32_MIN : INT64_MIN);
    if (t >= hi)
      return Value::ofInt(to, to == ScalarType::I32 ? INT32_MAX : INT64_MAX);
    return Value::ofInt(to, static_cast<int64_t>(t));
  }
  default:
    return v;
  }
}

int64_t wrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t wrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}
int64_t wrapMul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}
/// Division rounding toward negative infinity; b != 0.
int64_t floorDiv(int64_t a, int64_t b) {
  if (b == -1)
    return wrapSub(0, a); // INT64_MIN / -1 wraps instead of trapping
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0)))
    --q;
  return q;
}
/// Remainder with the sign of the divisor; b != 0.
int64_t floorMod(int64_t a, int64_t b) {
  if (b == -1)
    return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0)))
    r += b;
  return r;
}

double sigmoid(double x) {
  if (x >= 0)
    return 1.0 / (1.0 + std::exp(-x));
  double e = std::exp(x);
  return e / (1.0 + e);
}

/// The shortest decimal form that reads back as `v`.
std::string num(double v) {
  char buf[32];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  return buf;
}

llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::make_error<llvm::StringError>(msg, llvm::inconvertibleErrorCode());
}

std::string locString(const Location &l) {
  return l.file + ":" + std::to_string(l.line) + ":" + std::to_string(l.col);
}

std::string dimsString(llvm::ArrayRef<int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

/// The most elements a tensor parameter may have.
constexpr int64_t kMaxTensorElements = int64_t(1) << 28;

int64_t numElements(llvm::ArrayRef<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    n *= d;
  return n;
}

//===----------------------------------------------------------------------===//
// Frames
//===----------------------------------------------------------------------===//

/// One effective parameter as seen inside one frame.
struct Bound {
  const std::string *name = nullptr; // name in this frame's definition
  const ParamDecl *decl = nullptr;
  std::optional<Value> scalar; // scalars; empty when not known (yet)
  int tensor = -1;             // tensors: index of the kernel-level slot
};

/// The activation of one definition (or the kernel's top level).
struct Frame {
  const DefDecl *def = nullptr; // null for the kernel's top frame
  bool indicesKnown = false;    // false in the static walk and for `scale`
  double s = 0;
  int64_t idx[4] = {0, 0, 0, 0}; // b, h, q, k
  std::vector<Bound> params;
  std::vector<std::optional<Value>> lets; // memo, parallel to def->lets

  Bound *find(llvm::StringRef n) {
    for (Bound &b : params)
      if (*b.name == n)
        return &b;
    return nullptr;
  }
};

/// A kernel-level tensor parameter.
struct TensorSlot {
  std::string name;
  const ParamDecl *decl = nullptr;
  const ParamTensor *data = nullptr;
  std::optional<std::vector<int64_t>> expected; // from the static walk
  std::string expectedBy;                       // the definition that declared it
};

class Evaluator {
public:
  Evaluator(const KernelDecl &k, const Shape &shape, int64_t qOffset) : kernel(k) {
    int64_t n = std::max(qOffset + shape.Nq, shape.Nk);
    dimValues[static_cast<int>(DimSymbol::B)] = shape.B;
    dimValues[static_cast<int>(DimSymbol::Hq)] = shape.Hq;
    dimValues[static_cast<int>(DimSymbol::Hkv)] = shape.Hkv;
    dimValues[static_cast<int>(DimSymbol::Nq)] = shape.Nq;
    dimValues[static_cast<int>(DimSymbol::Nk)] = shape.Nk;
    dimValues[static_cast<int>(DimSymbol::N)] = n;
    dimValues[static_cast<int>(DimSymbol::D)] = shape.D;
  }

  /// Sets up the top frame from `b`: checks names, converts scalar values,
  /// evaluates defaults, and links tensor slots to the given data.
  llvm::Error bindTop(const Bindings &b);
  /// The static walk: computes the expected shape of every tensor slot.
  llvm::Error collectShapes();
  /// Checks the tensors and scalars `evaluate` needs are all there and valid.
  llvm::Error checkReady();

  llvm::Expected<double> computeScale(const Shape &shape);
  llvm::Error run(const Shape &shape, int64_t qOffset, double scale, const double *Q,
                  const double *K, const double *V, Output &out);

  const std::vector<TensorSlot> &getTensors() const { return tensors; }

private:
  llvm::Expected<Value> eval(const Expr &e, Frame &f);
  llvm::Expected<Value> evalImpl(const Expr &e, Frame &f);
  llvm::Expected<Value> evalName(const NameExpr &n, Frame &f);
  llvm::Expected<Value> evalBinary(const BinaryExpr &b, Frame &f);
  llvm::Expected<Value> evalIndex(const IndexExpr &ix, Frame &f);
  llvm::Expected<Value> evalBuiltin(const CallExpr &c, Frame &f);
  llvm::Expected<Value> evalCall(const CallExpr &c, Frame &f);
  llvm::Expected<Value> evalParam(Bound &b, Frame &f, const Location &at);

  /// Builds the callee frame of a definition call. With `evalArgs` false
  /// (static walk) index arguments and runtime scalar bindings are left
  /// unknown; const bindings are still evaluated.
  llvm::Expected<Frame> enter(const CallExpr &c, Frame &caller, bool evalArgs);
  /// A frame for one of the kernel's field definitions.
  llvm::Expected<Frame> fieldFrame(const DefDecl &def);

  llvm::Error walkDef(Frame &f);
  llvm::Error walkExpr(const Expr *e, Frame &f);

  /// An error at `l`, with the (b, h, q, k) being computed when there is one.
  llvm::Error errorAt(const Location &l, const llvm::Twine &msg) {
    std::string where;
    if (inLoop)
      where = " (while computing b=" + std::to_string(cur[0]) + ", h=" + std::to_string(cur[1]) +
              ", q=" + std::to_string(cur[2]) + ", k=" + std::to_string(cur[3]) + ")";
    return makeError(locString(l) + ": " + msg + where);
  }

  const KernelDecl &kernel;
  int64_t dimValues[7] = {};
  Frame top;
  std::vector<TensorSlot> tensors;
  std::set<const Bound *> resolving; // top-level defaults being evaluated
  bool inLoop = false;
  int64_t cur[4] = {0, 0, 0, 0};
};

//===----------------------------------------------------------------------===//
// Binding the top frame
//===----------------------------------------------------------------------===//

/// Converts a bound double to a value of `decl`'s element type, rejecting
/// values the type cannot hold exactly.
llvm::Expected<Value> scalarFromDouble(double v, ScalarType t, llvm::StringRef name) {
  switch (t) {
  case ScalarType::F32:
    return Value::ofF32(v);
  case ScalarType::Bool:
    if (v != 0 && v != 1)
      return makeError("parameter '" + name + "' is bool; got " + num(v) + " (expected 0 or 1)");
    return Value::ofBool(v != 0);
  case ScalarType::I32:
  case ScalarType::I64: {
    double lo = t == ScalarType::I32 ? -2147483648.0 : -9223372036854775808.0;
    double hi = t == ScalarType::I32 ? 2147483647.0 : 9223372036854775807.0;
    if (!(v == std::trunc(v)) || v < lo || v > hi)
      return makeError("parameter '" + name + "' is " + toString(t) + "; got " + num(v) +
                       ", which is not an " + toString(t) + " value");
    return Value::ofInt(t, static_cast<int64_t>(v));
  }
  default:
    return makeError("parameter '" + name + "' has an invalid type");
  }
}

std::string paramList(const KernelDecl &k) {
  std::string s;
  for (const auto *list : {&k.runtimeParams, &k.constParams})
    for (const EffectiveParam &p : *list)
      s += (s.empty() ? "" : ", ") + p.name;
  return s.empty() ? "none" : s;
}

const EffectiveParam *findKernelParam(const KernelDecl &k, llvm::StringRef name) {
  for (const auto *list : {&k.runtimeParams, &k.constParams})
    for (const EffectiveParam &p : *list)
      if (p.name == name)
        return &p;
  return nullptr;
}

llvm::Error Evaluator::bindTop(const Bindings &b) {
  for (auto &[name, value] : b.scalars) {
    const EffectiveParam *p = findKernelParam(kernel, name);
    if (!p)
      return makeError("kernel '" + kernel.name + "' has no parameter '" + name +
                       "' (parameters: " + paramList(kernel) + ")");
    if (p->decl->isTensor())
      return makeError("parameter '" + name + "' of kernel '" + kernel.name +
                       "' is a tensor; bind it as a tensor, not a scalar");
  }
  for (auto &[name, value] : b.tensors) {
    const EffectiveParam *p = findKernelParam(kernel, name);
    if (!p)
      return makeError("kernel '" + kernel.name + "' has no parameter '" + name +
                       "' (parameters: " + paramList(kernel) + ")");
    if (!p->decl->isTensor())
      return makeError("parameter '" + name + "' of kernel '" + kernel.name +
                       "' is a scalar; bind it as a scalar, not a tensor");
  }

  for (const auto *list : {&kernel.runtimeParams, &kernel.constParams}) {
    for (const EffectiveParam &p : *list) {
      Bound bound;
      bound.name = &p.name;
      bound.decl = p.decl;
      if (p.decl->isTensor()) {
        TensorSlot slot;
        slot.name = p.name;
        slot.decl = p.decl;
        auto it = b.tensors.find(p.name);
        if (it != b.tensors.end())
          slot.data = &it->second;
        bound.tensor = static_cast<int>(tensors.size());
        tensors.push_back(std::move(slot));
      } else if (auto it = b.scalars.find(p.name); it != b.scalars.end()) {
        auto v = scalarFromDouble(it->second, p.decl->elemType, p.name);
        if (!v)
          return v.takeError();
        bound.scalar = *v;
      }
      top.params.push_back(std::move(bound));
    }
  }
  // Defaults may refer to other parameters (`const W2: i32 = 2 * W`), in any
  // order; evalParam resolves them on demand.
  for (Bound &bound : top.params) {
    if (bound.tensor >= 0 || bound.scalar || !bound.decl->init)
      continue;
    auto v = evalParam(bound, top, bound.decl->loc);
    if (!v)
      return v.takeError();
  }
  return llvm::Error::success();
}

llvm::Expected<Value> Evaluator::evalParam(Bound &b, Frame &f, const Location &at) {
  if (b.tensor >= 0)
    return errorAt(at, "tensor parameter '" + *b.name + "' must be indexed");
  if (b.scalar)
    return *b.scalar;
  if (&f == &top && b.decl->init) {
    if (!resolving.insert(&b).second)
      return errorAt(b.decl->loc, "the default value of '" + *b.name + "' depends on itself");
    auto v = eval(*b.decl->init, top);
    resolving.erase(&b);
    if (!v)
      return v.takeError();
    b.scalar = convert(*v, b.decl->elemType);
    return *b.scalar;
  }
  if (!b.decl->isConst && !f.indicesKnown)
    return errorAt(at, "runtime parameter '" + *b.name + "' is used where a constant is required");
  return errorAt(at, std::string(b.decl->isConst ? "const" : "runtime") + " parameter '" + *b.name +
                         "' has no value: bind it (it has no default)");
}

//===----------------------------------------------------------------------===//
// Frames for calls
//===----------------------------------------------------------------------===//

llvm::Expected<Frame> Evaluator::fieldFrame(const DefDecl &def) {
  Frame g;
  g.def = &def;
  g.lets.assign(def.lets.size(), std::nullopt);
  for (const EffectiveParam &p : def.effectiveParams) {
    Bound *src = top.find(p.name);
    if (!src)
      return makeError("internal error: kernel '" + kernel.name + "' lacks parameter '" + p.name +
                       "' of its field '" + def.name + "'");
    Bound b = *src;
    b.name = &p.name;
    b.decl = p.decl;
    g.params.push_back(std::move(b));
  }
  return g;
}

llvm::Expected<Frame> Evaluator::enter(const CallExpr &c, Frame &caller, bool evalArgs) {
  const DefDecl &callee = *c.callee;
  Frame g;
  g.def = &callee;
  g.lets.assign(callee.lets.size(), std::nullopt);
  bool isScore = callee.kind == DefKind::Score;
  if (c.positional.size() != callee.numIndexArgs() ||
      c.paramValues.size() != callee.effectiveParams.size())
    return errorAt(c.getLoc(), "internal error: call of '" + callee.name + "' is not resolved");
  if (evalArgs) {
    for (unsigned i = 0; i < c.positional.size(); ++i) {
      auto v = eval(*c.positional[i], caller);
      if (!v)
        return v.takeError();
      if (isScore && i == 0)
        g.s = v->asDouble();
      else
        g.idx[isScore ? i - 1 : i] = convert(*v, ScalarType::I32).i;
    }
    g.indicesKnown = true;
  }
  for (unsigned i = 0; i < callee.effectiveParams.size(); ++i) {
    const EffectiveParam &p = callee.effectiveParams[i];
    Bound b;
    b.name = &p.name;
    b.decl = p.decl;
    const Expr *v = c.paramValues[i];
    if (!v || p.decl->isTensor()) {
      // Unbound: the caller's parameter of the same name. A bound tensor is
      // a rename: the argument names one of the caller's tensors.
      llvm::StringRef srcName = p.name;
      if (v) {
        auto *n = llvm::dyn_cast<NameExpr>(v);
        if (!n)
          return errorAt(v->getLoc(),
                         "tensor parameter '" + p.name + "' must be bound to a tensor parameter");
        srcName = n->ref.param.empty() ? llvm::StringRef(n->name) : llvm::StringRef(n->ref.param);
      }
      Bound *src = caller.find(srcName);
      if (!src)
        return errorAt(c.getLoc(), "internal error: '" + srcName +
                                       "' is not a parameter of the "
                                       "caller of '" +
                                       callee.name + "'");
      b.tensor = src->tensor;
      if (src->tensor < 0) {
        if (!src->scalar && &caller == &top && src->decl->init) {
          auto dv = evalParam(*src, caller, c.getLoc());
          if (!dv)
            return dv.takeError();
        }
        if (src->scalar)
          b.scalar = convert(*src->scalar, p.decl->elemType);
      }
    } else if (evalArgs || p.decl->isConst) {
      auto val = eval(*v, caller);
      if (!val)
        return val.takeError();
      b.scalar = convert(*val, p.decl->elemType);
    }
    g.params.push_back(std::move(b));
  }
  return g;
}

//===----------------------------------------------------------------------===//
// The static walk
//===----------------------------------------------------------------------===//

llvm::Error Evaluator::walkDef(Frame &f) {
  // Shapes are checked where declared: only there do the names in the
  // dimension expressions mean the declaring definition's parameters.
  std::vector<const ParamDecl *> declared = f.def->declaredParams();
  for (Bound &b : f.params) {
    if (b.tensor < 0 || !llvm::is_contained(declared, b.decl))
      continue;
    std::vector<int64_t> dims;
    for (const ExprPtr &d : b.decl->dims) {
      auto v = eval(*d, f);
      if (!v)
        return v.takeError();
      if (v->i < 0)
        return errorAt(d->getLoc(), "dimension of tensor '" + *b.name + "' evaluates to " +
                                        llvm::Twine(v->i) + ", which is negative");
      dims.push_back(v->i);
    }
    // Bound the size so a huge const extent is an error, not a failed
    // allocation when the tensor is filled.
    int64_t elems = 1;
    for (int64_t d : dims)
      if (llvm::MulOverflow(elems, d, elems) || elems > kMaxTensorElements)
        return errorAt(b.decl->loc, "tensor '" + *b.name + "' of shape " + dimsString(dims) +
                                        " has more than 2^28 elements");
    TensorSlot &slot = tensors[b.tensor];
    if (!slot.expected) {
      slot.expected = dims;
      slot.expectedBy = f.def->name;
    } else if (*slot.expected != dims) {
      return errorAt(b.decl->loc, "tensor '" + slot.name + "' must have shape " + dimsString(dims) +
                                      " for '" + f.def->name + "' but " +
                                      dimsString(*slot.expected) + " for '" + slot.expectedBy +
                                      "'");
    }
  }
  for (const auto &let : f.def->lets)
    if (llvm::Error e = walkExpr(let->value.get(), f))
      return e;
  return walkExpr(f.def->body.get(), f);
}

llvm::Error Evaluator::walkExpr(const Expr *e, Frame &f) {
  if (!e)
    return llvm::Error::success();
  switch (e->getKind()) {
  case Expr::Kind::Name: {
    auto *n = llvm::cast<NameExpr>(e);
    return n->resolvedCall ? walkExpr(n->resolvedCall.get(), f) : llvm::Error::success();
  }
  case Expr::Kind::Call: {
    auto *c = llvm::cast<CallExpr>(e);
    if (c->builtin != Builtin::None || !c->callee) {
      for (const CallArg &a : c->args)
        if (llvm::Error err = walkExpr(a.value.get(), f))
          return err;
      return llvm::Error::success();
    }
    for (const ExprPtr &p : c->positional)
      if (llvm::Error err = walkExpr(p.get(), f))
        return err;
    for (const Expr *v : c->paramValues)
      if (llvm::Error err = walkExpr(v, f))
        return err;
    auto g = enter(*c, f, /*evalArgs=*/false);
    if (!g)
      return g.takeError();
    return walkDef(*g);
  }
  case Expr::Kind::Index:
    for (const ExprPtr &i : llvm::cast<IndexExpr>(e)->indices)
      if (llvm::Error err = walkExpr(i.get(), f))
        return err;
    return llvm::Error::success();
  case Expr::Kind::Unary:
    return walkExpr(llvm::cast<UnaryExpr>(e)->operand.get(), f);
  case Expr::Kind::Binary: {
    auto *b = llvm::cast<BinaryExpr>(e);
    if (llvm::Error err = walkExpr(b->lhs.get(), f))
      return err;
    return walkExpr(b->rhs.get(), f);
  }
  case Expr::Kind::Cond: {
    auto *c = llvm::cast<CondExpr>(e);
    for (const Expr *x : {c->cond.get(), c->thenExpr.get(), c->elseExpr.get()})
      if (llvm::Error err = walkExpr(x, f))
        return err;
    return llvm::Error::success();
  }
  default:
    return llvm::Error::success();
  }
}

llvm::Error Evaluator::collectShapes() {
  for (const DefDecl *def : {kernel.maskDef.get(), kernel.scoreDef.get(), kernel.scaleDef.get()}) {
    if (!def)
      continue;
    auto f = fieldFrame(*def);
    if (!f)
      return f.takeError();
    if (llvm::Error e = walkDef(*f))
      return e;
  }
  for (TensorSlot &slot : tensors)
    if (!slot.expected)
      return makeError("internal error: no shape found for tensor parameter '" + slot.name + "'");
  return llvm::Error::success();
}

llvm::Error Evaluator::checkReady() {
  for (TensorSlot &slot : tensors) {
    std::string want = dimsString(*slot.expected);
    if (!slot.data)
      return makeError("tensor parameter '" + slot.name + "' of kernel '" + kernel.name +
                       "' is not bound (expected shape " + want + ")");
    const ParamTensor &t = *slot.data;
    if (t.dims.size() != slot.expected->size())
      return makeError("tensor '" + slot.name + "' has rank " + llvm::Twine(t.dims.size()) +
                       ", expected rank " + llvm::Twine(slot.expected->size()) + " (shape " + want +
                       ")");
    if (t.dims != *slot.expected)
      return makeError("tensor '" + slot.name + "' has shape " + dimsString(t.dims) +
                       ", expected " + want);
    if (static_cast<int64_t>(t.data.size()) != numElements(t.dims))
      return makeError("tensor '" + slot.name + "' has " + llvm::Twine(t.data.size()) +
                       " values but its shape " + want + " holds " +
                       llvm::Twine(numElements(t.dims)));
    ScalarType et = slot.decl->elemType;
    if (et != ScalarType::F32) {
      for (size_t i = 0; i < t.data.size(); ++i) {
        auto v = scalarFromDouble(t.data[i], et, slot.name);
        if (!v)
          return makeError("element " + llvm::Twine(i) + " of tensor '" + slot.name +
                           "': " + llvm::toString(v.takeError()));
      }
    }
  }
  for (Bound &b : top.params)
    if (b.tensor < 0 && !b.scalar)
      return makeError(std::string(b.decl->isConst ? "const" : "runtime") + " parameter '" +
                       *b.name + "' of kernel '" + kernel.name +
                       "' has no value: bind it (it has no default)");
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

llvm::Expected<Value> Evaluator::eval(const Expr &e, Frame &f) {
  auto v = evalImpl(e, f);
  if (!v)
    return v.takeError();
  // Sema's type is the truth (literals coerced by context included).
  return convert(*v, e.type);
}

llvm::Expected<Value> Evaluator::evalImpl(const Expr &e, Frame &f) {
  switch (e.getKind()) {
  case Expr::Kind::IntLit: {
    int64_t v = llvm::cast<IntLitExpr>(e).value;
    if (e.type == ScalarType::F32)
      return Value::ofF32(static_cast<double>(v));
    return Value::ofInt(e.type == ScalarType::I32 ? ScalarType::I32 : ScalarType::I64, v);
  }
  case Expr::Kind::FloatLit:
    return Value::ofF32(llvm::cast<FloatLitExpr>(e).value);
  case Expr::Kind::BoolLit:
    return Value::ofBool(llvm::cast<BoolLitExpr>(e).value);
  case Expr::Kind::Name:
    return evalName(llvm::cast<NameExpr>(e), f);
  case Expr::Kind::Call: {
    auto &c = llvm::cast<CallExpr>(e);
    return c.builtin != Builtin::None ? evalBuiltin(c, f) : evalCall(c, f);
  }
  case Expr::Kind::Index:
    return evalIndex(llvm::cast<IndexExpr>(e), f);
  case Expr::Kind::Unary: {
    auto &u = llvm::cast<UnaryExpr>(e);
    auto v = eval(*u.operand, f);
    if (!v)
      return v.takeError();
    if (u.op == UnaryOp::Not)
      return Value::ofBool(!v->truthy());
    if (v->isFloat())
      return Value::ofF32(-v->f);
    return Value::ofInt(v->type, wrapSub(0, v->i));
  }
  case Expr::Kind::Binary:
    return evalBinary(llvm::cast<BinaryExpr>(e), f);
  case Expr::Kind::Cond: {
    // Only the chosen branch runs, so `k < N ? t[k] : 0` guards the read.
    auto &c = llvm::cast<CondExpr>(e);
    auto cond = eval(*c.cond, f);
    if (!cond)
      return cond.takeError();
    return eval(cond->truthy() ? *c.thenExpr : *c.elseExpr, f);
  }
  }
  return errorAt(e.getLoc(), "internal error: unknown expression kind");
}

llvm::Expected<Value> Evaluator::evalName(const NameExpr &n, Frame &f) {
  switch (n.ref.kind) {
  case NameRef::Kind::IndexVar:
    if (!f.indicesKnown)
      return errorAt(n.getLoc(), "'" + n.name + "' is used where a constant is required");
    return Value::ofInt(ScalarType::I32, f.idx[n.ref.indexVar]);
  case NameRef::Kind::ScoreVar:
    if (!f.indicesKnown)
      return errorAt(n.getLoc(), "'" + n.name + "' is used where a constant is required");
    return Value::ofF32(f.s);
  case NameRef::Kind::Let: {
    if (!f.def)
      return errorAt(n.getLoc(), "internal error: let '" + n.name + "' outside a definition");
    for (size_t i = 0; i < f.def->lets.size(); ++i) {
      if (f.def->lets[i].get() != n.ref.let)
        continue;
      if (!f.lets[i]) {
        auto v = eval(*n.ref.let->value, f);
        if (!v)
          return v.takeError();
        f.lets[i] = *v;
      }
      return *f.lets[i];
    }
    return errorAt(n.getLoc(), "internal error: let '" + n.name + "' not found in its definition");
  }
  case NameRef::Kind::Param: {
    Bound *b = f.find(n.ref.param);
    if (!b)
      return errorAt(n.getLoc(), "internal error: unknown parameter '" + n.ref.param + "'");
    return evalParam(*b, f, n.getLoc());
  }
  case NameRef::Kind::Dim:
    return Value::ofInt(ScalarType::I64, dimValues[static_cast<int>(n.ref.dim)]);
  case NameRef::Kind::Definition:
    if (!n.resolvedCall)
      return errorAt(n.getLoc(), "internal error: '" + n.name + "' is not resolved");
    return evalCall(*n.resolvedCall, f);
  case NameRef::Kind::Unresolved:
    break;
  }
  return errorAt(n.getLoc(), "internal error: unresolved name '" + n.name + "'");
}

llvm::Expected<Value> Evaluator::evalBinary(const BinaryExpr &b, Frame &f) {
  auto l = eval(*b.lhs, f);
  if (!l)
    return l.takeError();
  // && and || short-circuit, so `k < N && t[k] > 0` guards the read.
  if (b.op == BinaryOp::And && !l->truthy())
    return Value::ofBool(false);
  if (b.op == BinaryOp::Or && l->truthy())
    return Value::ofBool(true);
  auto r = eval(*b.rhs, f);
  if (!r)
    return r.takeError();
  bool fp = l->isFloat() || r->isFloat();
  double x = l->asDouble(), y = r->asDouble();
  int64_t a = l->i, c = r->i;
  switch (b.op) {
  case BinaryOp::And:
  case BinaryOp::Or:
    return Value::ofBool(r->truthy());
  case BinaryOp::Lt:
    return Value::ofBool(fp ? x < y : a < c);
  case BinaryOp::Le:
    return Value::ofBool(fp ? x <= y : a <= c);
  case BinaryOp::Gt:
    return Value::ofBool(fp ? x > y : a > c);
  case BinaryOp::Ge:
    return Value::ofBool(fp ? x >= y : a >= c);
  case BinaryOp::Eq:
    return Value::ofBool(fp ? x == y : a == c);
  case BinaryOp::Ne:
    return Value::ofBool(fp ? x != y : a != c);
  default:
    break;
  }
  if (fp) {
    switch (b.op) {
    case BinaryOp::Add:
      return Value::ofF32(x + y);
    case BinaryOp::Sub:
      return Value::ofF32(x - y);
    case BinaryOp::Mul:
      return Value::ofF32(x * y);
    case BinaryOp::Div:
      return Value::ofF32(x / y);
    default: // Sema rejects f32 %; floor semantics like the integer case.
      return Value::ofF32(x - std::floor(x / y) * y);
    }
  }
  ScalarType t = b.type != ScalarType::Invalid ? b.type : l->type;
  switch (b.op) {
  case BinaryOp::Add:
    return Value::ofInt(t, wrapAdd(a, c));
  case BinaryOp::Sub:
    return Value::ofInt(t, wrapSub(a, c));
  case BinaryOp::Mul:
    return Value::ofInt(t, wrapMul(a, c));
  default:
    if (c == 0)
      return errorAt(b.getLoc(), llvm::Twine("integer ") +
                                     (b.op == BinaryOp::Div ? "division" : "modulo") + " by zero");
    return Value::ofInt(t, b.op == BinaryOp::Div ? floorDiv(a, c) : floorMod(a, c));
  }
}

llvm::Expected<Value> Evaluator::evalIndex(const IndexExpr &ix, Frame &f) {
  Bound *b = f.find(ix.param.empty() ? ix.tensor : ix.param);
  if (!b || b->tensor < 0)
    return errorAt(ix.getLoc(), "internal error: '" + ix.tensor + "' is not a tensor parameter");
  const TensorSlot &slot = tensors[b->tensor];
  if (!slot.data)
    return errorAt(ix.getLoc(), "tensor '" + ix.tensor + "' is read where a constant is required");
  const ParamTensor &t = *slot.data;
  std::string name = ix.tensor == slot.name
                         ? "'" + ix.tensor + "'"
                         : "'" + ix.tensor + "' (kernel parameter '" + slot.name + "')";
  if (ix.indices.size() != t.dims.size())
    return errorAt(ix.getLoc(), "tensor " + name + " indexed with " +
                                    llvm::Twine(ix.indices.size()) + " indices but has rank " +
                                    llvm::Twine(t.dims.size()));
  int64_t offset = 0;
  for (size_t d = 0; d < ix.indices.size(); ++d) {
    auto v = eval(*ix.indices[d], f);
    if (!v)
      return v.takeError();
    int64_t i = v->isFloat() ? convert(*v, ScalarType::I64).i : v->i;
    if (i < 0 || i >= t.dims[d])
      return errorAt(ix.indices[d]->getLoc(), "index " + llvm::Twine(i) +
                                                  " is out of bounds for dimension " +
                                                  llvm::Twine(d) + " of tensor " + name +
                                                  " (size " + llvm::Twine(t.dims[d]) + ")");
    offset = offset * t.dims[d] + i;
  }
  double raw = t.data[offset];
  switch (slot.decl->elemType) {
  case ScalarType::F32:
    return Value::ofF32(raw);
  case ScalarType::Bool:
    return Value::ofBool(raw != 0);
  default: // validated integral and in range by checkReady
    return Value::ofInt(slot.decl->elemType, static_cast<int64_t>(raw));
  }
}

llvm::Expected<Value> Evaluator::evalBuiltin(const CallExpr &c, Frame &f) {
  auto arg = [&](unsigned i) -> llvm::Expected<Value> {
    if (i >= c.args.size() || !c.args[i].value)
      return errorAt(c.getLoc(),
                     "internal error: '" + c.calleeName + "' lacks argument " + llvm::Twine(i + 1));
    return eval(*c.args[i].value, f);
  };
  // select is lazy like `?:`: only the chosen value is computed.
  if (c.builtin == Builtin::Select) {
    auto cond = arg(0);
    if (!cond)
      return cond.takeError();
    return arg(cond->truthy() ? 1 : 2);
  }
  std::vector<Value> a;
  for (unsigned i = 0; i < c.args.size(); ++i) {
    auto v = arg(i);
    if (!v)
      return v.takeError();
    a.push_back(*v);
  }
  unsigned want = c.builtin == Builtin::Clamp                              ? 3
                  : c.builtin == Builtin::Min || c.builtin == Builtin::Max ? 2
                                                                           : 1;
  if (a.size() != want)
    return errorAt(c.getLoc(), "internal error: '" + c.calleeName + "' has the wrong arity");
  auto minOf = [](const Value &x, const Value &y) {
    if (x.isFloat() || y.isFloat())
      return Value::ofF32(std::fmin(x.asDouble(), y.asDouble()));
    return x.i <= y.i ? x : y;
  };
  auto maxOf = [](const Value &x, const Value &y) {
    if (x.isFloat() || y.isFloat())
      return Value::ofF32(std::fmax(x.asDouble(), y.asDouble()));
    return x.i >= y.i ? x : y;
  };
  double x = a[0].asDouble();
  switch (c.builtin) {
  case Builtin::Min:
    return minOf(a[0], a[1]);
  case Builtin::Max:
    return maxOf(a[0], a[1]);
  case Builtin::Clamp:
    return minOf(maxOf(a[0], a[1]), a[2]);
  case Builtin::Abs:
    if (a[0].isFloat())
      return Value::ofF32(std::fabs(a[0].f));
    return Value::ofInt(a[0].type, a[0].i < 0 ? wrapSub(0, a[0].i) : a[0].i);
  case Builtin::Exp:
    return Value::ofF32(std::exp(x));
  case Builtin::Exp2:
    return Value::ofF32(std::exp2(x));
  case Builtin::Log:
    return Value::ofF32(std::log(x));
  case Builtin::Log2:
    return Value::ofF32(std::log2(x));
  case Builtin::Tanh:
    return Value::ofF32(std::tanh(x));
  case Builtin::Sqrt:
    return Value::ofF32(std::sqrt(x));
  case Builtin::Sigmoid:
    return Value::ofF32(sigmoid(x));
  case Builtin::Floor:
    return Value::ofF32(std::floor(x));
  case Builtin::CastI32:
    return convert(a[0], ScalarType::I32);
  case Builtin::CastI64:
    return convert(a[0], ScalarType::I64);
  case Builtin::CastF32:
    return convert(a[0], ScalarType::F32);
  case Builtin::CastBool:
    return convert(a[0], ScalarType::Bool);
  default:
    return errorAt(c.getLoc(), "internal error: unknown builtin '" + c.calleeName + "'");
  }
}

llvm::Expected<Value> Evaluator::evalCall(const CallExpr &c, Frame &f) {
  if (!c.callee)
    return errorAt(c.getLoc(), "internal error: call of '" + c.calleeName + "' is not resolved");
  auto g = enter(c, f, /*evalArgs=*/true);
  if (!g)
    return g.takeError();
  return eval(*c.callee->body, *g);
}

//===----------------------------------------------------------------------===//
// The attention computation
//===----------------------------------------------------------------------===//

llvm::Expected<double> Evaluator::computeScale(const Shape &shape) {
  if (!kernel.scaleDef)
    return 1.0 / std::sqrt(static_cast<double>(shape.D));
  auto f = fieldFrame(*kernel.scaleDef);
  if (!f)
    return f.takeError();
  auto v = eval(*kernel.scaleDef->body, *f);
  if (!v)
    return v.takeError();
  return v->asDouble();
}

llvm::Error Evaluator::run(const Shape &shape, int64_t qOffset, double scale, const double *Q,
                           const double *K, const double *V, Output &out) {
  auto maskFrame = fieldFrame(*kernel.maskDef);
  if (!maskFrame)
    return maskFrame.takeError();
  auto scoreFrame = fieldFrame(*kernel.scoreDef);
  if (!scoreFrame)
    return scoreFrame.takeError();
  const int64_t B = shape.B, Hq = shape.Hq, Hkv = shape.Hkv, Nq = shape.Nq, Nk = shape.Nk,
                D = shape.D, Dv = shape.Dv;
  out.O.assign(B * Hq * Nq * Dv, 0.0);
  out.LSE.assign(B * Hq * Nq, 0.0);
  const int64_t group = Hkv ? Hq / Hkv : 1;
  std::vector<double> sp(Nk), w(Nk);
  std::vector<char> keep(Nk);
  inLoop = true;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t kvh = kernel.heads == HeadMapping::Grouped ? h / group : h % Hkv;
      for (int64_t i = 0; i < Nq; ++i) {
        const double *q = Q + ((b * Hq + h) * Nq + i) * D;
        int64_t qpos = qOffset + i;
        for (int64_t j = 0; j < Nk; ++j) {
          cur[0] = b, cur[1] = h, cur[2] = qpos, cur[3] = j;
          for (Frame *fr : {&*maskFrame, &*scoreFrame}) {
            std::copy(std::begin(cur), std::end(cur), fr->idx);
            fr->indicesKnown = true;
            std::fill(fr->lets.begin(), fr->lets.end(), std::nullopt);
          }
          auto m = eval(*kernel.maskDef->body, *maskFrame);
          if (!m)
            return m.takeError();
          keep[j] = m->truthy();
          if (!keep[j])
            continue; // the score of a masked key is never needed
          const double *k = K + ((b * Hkv + kvh) * Nk + j) * D;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += q[d] * k[d];
          scoreFrame->s = scale * dot;
          auto sv = eval(*kernel.scoreDef->body, *scoreFrame);
          if (!sv)
            return sv.takeError();
          sp[j] = sv->asDouble();
        }

        // LSE by the max-shift, so logits of 1e4 neither overflow nor
        // underflow. A row whose kept scores are all -inf counts as masked.
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Nk; ++j)
          if (keep[j])
            mx = std::max(mx, sp[j]);
        double *o = out.O.data() + ((b * Hq + h) * Nq + i) * Dv;
        double &lse = out.LSE[(b * Hq + h) * Nq + i];
        if (mx == -std::numeric_limits<double>::infinity()) {
          lse = mx; // O stays 0
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < Nk; ++j) {
          // With +inf scores the limit puts all weight on those keys.
          w[j] = !keep[j]                               ? 0.0
                 : std::isinf(mx) && !std::isnan(sp[j]) ? (sp[j] == mx ? 1.0 : 0.0)
                                                        : std::exp(sp[j] - mx);
          sum += w[j];
        }
        lse = std::isinf(mx) ? mx : mx + std::log(sum);
        for (int64_t j = 0; j < Nk; ++j) {
          if (!keep[j])
            continue;
          double p = kernel.normalizer == Normalizer::Softmax ? w[j] / sum : sigmoid(sp[j]);
          const double *v = V + ((b * Hkv + kvh) * Nk + j) * Dv;
          for (int64_t d = 0; d < Dv; ++d)
            o[d] += p * v[d];
        }
      }
    }
  }
  inLoop = false;
  return llvm::Error::success();
}

llvm::Error checkShape(const Shape &s, int64_t qOffset) {
  auto bad = [](const llvm::Twine &msg) { return makeError("invalid problem shape: " + msg); };
  const std::pair<const char *, int64_t> dims[] = {{"B", s.B},   {"Hq", s.Hq}, {"Hkv", s.Hkv},
                                                   {"Nq", s.Nq}, {"Nk", s.Nk}, {"D", s.D},
                                                   {"Dv", s.Dv}};
  for (auto &[name, v] : dims)
    if (v < 0 || v > INT32_MAX)
      return bad(llvm::Twine(name) + " = " + llvm::Twine(v) + " is out of range");
  if (s.D < 1)
    return bad("D must be at least 1");
  if (s.Hkv < 1 && s.Hq > 0)
    return bad("Hkv must be at least 1");
  if (s.Hkv > 0 && s.Hq % s.Hkv != 0)
    return bad("Hq = " + llvm::Twine(s.Hq) + " is not a multiple of Hkv = " + llvm::Twine(s.Hkv));
  if (qOffset < 0 || qOffset + s.Nq > int64_t(INT32_MAX) + 1)
    return bad("q_offset = " + llvm::Twine(qOffset) + " puts query positions outside [0, 2^31)");
  return llvm::Error::success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Public API
//===----------------------------------------------------------------------===//

llvm::Expected<Output> attnc::reference::evaluate(const KernelDecl &k, const Shape &s,
                                                  const double *Q, const double *K, const double *V,
                                                  const Bindings &b) {
  if (!k.maskDef || !k.scoreDef)
    return makeError("kernel '" + k.name + "' has not been checked by Sema");
  if (llvm::Error e = checkShape(s, b.qOffset))
    return std::move(e);
  if ((!Q && s.B * s.Hq * s.Nq * s.D != 0) || (!K && s.B * s.Hkv * s.Nk * s.D != 0) ||
      (!V && s.B * s.Hkv * s.Nk * s.Dv != 0))
    return makeError("Q, K and V must not be null");
  Evaluator ev(k, s, b.qOffset);
  if (llvm::Error e = ev.bindTop(b))
    return std::move(e);
  if (llvm::Error e = ev.collectShapes())
    return std::move(e);
  if (llvm::Error e = ev.checkReady())
    return std::move(e);
  auto scale = ev.computeScale(s);
  if (!scale)
    return scale.takeError();
  Output out;
  if (llvm::Error e = ev.run(s, b.qOffset, *scale, Q, K, V, out))
    return std::move(e);
  return out;
}

llvm::Expected<std::map<std::string, std::vector<int64_t>>>
attnc::reference::tensorShapes(const KernelDecl &k, const Shape &s, const Bindings &b) {
  if (!k.maskDef || !k.scoreDef)
    return makeError("kernel '" + k.name + "' has not been checked by Sema");
  if (llvm::Error e = checkShape(s, b.qOffset))
    return std::move(e);
  Bindings scalarsOnly;
  scalarsOnly.qOffset = b.qOffset;
  scalarsOnly.scalars = b.scalars;
  Evaluator ev(k, s, b.qOffset);
  if (llvm::Error e = ev.bindTop(scalarsOnly))
    return std::move(e);
  if (llvm::Error e = ev.collectShapes())
    return std::move(e);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorSlot &slot : ev.getTensors())
    shapes[slot.name] = *slot.expected;
  return shapes;
}

namespace {

llvm::Expected<double> parseScalar(llvm::StringRef text, ScalarType t, llvm::StringRef name) {
  text = text.trim();
  auto bad = [&]() {
    return makeError("parameter '" + name + "': '" + text + "' is not a valid " + toString(t) +
                     " value");
  };
  switch (t) {
  case ScalarType::Bool:
    if (text == "true" || text == "1")
      return 1.0;
    if (text == "false" || text == "0")
      return 0.0;
    return bad();
  case ScalarType::I32:
  case ScalarType::I64: {
    int64_t v;
    if (text.getAsInteger(10, v))
      return bad();
    if (t == ScalarType::I32 && (v < INT32_MIN || v > INT32_MAX))
      return bad();
    return static_cast<double>(v);
  }
  default: {
    double v;
    if (text.getAsDouble(v))
      return bad();
    return v;
  }
  }
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

} // namespace

llvm::Expected<Bindings> attnc::reference::parseBindings(const KernelDecl &k, const Shape &s,
                                                         llvm::ArrayRef<std::string> params,
                                                         uint64_t seed, int64_t qOffset) {
  Bindings out;
  out.qOffset = qOffset;
  std::map<std::string, std::vector<llvm::StringRef>> tensorText;
  std::set<std::string> seen;
  for (const std::string &param : params) {
    auto [rawName, rawValue] = llvm::StringRef(param).split('=');
    llvm::StringRef name = rawName.trim();
    if (name.empty() || !llvm::StringRef(param).contains('='))
      return makeError("expected name=value or name=v1,v2,..., got '" + param + "'");
    const EffectiveParam *p = findKernelParam(k, name);
    if (!p)
      return makeError("kernel '" + k.name + "' has no parameter '" + name +
                       "' (parameters: " + paramList(k) + ")");
    if (!seen.insert(name.str()).second)
      return makeError("parameter '" + name + "' is given twice");
    llvm::SmallVector<llvm::StringRef> values;
    rawValue.split(values, ',');
    if (!p->decl->isTensor()) {
      if (values.size() != 1)
        return makeError("parameter '" + name + "' is a scalar but " + llvm::Twine(values.size()) +
                         " values were given");
      auto v = parseScalar(values[0], p->decl->elemType, name);
      if (!v)
        return v.takeError();
      out.scalars[name.str()] = *v;
    } else {
      tensorText[name.str()] = std::vector<llvm::StringRef>(values.begin(), values.end());
    }
  }

  auto shapes = tensorShapes(k, s, out);
  if (!shapes)
    return shapes.takeError();
  for (auto &[name, dims] : *shapes) {
    const EffectiveParam *p = findKernelParam(k, name);
    ScalarType et = p->decl->elemType;
    ParamTensor t;
    t.dims = dims;
    int64_t n = numElements(dims);
    t.data.resize(n);
    if (auto it = tensorText.find(name); it != tensorText.end()) {
      auto &vals = it->second;
      if (static_cast<int64_t>(vals.size()) != n && vals.size() != 1)
        return makeError("tensor '" + name + "' has shape " + dimsString(dims) + " (" +
                         llvm::Twine(n) + " values) but " + llvm::Twine(vals.size()) +
                         " values were given");
      for (size_t i = 0; i < vals.size(); ++i) {
        auto v = parseScalar(vals[i], et, name);
        if (!v)
          return v.takeError();
        if (vals.size() == 1)
          std::fill(t.data.begin(), t.data.end(), *v);
        else
          t.data[i] = *v;
      }
    } else {
      int64_t inner = dims.empty() || dims[0] == 0 ? 1 : n / dims[0];
      uint64_t nameHash = 0xcbf29ce484222325ULL; // FNV-1a: stable across platforms
      for (char ch : name)
        nameHash = (nameHash ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
      for (int64_t e = 0; e < n; ++e) {
        if (et == ScalarType::Bool) {
          t.data[e] = 1.0;
        } else if (isInteger(et) && dims.size() > 1) {
          // A block-mask-like pattern: each entry 0 or 1, seeded.
          uint64_t r = splitmix64(seed ^ splitmix64(nameHash + static_cast<uint64_t>(e)));
          t.data[e] = static_cast<double>(r >> 63);
        } else if (isInteger(et)) {
          // Sorted segment ids: four equal documents.
          int64_t row = e / inner;
          t.data[e] = static_cast<double>(row * 4 / dims[0]);
        } else {
          uint64_t r = splitmix64(seed ^ splitmix64(nameHash + static_cast<uint64_t>(e)));
          double u = static_cast<double>(r >> 11) * 0x1.0p-53;
          t.data[e] = 2.0 * u - 1.0;
        }
      }
    }
    out.tensors[name] = std::move(t);
  }
  return out;
}

double attnc::reference::relativeError(const std::vector<double> &out,
                                       const std::vector<double> &ref) {
  if (out.size() != ref.size())
    return std::numeric_limits<double>::infinity();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    double a = out[i], r = ref[i];
    if (std::isnan(a) || std::isnan(r))
      return std::numeric_limits<double>::quiet_NaN();
    if (std::isinf(a) || std::isinf(r)) {
      if (a == r)
        continue;
      return std::numeric_limits<double>::infinity();
    }
    diff += (a - r) * (a - r);
    norm += r * r;
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}
