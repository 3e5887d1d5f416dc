//===- MLIRGen.cpp - Typed AST to the attn dialect ------------------------===//
//
// Emits one attn.mask / attn.score per named definition (with its effective
// parameters as trailing arguments), one attn.kernel per kernel with the
// mask and score as regions of its attn.attention, and the cache policies.
// Specialization constants are materialized as arith.constant in the kernel
// and passed down, so canonicalization after inlining folds them.
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/MLIRGen.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>

using namespace attnc::dsl;
using namespace mlir;

namespace {

/// Values visible while emitting one body.
struct Env {
  Value index[4];
  Value score;
  std::map<const LetStmt *, Value> lets;
  std::map<std::string, Value> params;
};

class MLIRGenImpl {
public:
  MLIRGenImpl(MLIRContext &ctx, const Program &prog, const MLIRGenOptions &options)
      : ctx(ctx), prog(prog), options(options), builder(&ctx) {}

  OwningOpRef<ModuleOp> gen() {
    module = ModuleOp::create(builder.getUnknownLoc());
    builder.setInsertionPointToEnd(module->getBody());

    std::vector<const KernelDecl *> kernels;
    if (!options.kernel.empty()) {
      const KernelDecl *k = prog.lookupKernel(options.kernel);
      if (!k) {
        // The name comes from the command line, not from a line of the file.
        auto diag = emitError(FileLineColLoc::get(&ctx, prog.main->file, 0, 0))
                     << "no kernel named '" << options.kernel << "'";
        std::vector<std::string> names;
        for (auto &[name, _] : prog.kernels)
          names.push_back(name);
        if (!names.empty())
          diag << " (available: " << llvm::join(names, ", ") << ")";
        return nullptr;
      }
      kernels.push_back(k);
    } else {
      for (auto &k : prog.main->kernels)
        kernels.push_back(k.get());
    }

    // Definitions: those of the main file, and everything the kernels reach.
    std::set<const DefDecl *> wanted;
    if (options.kernel.empty()) {
      for (auto &d : prog.main->defs) {
        wanted.insert(d.get());
        collectCallees(*d, wanted);
      }
    }
    for (const KernelDecl *k : kernels)
      for (const DefDecl *d : {k->maskDef.get(), k->scoreDef.get(), k->scaleDef.get()})
        if (d)
          collectCallees(*d, wanted);
    for (auto &mod : prog.modules)
      for (auto &d : mod->defs)
        if (wanted.count(d.get()))
          genDef(*d);

    std::set<std::string> caches;
    if (options.kernel.empty())
      for (auto &c : prog.main->caches)
        caches.insert(c->name);
    for (const KernelDecl *k : kernels)
      if (!k->cachePolicy.empty())
        caches.insert(k->cachePolicy);
    // Per-head policies refer to record policies, which must be emitted too.
    for (auto &name : std::set<std::string>(caches))
      if (const CacheDecl *c = prog.lookupCache(name))
        for (auto &id : c->perHead)
          caches.insert(id.name);
    for (auto &mod : prog.modules)
      for (auto &c : mod->caches)
        if (caches.count(c->name))
          genCache(*c);

    for (const KernelDecl *k : kernels)
      genKernel(*k);

    if (failed)
      return nullptr;
    if (mlir::failed(verify(*module))) {
      emitError(UnknownLoc::get(&ctx)) << "internal error: MLIRGen produced invalid IR";
      return nullptr;
    }
    return std::move(module);
  }

private:
  mlir::Location loc(const attnc::dsl::Location &l) { return toMLIRLoc(ctx, l); }

  void collectCallees(const DefDecl &d, std::set<const DefDecl *> &out) {
    std::function<void(const Expr *)> walk = [&](const Expr *e) {
      if (!e)
        return;
      if (auto *n = llvm::dyn_cast<NameExpr>(e)) {
        if (n->resolvedCall)
          walk(n->resolvedCall.get());
      } else if (auto *c = llvm::dyn_cast<CallExpr>(e)) {
        if (c->callee && out.insert(c->callee).second)
          collectCallees(*c->callee, out);
        for (auto &p : c->positional)
          walk(p.get());
        for (auto &a : c->args)
          walk(a.value.get());
      } else if (auto *ix = llvm::dyn_cast<IndexExpr>(e)) {
        for (auto &i : ix->indices)
          walk(i.get());
      } else if (auto *u = llvm::dyn_cast<UnaryExpr>(e)) {
        walk(u->operand.get());
      } else if (auto *b = llvm::dyn_cast<BinaryExpr>(e)) {
        walk(b->lhs.get());
        walk(b->rhs.get());
      } else if (auto *c = llvm::dyn_cast<CondExpr>(e)) {
        walk(c->cond.get());
        walk(c->thenExpr.get());
        walk(c->elseExpr.get());
      }
    };
    for (auto &l : d.lets)
      walk(l->value.get());
    walk(d.body.get());
    for (auto &p : d.params)
      walk(p->init.get());
  }

  Type scalarType(ScalarType t) {
    switch (t) {
    case ScalarType::Bool:
      return builder.getI1Type();
    case ScalarType::I32:
      return builder.getI32Type();
    case ScalarType::I64:
      return builder.getI64Type();
    case ScalarType::F32:
    case ScalarType::Invalid:
      break;
    }
    return builder.getF32Type();
  }

  /// Tensor parameters are dynamically shaped in the IR; their symbolic shape
  /// travels as the `attn.dims` argument attribute and is checked at launch.
  Type paramType(const ParamDecl &p) {
    Type elem = scalarType(p.elemType);
    if (!p.isTensor())
      return elem;
    SmallVector<int64_t> shape(p.dims.size(), ShapedType::kDynamic);
    return RankedTensorType::get(shape, elem);
  }

  /// One `attn.dims` entry: a dimension symbol, an integer when the extent
  /// folds with the kernel's constants, or "?" when it cannot be expressed
  /// as either (the launch then relies on the front end's shape function).
  Attribute dimAttr(const Expr &e, const ParamDecl &tensor) {
    dimOwner = tensor.owner;
    if (auto *n = llvm::dyn_cast<NameExpr>(&e); n && n->ref.kind == NameRef::Kind::Dim)
      return builder.getStringAttr(toString(n->ref.dim));
    if (auto v = foldDim(e))
      return builder.getI64IntegerAttr(*v);
    return builder.getStringAttr("?");
  }

  std::optional<int64_t> foldDim(const Expr &e) {
    if (auto *i = llvm::dyn_cast<IntLitExpr>(&e))
      return i->value;
    if (auto *n = llvm::dyn_cast<NameExpr>(&e)) {
      if (n->ref.kind != NameRef::Kind::Param)
        return std::nullopt;
      // Only a constant of the same parameter list is the same parameter;
      // one bound inside a call is not visible here.
      auto it = kernelConsts.find(n->ref.param);
      if (it == kernelConsts.end() || it->second.first->owner != dimOwner)
        return std::nullopt;
      return it->second.second;
    }
    if (auto *b = llvm::dyn_cast<BinaryExpr>(&e)) {
      auto l = foldDim(*b->lhs), r = foldDim(*b->rhs);
      if (!l || !r)
        return std::nullopt;
      // An extent that overflows int64 is not folded ("?"): the launch-time
      // shape check reports it.
      int64_t v;
      switch (b->op) {
      case BinaryOp::Add:
        return llvm::AddOverflow(*l, *r, v) ? std::nullopt : std::optional<int64_t>(v);
      case BinaryOp::Sub:
        return llvm::SubOverflow(*l, *r, v) ? std::nullopt : std::optional<int64_t>(v);
      case BinaryOp::Mul:
        return llvm::MulOverflow(*l, *r, v) ? std::nullopt : std::optional<int64_t>(v);
      case BinaryOp::Div:
        if (*r == 0 || (*l == INT64_MIN && *r == -1))
          return std::nullopt;
        return *l / *r - ((*l % *r != 0) && ((*l < 0) != (*r < 0)));
      default:
        return std::nullopt;
      }
    }
    return std::nullopt;
  }

  DictionaryAttr paramAttrs(const EffectiveParam &p, bool withDims) {
    NamedAttrList attrs;
    attrs.append("attn.name", builder.getStringAttr(p.name));
    if (p.decl->isConst)
      attrs.append("attn.const", builder.getUnitAttr());
    if (withDims && p.decl->isTensor()) {
      SmallVector<Attribute> dims;
      for (auto &d : p.decl->dims)
        dims.push_back(dimAttr(*d, *p.decl));
      attrs.append("attn.dims", builder.getArrayAttr(dims));
    }
    return attrs.getDictionary(&ctx);
  }

  //===--------------------------------------------------------------------===//
  // Definitions
  //===--------------------------------------------------------------------===//

  void genDef(const DefDecl &d) {
    SmallVector<Type> inputs;
    SmallVector<DictionaryAttr> argAttrs;
    if (d.kind == DefKind::Score) {
      inputs.push_back(builder.getF32Type());
      argAttrs.push_back(builder.getDictionaryAttr({}));
    }
    for (int i = 0; i < 4; ++i) {
      inputs.push_back(builder.getI32Type());
      argAttrs.push_back(builder.getDictionaryAttr({}));
    }
    for (auto &p : d.effectiveParams) {
      inputs.push_back(paramType(*p.decl));
      argAttrs.push_back(paramAttrs(p, /*withDims=*/false));
    }
    Type result = d.kind == DefKind::Mask ? Type(builder.getI1Type()) : Type(builder.getF32Type());
    auto type = builder.getFunctionType(inputs, result);

    OpBuilder::InsertionGuard guard(builder);
    Block *body;
    if (d.kind == DefKind::Mask)
      body = &attn::MaskOp::create(builder, loc(d.loc), d.name, type, argAttrs).getBody().front();
    else
      body = &attn::ScoreOp::create(builder, loc(d.loc), d.name, type, argAttrs).getBody().front();

    Env env;
    unsigned arg = 0;
    if (d.kind == DefKind::Score)
      env.score = body->getArgument(arg++);
    for (int i = 0; i < 4; ++i)
      env.index[i] = body->getArgument(arg++);
    for (auto &p : d.effectiveParams)
      env.params[p.name] = body->getArgument(arg++);
    builder.setInsertionPointToEnd(body);
    genBody(d, env);
  }

  void genBody(const DefDecl &d, Env &env) {
    for (auto &l : d.lets)
      env.lets[l.get()] = genExpr(*l->value, env);
    Value v = genExpr(*d.body, env);
    attn::YieldOp::create(builder, loc(d.body->getLoc()), v);
  }

  //===--------------------------------------------------------------------===//
  // Kernels
  //===--------------------------------------------------------------------===//

  void genKernel(const KernelDecl &k) {
    SmallVector<Type> inputs;
    for (auto &p : k.runtimeParams)
      inputs.push_back(paramType(*p.decl));
    auto type = builder.getFunctionType(inputs, {});
    OpBuilder::InsertionGuard guard(builder);
    auto kernel = attn::KernelOp::create(builder, loc(k.loc), k.name, type);
    Block &body = kernel.getBody().front();
    builder.setInsertionPointToEnd(&body);
    Env env;
    for (auto [i, p] : llvm::enumerate(k.runtimeParams))
      env.params[p.name] = body.getArgument(i);
    kernelConsts.clear();
    genConstants(k, env);

    for (auto [i, p] : llvm::enumerate(k.runtimeParams)) {
      NamedAttrList attrs(paramAttrs(p, /*withDims=*/true));
      if (p.decl->init && !p.decl->isTensor())
        if (Attribute def = constantAttr(*p.decl->init, p.decl->elemType))
          attrs.set("attn.default", def);
      kernel.setArgAttrs(i, attrs.getDictionary(&ctx));
    }
    SmallVector<Attribute> dtypes;
    for (ElemType t : k.dtypes)
      dtypes.push_back(TypeAttr::get(t == ElemType::F32   ? Type(builder.getF32Type())
                                     : t == ElemType::F16 ? Type(builder.getF16Type())
                                                          : Type(builder.getBF16Type())));
    kernel.setDtypesAttr(builder.getArrayAttr(dtypes));
    if (!k.headDims.empty())
      kernel.setHeadDimsAttr(builder.getDenseI64ArrayAttr(k.headDims));
    // The cache policy the kernel reads K/V through (executed by the KV-cache
    // lowering; recorded here so the IR says which one).
    if (!k.cachePolicy.empty())
      kernel->setAttr("attn.cache", FlatSymbolRefAttr::get(&ctx, k.cachePolicy));

    Value scale;
    if (k.scaleDef)
      scale = genExpr(*k.scaleDef->body, env);
    auto attention = attn::AttentionOp::create(
        builder, loc(k.loc),
        k.normalizer == Normalizer::Softmax ? attn::Normalizer::Softmax : attn::Normalizer::Sigmoid,
        k.heads == HeadMapping::Grouped ? attn::HeadMapping::Grouped : attn::HeadMapping::Interleaved,
        scale);

    {
      Block &mask = attention.getMaskBlock();
      Env maskEnv = env;
      for (int i = 0; i < 4; ++i)
        maskEnv.index[i] = mask.getArgument(i);
      OpBuilder::InsertionGuard g(builder);
      builder.setInsertionPointToEnd(&mask);
      genBody(*k.maskDef, maskEnv);
    }
    {
      Block &score = attention.getScoreBlock();
      Env scoreEnv = env;
      scoreEnv.score = score.getArgument(0);
      for (int i = 0; i < 4; ++i)
        scoreEnv.index[i] = score.getArgument(i + 1);
      OpBuilder::InsertionGuard g(builder);
      builder.setInsertionPointToEnd(&score);
      genBody(*k.scoreDef, scoreEnv);
    }
  }

  /// Materializes each const parameter: the --param value if given, else its
  /// default; a const without either cannot be compiled.
  void genConstants(const KernelDecl &k, Env &env) {
    for (auto &p : k.constParams) {
      auto it = options.constValues.find(p.name);
      Type type = scalarType(p.decl->elemType);
      if (it != options.constValues.end()) {
        Attribute attr = parseConstant(it->second, p.decl->elemType);
        if (!attr) {
          emitError(loc(p.decl->loc)) << "invalid value '" << it->second << "' for const parameter '"
                                      << p.name << "' of type " << toString(p.decl->elemType);
          failed = true;
          // A placeholder, so uses of the parameter report nothing more.
          env.params[p.name] = arith::ConstantOp::create(builder, loc(p.decl->loc), type,
                                                         builder.getZeroAttr(type));
          continue;
        }
        env.params[p.name] = arith::ConstantOp::create(builder, loc(p.decl->loc), type,
                                                       cast<TypedAttr>(attr));
        continue;
      }
      if (!p.decl->init) {
        emitError(loc(p.decl->loc)) << "const parameter '" << p.name << "' of kernel '" << k.name
                                    << "' has no value; pass --param " << p.name << "=VALUE";
        failed = true;
        // Keep going with a placeholder so later errors still surface.
        env.params[p.name] = arith::ConstantOp::create(builder, loc(p.decl->loc), type,
                                                       builder.getZeroAttr(type));
        continue;
      }
      env.params[p.name] = genExpr(*p.decl->init, env);
    }
    for (auto &p : k.constParams) {
      auto it = env.params.find(p.name);
      if (it == env.params.end())
        continue;
      if (auto c = it->second.getDefiningOp<arith::ConstantOp>())
        if (auto ia = dyn_cast<IntegerAttr>(c.getValue()))
          kernelConsts[p.name] = {p.decl, ia.getValue().getSExtValue()};
    }
    for (auto &[name, _] : options.constValues) {
      bool known = llvm::any_of(k.constParams, [&](auto &p) { return p.name == name; });
      bool runtime = llvm::any_of(k.runtimeParams, [&](auto &p) { return p.name == name; });
      if (!known && !runtime) {
        emitError(loc(k.loc)) << "kernel '" << k.name << "' has no parameter '" << name << "'";
        failed = true;
      } else if (runtime) {
        emitError(loc(k.loc)) << "parameter '" << name << "' of kernel '" << k.name
                              << "' is a runtime parameter; bind it at launch, not at compile time";
        failed = true;
      }
    }
  }

  Attribute parseConstant(llvm::StringRef text, ScalarType t) {
    text = text.trim();
    switch (t) {
    case ScalarType::Bool:
      if (text == "true" || text == "false")
        return builder.getBoolAttr(text == "true");
      return nullptr;
    case ScalarType::I32:
    case ScalarType::I64: {
      int64_t v;
      if (text.getAsInteger(10, v))
        return nullptr;
      if (t == ScalarType::I32 && (v < INT32_MIN || v > INT32_MAX))
        return nullptr;
      return builder.getIntegerAttr(scalarType(t), v);
    }
    case ScalarType::F32: {
      double v;
      if (text.getAsDouble(v) || !std::isfinite(v) ||
          std::abs(v) > double(std::numeric_limits<float>::max()))
        return nullptr;
      return builder.getF32FloatAttr(v);
    }
    case ScalarType::Invalid:
      break;
    }
    return nullptr;
  }

  /// The value of a literal default (for the `attn.default` attribute).
  Attribute constantAttr(const Expr &e, ScalarType t) {
    bool neg = false;
    const Expr *x = &e;
    if (auto *u = llvm::dyn_cast<UnaryExpr>(x); u && u->op == UnaryOp::Neg) {
      neg = true;
      x = u->operand.get();
    }
    if (auto *i = llvm::dyn_cast<IntLitExpr>(x)) {
      if (t == ScalarType::F32)
        return builder.getF32FloatAttr(neg ? -double(i->value) : double(i->value));
      return builder.getIntegerAttr(scalarType(t), neg ? -i->value : i->value);
    }
    if (auto *f = llvm::dyn_cast<FloatLitExpr>(x))
      return builder.getF32FloatAttr(neg ? -f->value : f->value);
    if (auto *b = llvm::dyn_cast<BoolLitExpr>(x))
      return builder.getBoolAttr(b->value);
    return nullptr;
  }

  //===--------------------------------------------------------------------===//
  // Cache policies
  //===--------------------------------------------------------------------===//

  void genCache(const CacheDecl &c) {
    if (c.isPerHead()) {
      SmallVector<Attribute> refs;
      for (auto &id : c.perHead)
        refs.push_back(FlatSymbolRefAttr::get(&ctx, id.name));
      attn::HeadPolicyOp::create(builder, loc(c.loc), c.name, builder.getArrayAttr(refs),
                                 c.table.name);
      return;
    }
    attn::LayoutAttr layout = c.layout.kind == CacheLayout::Paged
                                  ? attn::LayoutAttr::getPaged(&ctx, c.layout.pageSize)
                                  : attn::LayoutAttr::getContiguous(&ctx);
    attn::RetentionAttr retention;
    switch (c.retention.kind) {
    case CacheRetention::All:
      retention = attn::RetentionAttr::getAll(&ctx);
      break;
    case CacheRetention::SinkWindow:
      retention = attn::RetentionAttr::getSinkWindow(&ctx, c.retention.sink, c.retention.window);
      break;
    case CacheRetention::Budget:
      retention = attn::RetentionAttr::getBudget(
          &ctx, c.retention.budget,
          c.retention.eviction == CacheRetention::H2O ? attn::EvictionScore::H2O
                                                      : attn::EvictionScore::SnapKV);
      break;
    }
    Type elem;
    switch (c.storage.elem) {
    case CacheStorage::BF16:
      elem = builder.getBF16Type();
      break;
    case CacheStorage::F16:
      elem = builder.getF16Type();
      break;
    case CacheStorage::FP8:
      elem = Float8E4M3FNType::get(&ctx);
      break;
    case CacheStorage::Int8:
      elem = builder.getIntegerType(8);
      break;
    case CacheStorage::Int4:
      elem = builder.getIntegerType(4);
      break;
    }
    attn::ScaleGranularity scale = c.storage.scale == CacheStorage::PerToken
                                       ? attn::ScaleGranularity::PerToken
                                   : c.storage.scale == CacheStorage::PerGroup
                                       ? attn::ScaleGranularity::PerGroup
                                       : attn::ScaleGranularity::None;
    auto storage = attn::StorageAttr::get(&ctx, elem, scale, c.storage.groupSize,
                                          c.storage.f16Scales ? builder.getF16Type() : Type());
    attn::CachePolicyOp::create(builder, loc(c.loc), c.name, layout, retention, storage);
  }

  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  Value constInt(mlir::Location l, Type t, int64_t v) {
    return arith::ConstantOp::create(builder, l, t, builder.getIntegerAttr(t, v));
  }

  Value genExpr(const Expr &e, Env &env) {
    mlir::Location l = loc(e.getLoc());
    switch (e.getKind()) {
    case Expr::Kind::IntLit: {
      auto &lit = llvm::cast<IntLitExpr>(e);
      if (e.type == ScalarType::F32)
        return arith::ConstantOp::create(builder, l, builder.getF32Type(),
                                         builder.getF32FloatAttr(double(lit.value)));
      return constInt(l, scalarType(e.type), lit.value);
    }
    case Expr::Kind::FloatLit:
      return arith::ConstantOp::create(builder, l, builder.getF32Type(),
                                       builder.getF32FloatAttr(llvm::cast<FloatLitExpr>(e).value));
    case Expr::Kind::BoolLit:
      return arith::ConstantOp::create(builder, l, builder.getI1Type(),
                                       builder.getBoolAttr(llvm::cast<BoolLitExpr>(e).value));
    case Expr::Kind::Name: {
      auto &n = llvm::cast<NameExpr>(e);
      switch (n.ref.kind) {
      case NameRef::Kind::IndexVar:
        return env.index[n.ref.indexVar];
      case NameRef::Kind::ScoreVar:
        return env.score;
      case NameRef::Kind::Let:
        return env.lets.at(n.ref.let);
      case NameRef::Kind::Param:
        return lookupParam(n.ref.param, l, env);
      case NameRef::Kind::Definition:
        return genCall(*n.resolvedCall, env);
      default:
        break;
      }
      break;
    }
    case Expr::Kind::Call: {
      auto &c = llvm::cast<CallExpr>(e);
      if (c.callee)
        return genCall(c, env);
      return genBuiltin(c, env);
    }
    case Expr::Kind::Index: {
      auto &ix = llvm::cast<IndexExpr>(e);
      Value tensor = lookupParam(ix.param, l, env);
      SmallVector<Value> indices;
      for (auto &i : ix.indices)
        indices.push_back(toI32(genExpr(*i, env), l));
      return attn::LoadOp::create(builder, l, tensor, indices);
    }
    case Expr::Kind::Unary: {
      auto &u = llvm::cast<UnaryExpr>(e);
      Value v = genExpr(*u.operand, env);
      if (u.op == UnaryOp::Not)
        return arith::XOrIOp::create(builder, l, v,
                                     arith::ConstantOp::create(builder, l, builder.getI1Type(),
                                                               builder.getBoolAttr(true)));
      if (e.type == ScalarType::F32)
        return arith::NegFOp::create(builder, l, v);
      return arith::SubIOp::create(builder, l, constInt(l, v.getType(), 0), v);
    }
    case Expr::Kind::Binary:
      return genBinary(llvm::cast<BinaryExpr>(e), env);
    case Expr::Kind::Cond: {
      auto &c = llvm::cast<CondExpr>(e);
      Value cond = genExpr(*c.cond, env);
      Value t = genExpr(*c.thenExpr, env);
      Value f = genExpr(*c.elseExpr, env);
      return arith::SelectOp::create(builder, l, cond, t, f);
    }
    }
    emitError(l) << "internal error: cannot generate this expression";
    failed = true;
    return arith::ConstantOp::create(builder, l, builder.getI1Type(), builder.getBoolAttr(false));
  }

  Value lookupParam(const std::string &name, mlir::Location l, Env &env) {
    auto it = env.params.find(name);
    if (it != env.params.end())
      return it->second;
    emitError(l) << "internal error: parameter '" << name << "' is not available here";
    failed = true;
    return arith::ConstantOp::create(builder, l, builder.getI32Type(), builder.getI32IntegerAttr(0));
  }

  Value toI32(Value v, mlir::Location l) {
    if (v.getType().isInteger(64))
      return arith::TruncIOp::create(builder, l, builder.getI32Type(), v);
    return v;
  }

  Value genCall(const CallExpr &c, Env &env) {
    mlir::Location l = loc(c.getLoc());
    SmallVector<Value> args;
    for (auto &p : c.positional)
      args.push_back(genExpr(*p, env));
    for (auto [i, p] : llvm::enumerate(c.callee->effectiveParams)) {
      const Expr *bound = c.paramValues[i];
      args.push_back(bound ? genExpr(*bound, env) : lookupParam(p.name, l, env));
    }
    Type result = c.callee->kind == DefKind::Mask ? Type(builder.getI1Type()) : Type(builder.getF32Type());
    return attn::CallOp::create(builder, l, c.callee->name, result, args).getResult();
  }

  Value genBuiltin(const CallExpr &c, Env &env) {
    mlir::Location l = loc(c.getLoc());
    SmallVector<Value> a;
    for (auto &arg : c.args)
      a.push_back(genExpr(*arg.value, env));
    bool isFloat = !a.empty() && isa<FloatType>(a[0].getType());
    switch (c.builtin) {
    case Builtin::Min:
      return isFloat ? Value(arith::MinimumFOp::create(builder, l, a[0], a[1]))
                     : Value(arith::MinSIOp::create(builder, l, a[0], a[1]));
    case Builtin::Max:
      return isFloat ? Value(arith::MaximumFOp::create(builder, l, a[0], a[1]))
                     : Value(arith::MaxSIOp::create(builder, l, a[0], a[1]));
    case Builtin::Clamp: {
      // clamp(x, lo, hi) = min(max(x, lo), hi)
      if (isFloat)
        return arith::MinimumFOp::create(builder, l,
                                         arith::MaximumFOp::create(builder, l, a[0], a[1]), a[2]);
      return arith::MinSIOp::create(builder, l, arith::MaxSIOp::create(builder, l, a[0], a[1]),
                                    a[2]);
    }
    case Builtin::Abs:
      return isFloat ? Value(math::AbsFOp::create(builder, l, a[0]))
                     : Value(math::AbsIOp::create(builder, l, a[0]));
    case Builtin::Select:
      return arith::SelectOp::create(builder, l, a[0], a[1], a[2]);
    case Builtin::Exp:
      return math::ExpOp::create(builder, l, a[0]);
    case Builtin::Exp2:
      return math::Exp2Op::create(builder, l, a[0]);
    case Builtin::Log:
      return math::LogOp::create(builder, l, a[0]);
    case Builtin::Log2:
      return math::Log2Op::create(builder, l, a[0]);
    case Builtin::Tanh:
      return math::TanhOp::create(builder, l, a[0]);
    case Builtin::Sqrt:
      return math::SqrtOp::create(builder, l, a[0]);
    case Builtin::Floor:
      return math::FloorOp::create(builder, l, a[0]);
    case Builtin::Sigmoid: {
      // 1 / (1 + exp(-x))
      Value one = arith::ConstantOp::create(builder, l, builder.getF32Type(),
                                            builder.getF32FloatAttr(1.0));
      Value e = math::ExpOp::create(builder, l, arith::NegFOp::create(builder, l, a[0]));
      return arith::DivFOp::create(builder, l, one, arith::AddFOp::create(builder, l, one, e));
    }
    case Builtin::CastI32:
    case Builtin::CastI64:
    case Builtin::CastF32:
    case Builtin::CastBool:
      return genCast(a[0], scalarType(c.type), l);
    case Builtin::None:
      break;
    }
    emitError(l) << "internal error: unknown builtin";
    failed = true;
    return a.empty() ? Value() : a[0];
  }

  Value genCast(Value v, Type to, mlir::Location l) {
    Type from = v.getType();
    if (from == to)
      return v;
    if (to.isInteger(1)) {
      if (isa<FloatType>(from))
        return arith::CmpFOp::create(builder, l, arith::CmpFPredicate::UNE, v,
                                     arith::ConstantOp::create(builder, l, from,
                                                               builder.getFloatAttr(from, 0.0)));
      return arith::CmpIOp::create(builder, l, arith::CmpIPredicate::ne, v, constInt(l, from, 0));
    }
    if (isa<FloatType>(to)) {
      if (from.isInteger(1))
        return arith::UIToFPOp::create(builder, l, to, v);
      return arith::SIToFPOp::create(builder, l, to, v);
    }
    // to is i32 or i64
    if (isa<FloatType>(from))
      return arith::FPToSIOp::create(builder, l, to, v);
    if (from.isInteger(1))
      return arith::ExtUIOp::create(builder, l, to, v);
    if (from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth())
      return arith::ExtSIOp::create(builder, l, to, v);
    return arith::TruncIOp::create(builder, l, to, v);
  }

  Value genBinary(const BinaryExpr &b, Env &env) {
    mlir::Location l = loc(b.getLoc());
    Value x = genExpr(*b.lhs, env);
    Value y = genExpr(*b.rhs, env);
    bool isFloat = isa<FloatType>(x.getType());
    using IP = arith::CmpIPredicate;
    using FP = arith::CmpFPredicate;
    auto cmp = [&](IP ip, FP fp) -> Value {
      if (isFloat)
        return arith::CmpFOp::create(builder, l, fp, x, y);
      return arith::CmpIOp::create(builder, l, ip, x, y);
    };
    switch (b.op) {
    case BinaryOp::Add:
      return isFloat ? Value(arith::AddFOp::create(builder, l, x, y))
                     : Value(arith::AddIOp::create(builder, l, x, y));
    case BinaryOp::Sub:
      return isFloat ? Value(arith::SubFOp::create(builder, l, x, y))
                     : Value(arith::SubIOp::create(builder, l, x, y));
    case BinaryOp::Mul:
      return isFloat ? Value(arith::MulFOp::create(builder, l, x, y))
                     : Value(arith::MulIOp::create(builder, l, x, y));
    case BinaryOp::Div:
      return isFloat ? Value(arith::DivFOp::create(builder, l, x, y))
                     : Value(arith::FloorDivSIOp::create(builder, l, x, y));
    case BinaryOp::Mod: {
      // Floor modulo: the result takes the sign of the divisor.
      Value r = arith::RemSIOp::create(builder, l, x, y);
      Value zero = constInt(l, x.getType(), 0);
      Value nonzero = arith::CmpIOp::create(builder, l, IP::ne, r, zero);
      Value rNeg = arith::CmpIOp::create(builder, l, IP::slt, r, zero);
      Value yNeg = arith::CmpIOp::create(builder, l, IP::slt, y, zero);
      Value signsDiffer = arith::XOrIOp::create(builder, l, rNeg, yNeg);
      Value adjust = arith::AndIOp::create(builder, l, nonzero, signsDiffer);
      return arith::SelectOp::create(builder, l, adjust, arith::AddIOp::create(builder, l, r, y), r);
    }
    case BinaryOp::Lt:
      return cmp(IP::slt, FP::OLT);
    case BinaryOp::Le:
      return cmp(IP::sle, FP::OLE);
    case BinaryOp::Gt:
      return cmp(IP::sgt, FP::OGT);
    case BinaryOp::Ge:
      return cmp(IP::sge, FP::OGE);
    case BinaryOp::Eq:
      return cmp(IP::eq, FP::OEQ);
    case BinaryOp::Ne:
      return cmp(IP::ne, FP::UNE);
    case BinaryOp::And:
      return arith::AndIOp::create(builder, l, x, y);
    case BinaryOp::Or:
      return arith::OrIOp::create(builder, l, x, y);
    }
    return x;
  }

  MLIRContext &ctx;
  const Program &prog;
  const MLIRGenOptions &options;
  OpBuilder builder;
  OwningOpRef<ModuleOp> module;
  bool failed = false;
  /// Integer values of the current kernel's const parameters, by name.
  std::map<std::string, std::pair<const ParamDecl *, int64_t>> kernelConsts;
  const void *dimOwner = nullptr;
};

} // namespace

OwningOpRef<ModuleOp> attnc::dsl::mlirGen(MLIRContext &ctx, const Program &prog,
                                          const MLIRGenOptions &options) {
  return MLIRGenImpl(ctx, prog, options).gen();
}
