//===- ASTPrinter.cpp - AST dump and canonical source printer -------------===//
//
// Two views of a checked module: `dumpAST` prints the tree with the types and
// resolutions Sema found (`attnc --emit=ast`); `formatModule` prints canonical
// DSL source that parses back to the same program (`attnc --emit=format`).
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Printer.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <sstream>

using namespace attnc::dsl;

namespace {

std::string formatFloat(double v) {
  // Shortest text that round-trips, always with a '.' or exponent so it
  // re-parses as a float.
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
  }
  for (int prec = 1; prec <= 17; ++prec) {
    snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos)
    s += ".0";
  return s;
}

int precedence(const Expr &e) {
  if (auto *b = llvm::dyn_cast<BinaryExpr>(&e)) {
    switch (b->op) {
    case BinaryOp::Mul:
    case BinaryOp::Div:
    case BinaryOp::Mod:
      return 7;
    case BinaryOp::Add:
    case BinaryOp::Sub:
      return 6;
    case BinaryOp::Lt:
    case BinaryOp::Le:
    case BinaryOp::Gt:
    case BinaryOp::Ge:
      return 5;
    case BinaryOp::Eq:
    case BinaryOp::Ne:
      return 4;
    case BinaryOp::And:
      return 3;
    case BinaryOp::Or:
      return 2;
    }
  }
  if (llvm::isa<CondExpr>(&e))
    return 1;
  if (llvm::isa<UnaryExpr>(&e))
    return 8;
  return 9;
}

class SourcePrinter {
public:
  explicit SourcePrinter(llvm::raw_ostream &os) : os(os) {}

  void expr(const Expr &e, int minPrec = 0) {
    bool paren = precedence(e) < minPrec;
    if (paren)
      os << "(";
    exprImpl(e);
    if (paren)
      os << ")";
  }

  void exprImpl(const Expr &e) {
    switch (e.getKind()) {
    case Expr::Kind::IntLit:
      os << llvm::cast<IntLitExpr>(e).value;
      return;
    case Expr::Kind::FloatLit:
      os << formatFloat(llvm::cast<FloatLitExpr>(e).value);
      return;
    case Expr::Kind::BoolLit:
      os << (llvm::cast<BoolLitExpr>(e).value ? "true" : "false");
      return;
    case Expr::Kind::Name:
      os << llvm::cast<NameExpr>(e).name;
      return;
    case Expr::Kind::Call: {
      auto &c = llvm::cast<CallExpr>(e);
      os << c.calleeName << "(";
      bool first = true;
      auto sep = [&] {
        if (!first)
          os << ", ";
        first = false;
      };
      if (c.callee) {
        for (auto &p : c.positional) {
          sep();
          expr(*p);
        }
      }
      for (auto &a : c.args) {
        if (!a.value)
          continue; // moved into `positional` by Sema
        sep();
        if (!a.name.empty())
          os << a.name << ": ";
        expr(*a.value);
      }
      os << ")";
      return;
    }
    case Expr::Kind::Index: {
      auto &ix = llvm::cast<IndexExpr>(e);
      os << ix.tensor << "[";
      for (size_t i = 0; i < ix.indices.size(); ++i) {
        if (i)
          os << ", ";
        expr(*ix.indices[i]);
      }
      os << "]";
      return;
    }
    case Expr::Kind::Unary: {
      auto &u = llvm::cast<UnaryExpr>(e);
      os << toString(u.op);
      expr(*u.operand, 8);
      return;
    }
    case Expr::Kind::Binary: {
      auto &b = llvm::cast<BinaryExpr>(e);
      int p = precedence(e);
      expr(*b.lhs, p);
      os << " " << toString(b.op) << " ";
      expr(*b.rhs, p + 1); // operators are left-associative
      return;
    }
    case Expr::Kind::Cond: {
      auto &c = llvm::cast<CondExpr>(e);
      expr(*c.cond, 2);
      os << " ? ";
      expr(*c.thenExpr, 2);
      os << " : ";
      expr(*c.elseExpr, 1);
      return;
    }
    }
  }

  void param(const ParamDecl &p) {
    if (p.isConst)
      os << "const ";
    os << p.name << ": " << toString(p.elemType);
    if (p.isTensor()) {
      os << "[";
      for (size_t i = 0; i < p.dims.size(); ++i) {
        if (i)
          os << ", ";
        expr(*p.dims[i]);
      }
      os << "]";
    }
    if (p.init) {
      os << " = ";
      expr(*p.init);
    }
  }

  void params(const std::vector<std::unique_ptr<ParamDecl>> &ps) {
    for (size_t i = 0; i < ps.size(); ++i) {
      if (i)
        os << ", ";
      param(*ps[i]);
    }
  }

  void def(const DefDecl &d) {
    os << (d.kind == DefKind::Mask ? "mask " : "score ") << d.name << "(";
    for (size_t i = 0; i < d.indexArgs.size(); ++i)
      os << (i ? ", " : "") << d.indexArgs[i].name;
    if (!d.params.empty()) {
      os << "; ";
      params(d.params);
    }
    os << ")";
    if (d.lets.empty()) {
      os << " = ";
      expr(*d.body);
      os << ";\n";
      return;
    }
    os << " {\n";
    for (auto &l : d.lets) {
      os << "  let " << l->name << " = ";
      expr(*l->value);
      os << ";\n";
    }
    os << "  ";
    expr(*d.body);
    os << "\n}\n";
  }

  void field(const Field &f, const Expr *consumed) {
    os << "  " << f.name << " = ";
    if (f.isList)
      os << "[";
    for (size_t i = 0; i < f.values.size(); ++i) {
      if (i)
        os << ", ";
      const Expr *v = f.values[i] ? f.values[i].get() : consumed;
      if (v)
        expr(*v);
    }
    if (f.isList)
      os << "]";
    os << ";\n";
  }

  void kernel(const KernelDecl &k) {
    os << "kernel " << k.name;
    if (!k.params.empty()) {
      os << "(";
      params(k.params);
      os << ")";
    }
    os << " {\n";
    for (auto &f : k.fields) {
      const Expr *consumed = nullptr;
      if (f.name == "mask" && k.maskDef)
        consumed = k.maskDef->body.get();
      else if (f.name == "score" && k.scoreDef)
        consumed = k.scoreDef->body.get();
      else if (f.name == "scale" && k.scaleDef)
        consumed = k.scaleDef->body.get();
      field(f, consumed);
    }
    os << "}\n";
  }

  void cache(const CacheDecl &c) {
    os << "cache " << c.name;
    if (c.isPerHead()) {
      os << " = per_head(";
      for (size_t i = 0; i < c.perHead.size(); ++i)
        os << (i ? ", " : "") << c.perHead[i].name;
      os << ") by " << c.table.name << ";\n";
      return;
    }
    os << " {\n";
    for (auto &f : c.fields)
      field(f, nullptr);
    os << "}\n";
  }

private:
  llvm::raw_ostream &os;
};

class TreeDumper {
public:
  explicit TreeDumper(llvm::raw_ostream &os) : os(os) {}

  llvm::raw_ostream &line(unsigned depth) { return os.indent(2 * depth); }

  void expr(const Expr &e, unsigned depth) {
    auto &o = line(depth);
    switch (e.getKind()) {
    case Expr::Kind::IntLit:
      o << "Int " << llvm::cast<IntLitExpr>(e).value;
      break;
    case Expr::Kind::FloatLit:
      o << "Float " << formatFloat(llvm::cast<FloatLitExpr>(e).value);
      break;
    case Expr::Kind::BoolLit:
      o << "Bool " << (llvm::cast<BoolLitExpr>(e).value ? "true" : "false");
      break;
    case Expr::Kind::Name: {
      auto &n = llvm::cast<NameExpr>(e);
      o << "Name " << n.name << " ";
      switch (n.ref.kind) {
      case NameRef::Kind::IndexVar:
        o << "<index " << "bhqk"[n.ref.indexVar] << ">";
        break;
      case NameRef::Kind::ScoreVar:
        o << "<score>";
        break;
      case NameRef::Kind::Let:
        o << "<let>";
        break;
      case NameRef::Kind::Param:
        o << "<param " << n.ref.param << ">";
        break;
      case NameRef::Kind::Dim:
        o << "<dim " << toString(n.ref.dim) << ">";
        break;
      case NameRef::Kind::Definition:
        o << "<implicit call>";
        break;
      case NameRef::Kind::Unresolved:
        o << "<unresolved>";
        break;
      }
      o << " : " << toString(e.type) << "\n";
      if (n.resolvedCall)
        call(*n.resolvedCall, depth + 1);
      return;
    }
    case Expr::Kind::Call:
      call(llvm::cast<CallExpr>(e), depth, /*header=*/false);
      return;
    case Expr::Kind::Index: {
      auto &ix = llvm::cast<IndexExpr>(e);
      o << "Index " << ix.tensor << " : " << toString(e.type) << "\n";
      for (auto &i : ix.indices)
        expr(*i, depth + 1);
      return;
    }
    case Expr::Kind::Unary: {
      auto &u = llvm::cast<UnaryExpr>(e);
      o << "Unary " << toString(u.op) << " : " << toString(e.type) << "\n";
      expr(*u.operand, depth + 1);
      return;
    }
    case Expr::Kind::Binary: {
      auto &b = llvm::cast<BinaryExpr>(e);
      o << "Binary " << toString(b.op) << " : " << toString(e.type) << "\n";
      expr(*b.lhs, depth + 1);
      expr(*b.rhs, depth + 1);
      return;
    }
    case Expr::Kind::Cond: {
      auto &c = llvm::cast<CondExpr>(e);
      o << "Cond : " << toString(e.type) << "\n";
      expr(*c.cond, depth + 1);
      expr(*c.thenExpr, depth + 1);
      expr(*c.elseExpr, depth + 1);
      return;
    }
    }
    o << " : " << toString(e.type) << "\n";
  }

  void call(const CallExpr &c, unsigned depth, bool header = true) {
    auto &o = header ? line(depth) : os;
    if (c.builtin != Builtin::None) {
      o << "Builtin " << toString(c.builtin) << " : " << toString(c.type) << "\n";
      for (auto &a : c.args)
        expr(*a.value, depth + 1);
      return;
    }
    o << "Call @" << c.calleeName << " : " << toString(c.type) << "\n";
    for (auto &p : c.positional)
      expr(*p, depth + 1);
    if (!c.callee)
      return;
    for (size_t i = 0; i < c.paramValues.size(); ++i) {
      line(depth + 1) << "bind " << c.callee->effectiveParams[i].name
                      << (c.paramValues[i] ? "" : " <from caller>") << "\n";
      if (c.paramValues[i])
        expr(*c.paramValues[i], depth + 2);
    }
  }

  void param(const EffectiveParam &p, unsigned depth, bool own) {
    const ParamDecl &d = *p.decl;
    auto &o = line(depth);
    o << (d.isConst ? "Const " : "Param ") << p.name << " : " << toString(d.elemType);
    if (d.isTensor())
      o << " tensor rank " << d.dims.size();
    if (!own)
      o << " (from a callee)";
    o << "\n";
  }

  void def(const DefDecl &d, unsigned depth) {
    line(depth) << (d.kind == DefKind::Mask ? "Mask " : "Score ") << d.name << "(";
    for (size_t i = 0; i < d.indexArgs.size(); ++i)
      os << (i ? ", " : "") << d.indexArgs[i].name;
    os << ")\n";
    auto declared = d.declaredParams();
    for (auto &p : d.effectiveParams)
      param(p, depth + 1, llvm::is_contained(declared, p.decl));
    for (auto &l : d.lets) {
      line(depth + 1) << "Let " << l->name << "\n";
      expr(*l->value, depth + 2);
    }
    expr(*d.body, depth + 1);
  }

  void kernel(const KernelDecl &k) {
    os << "Kernel " << k.name << "\n";
    line(1) << "normalizer " << toString(k.normalizer) << "\n";
    line(1) << "heads " << toString(k.heads) << "\n";
    line(1) << "dtypes";
    for (auto t : k.dtypes)
      os << " " << toString(t);
    os << "\n";
    line(1) << "head_dims";
    if (k.headDims.empty())
      os << " any";
    for (auto d : k.headDims)
      os << " " << d;
    os << "\n";
    if (!k.cachePolicy.empty())
      line(1) << "cache " << k.cachePolicy << "\n";
    for (auto &p : k.runtimeParams)
      param(p, 1, true);
    for (auto &p : k.constParams)
      param(p, 1, true);
    if (k.maskDef)
      def(*k.maskDef, 1);
    if (k.scoreDef)
      def(*k.scoreDef, 1);
    if (k.scaleDef)
      def(*k.scaleDef, 1);
  }

  void cache(const CacheDecl &c) {
    os << "Cache " << c.name;
    if (c.isPerHead()) {
      os << " per_head";
      for (auto &p : c.perHead)
        os << " " << p.name;
      os << " by " << c.table.name << "\n";
      return;
    }
    os << "\n";
    line(1) << "layout ";
    if (c.layout.kind == CacheLayout::Contiguous)
      os << "contiguous\n";
    else
      os << "paged " << c.layout.pageSize << "\n";
    line(1) << "retention ";
    switch (c.retention.kind) {
    case CacheRetention::All:
      os << "all\n";
      break;
    case CacheRetention::SinkWindow:
      os << "sink " << c.retention.sink << " window " << c.retention.window << "\n";
      break;
    case CacheRetention::Budget:
      os << "budget " << c.retention.budget << " evict "
         << (c.retention.eviction == CacheRetention::H2O ? "h2o" : "snapkv") << "\n";
      break;
    }
    static const char *const elems[] = {"bf16", "f16", "fp8", "int8", "int4"};
    line(1) << "storage " << elems[c.storage.elem];
    if (c.storage.scale == CacheStorage::PerToken)
      os << " per_token";
    else if (c.storage.scale == CacheStorage::PerGroup)
      os << " per_group " << c.storage.groupSize;
    if (c.storage.f16Scales)
      os << " f16_scales";
    os << "\n";
  }

private:
  llvm::raw_ostream &os;
};

} // namespace

void attnc::dsl::dumpAST(const Module &mod, llvm::raw_ostream &os) {
  TreeDumper dumper(os);
  os << "Module " << mod.file << "\n";
  for (auto &imp : mod.imports)
    os << "Import \"" << imp.path << "\"\n";
  for (auto &d : mod.defs)
    dumper.def(*d, 0);
  for (auto &c : mod.caches)
    dumper.cache(*c);
  for (auto &k : mod.kernels)
    dumper.kernel(*k);
}

void attnc::dsl::formatModule(const Module &mod, llvm::raw_ostream &os) {
  SourcePrinter printer(os);
  for (auto &imp : mod.imports)
    os << "import \"" << imp.path << "\";\n";
  for (auto &d : mod.defs)
    printer.def(*d);
  for (auto &c : mod.caches)
    printer.cache(*c);
  for (auto &k : mod.kernels)
    printer.kernel(*k);
}
