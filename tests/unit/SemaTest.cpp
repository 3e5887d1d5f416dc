//===- SemaTest.cpp - Types, resolution and diagnostics of Sema -----------===//

#include "TestUtil.h"

#include "gtest/gtest.h"

using namespace attnc;
using namespace attnc::dsl;
using attnc::test::Loaded;

namespace {

std::vector<std::string> names(const std::vector<EffectiveParam> &params) {
  std::vector<std::string> out;
  for (const EffectiveParam &p : params)
    out.push_back(p.name);
  return out;
}

/// Loads a program that must be rejected; returns the diagnostics.
std::string errorsOf(llvm::StringRef source) {
  Loaded l(source);
  EXPECT_FALSE(l.ok()) << "expected errors for:\n" << source.str();
  return l.diagnostics;
}

::testing::AssertionResult contains(const std::string &text, const std::string &needle) {
  if (text.find(needle) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << needle << "' not in:\n" << text;
}

TEST(Sema, ExpressionTypes) {
  Loaded l("score f(s, b, h, q, k) = s * 2;\n"
           "mask m(b, h, q, k) = q - 1 >= k;\n"
           "score g(s, b, h, q, k) = f32(q) + f32(i64(q) + 3000000000);\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;

  auto *mul = llvm::dyn_cast<BinaryExpr>(l.def("f")->body.get());
  ASSERT_TRUE(mul);
  EXPECT_EQ(mul->type, ScalarType::F32);
  EXPECT_EQ(mul->lhs->type, ScalarType::F32);
  auto *two = llvm::dyn_cast<IntLitExpr>(mul->rhs.get());
  ASSERT_TRUE(two);
  EXPECT_EQ(two->type, ScalarType::F32); // the literal takes its context's type
  EXPECT_EQ(two->value, 2);

  auto *ge = llvm::dyn_cast<BinaryExpr>(l.def("m")->body.get());
  ASSERT_TRUE(ge);
  EXPECT_EQ(ge->type, ScalarType::Bool);
  auto *sub = llvm::dyn_cast<BinaryExpr>(ge->lhs.get());
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->op, BinaryOp::Sub);
  EXPECT_EQ(sub->type, ScalarType::I32);
  auto *q = llvm::dyn_cast<NameExpr>(sub->lhs.get());
  ASSERT_TRUE(q);
  EXPECT_EQ(q->ref.kind, NameRef::Kind::IndexVar);
  EXPECT_EQ(q->ref.indexVar, 2u);

  auto *add = llvm::dyn_cast<BinaryExpr>(l.def("g")->body.get());
  ASSERT_TRUE(add);
  auto *cast = llvm::dyn_cast<CallExpr>(add->rhs.get());
  ASSERT_TRUE(cast);
  EXPECT_EQ(cast->builtin, Builtin::CastF32);
  auto *wide = llvm::dyn_cast<BinaryExpr>(cast->args[0].value.get());
  ASSERT_TRUE(wide);
  EXPECT_EQ(wide->type, ScalarType::I64);
  EXPECT_EQ(wide->rhs->type, ScalarType::I64); // too big for i32
}

TEST(Sema, ScoreVariableAndLets) {
  Loaded l("score f(s, b, h, q, k) { let t = s / 2.0; let u = t + 1.0; u * t }\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  const DefDecl *f = l.def("f");
  ASSERT_EQ(f->lets.size(), 2u);
  EXPECT_EQ(f->lets[1]->value->type, ScalarType::F32);
  auto *mul = llvm::dyn_cast<BinaryExpr>(f->body.get());
  ASSERT_TRUE(mul);
  auto *u = llvm::dyn_cast<NameExpr>(mul->lhs.get());
  ASSERT_TRUE(u);
  EXPECT_EQ(u->ref.kind, NameRef::Kind::Let);
  EXPECT_EQ(u->ref.let, f->lets[1].get());
  auto *div = llvm::dyn_cast<BinaryExpr>(f->lets[0]->value.get());
  ASSERT_TRUE(div);
  auto *s = llvm::dyn_cast<NameExpr>(div->lhs.get());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ref.kind, NameRef::Kind::ScoreVar);
}

TEST(Sema, ImplicitCallsBecomeExplicit) {
  Loaded l("mask causal(b, h, q, k) = k <= q;\n"
           "score softcap(s, b, h, q, k; cap: f32 = 30.0) = cap * tanh(s / cap);\n"
           "kernel k { mask = causal; score = softcap; }\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  const KernelDecl *k = l.kernel("k");
  ASSERT_TRUE(k && k->maskDef && k->scoreDef);

  auto *mask = llvm::dyn_cast<NameExpr>(k->maskDef->body.get());
  ASSERT_TRUE(mask);
  EXPECT_EQ(mask->ref.kind, NameRef::Kind::Definition);
  ASSERT_TRUE(mask->resolvedCall);
  EXPECT_EQ(mask->resolvedCall->callee, l.def("causal"));
  EXPECT_EQ(mask->type, ScalarType::Bool);
  ASSERT_EQ(mask->resolvedCall->positional.size(), 4u);
  const char *want[] = {"b", "h", "q", "k"};
  for (unsigned i = 0; i < 4; ++i) {
    auto *arg = llvm::dyn_cast<NameExpr>(mask->resolvedCall->positional[i].get());
    ASSERT_TRUE(arg);
    EXPECT_EQ(arg->name, want[i]);
    EXPECT_EQ(arg->ref.kind, NameRef::Kind::IndexVar);
    EXPECT_EQ(arg->ref.indexVar, i);
  }

  // A bare score inside a score applies to the caller's own s.
  auto *score = llvm::dyn_cast<NameExpr>(k->scoreDef->body.get());
  ASSERT_TRUE(score && score->resolvedCall);
  EXPECT_EQ(score->resolvedCall->callee, l.def("softcap"));
  ASSERT_EQ(score->resolvedCall->positional.size(), 5u);
  auto *s = llvm::dyn_cast<NameExpr>(score->resolvedCall->positional[0].get());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ref.kind, NameRef::Kind::ScoreVar);
  // cap is not bound: one null entry, and the kernel inherits it.
  ASSERT_EQ(score->resolvedCall->paramValues.size(), 1u);
  EXPECT_EQ(score->resolvedCall->paramValues[0], nullptr);
  EXPECT_EQ(names(k->runtimeParams), (std::vector<std::string>{"cap"}));
}

TEST(Sema, ExplicitArgumentsAndBindings) {
  Loaded l("score softcap(s, b, h, q, k; cap: f32 = 30.0) = cap * tanh(s / cap);\n"
           "score f(s, b, h, q, k) = softcap(s * 2, cap: 50);\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  auto *call = llvm::dyn_cast<CallExpr>(l.def("f")->body.get());
  ASSERT_TRUE(call);
  EXPECT_EQ(call->callee, l.def("softcap"));
  ASSERT_EQ(call->positional.size(), 5u);
  EXPECT_TRUE(llvm::isa<BinaryExpr>(call->positional[0].get()));
  ASSERT_EQ(call->paramValues.size(), 1u);
  ASSERT_NE(call->paramValues[0], nullptr);
  auto *fifty = llvm::dyn_cast<IntLitExpr>(call->paramValues[0]);
  ASSERT_TRUE(fifty);
  EXPECT_EQ(fifty->type, ScalarType::F32);          // coerced to cap's type
  EXPECT_TRUE(l.def("f")->effectiveParams.empty()); // bound, so not inherited
}

TEST(Sema, ParameterPropagation) {
  Loaded l("mask causal(b, h, q, k) = k <= q;\n"
           "mask doc_mask(b, h, q, k; doc: i32[N]) = doc[q] == doc[k];\n"
           "mask window(b, h, q, k; const W: i32 = 128) = q - k < W;\n"
           "mask local_doc(b, h, q, k) = causal && doc_mask && window;\n"
           "kernel k { mask = doc_mask; }\n"
           "kernel kw { mask = local_doc; }\n"
           "kernel kb { mask = window(W: 64) && causal; }\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  const KernelDecl *k = l.kernel("k");
  EXPECT_EQ(names(k->runtimeParams), (std::vector<std::string>{"doc"}));
  EXPECT_TRUE(k->constParams.empty());
  EXPECT_EQ(k->runtimeParams[0].decl, l.def("doc_mask")->params[0].get());

  EXPECT_EQ(names(l.def("local_doc")->effectiveParams), (std::vector<std::string>{"doc", "W"}));
  const KernelDecl *kw = l.kernel("kw");
  EXPECT_EQ(names(kw->runtimeParams), (std::vector<std::string>{"doc"}));
  EXPECT_EQ(names(kw->constParams), (std::vector<std::string>{"W"}));

  const KernelDecl *kb = l.kernel("kb");
  EXPECT_TRUE(kb->runtimeParams.empty());
  EXPECT_TRUE(kb->constParams.empty()); // W is bound in the call
}

TEST(Sema, KernelParamsAndFields) {
  Loaded l("mask doc_mask(b, h, q, k; doc: i32[N]) = doc[q] == doc[k];\n"
           "kernel k(ids: i32[N], const T: f32 = 2.0) {\n"
           "  mask = doc_mask(doc: ids); scale = 1.0 / T; normalizer = sigmoid;\n"
           "  heads = interleaved; dtype = [f32, bf16]; head_dim = [64, 128];\n"
           "}\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  const KernelDecl *k = l.kernel("k");
  EXPECT_EQ(names(k->runtimeParams), (std::vector<std::string>{"ids"}));
  EXPECT_EQ(names(k->constParams), (std::vector<std::string>{"T"}));
  EXPECT_EQ(k->normalizer, Normalizer::Sigmoid);
  EXPECT_EQ(k->heads, HeadMapping::Interleaved);
  EXPECT_EQ(k->dtypes, (std::vector<ElemType>{ElemType::F32, ElemType::BF16}));
  EXPECT_EQ(k->headDims, (std::vector<int64_t>{64, 128}));
  ASSERT_TRUE(k->scaleDef);
  EXPECT_EQ(k->scaleDef->body->type, ScalarType::F32);
  auto *call = llvm::dyn_cast<CallExpr>(k->maskDef->body.get());
  ASSERT_TRUE(call);
  ASSERT_EQ(call->paramValues.size(), 1u);
  auto *ids = llvm::dyn_cast_or_null<NameExpr>(call->paramValues[0]);
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->ref.kind, NameRef::Kind::Param);
  EXPECT_EQ(ids->ref.param, "ids");

  Loaded d("kernel plain {}");
  ASSERT_TRUE(d.ok()) << d.diagnostics;
  const KernelDecl *p = d.kernel("plain");
  EXPECT_EQ(p->normalizer, Normalizer::Softmax);
  EXPECT_EQ(p->heads, HeadMapping::Grouped);
  EXPECT_EQ(p->dtypes.size(), 3u);
  EXPECT_FALSE(p->scaleDef);
  auto *t = llvm::dyn_cast<BoolLitExpr>(p->maskDef->body.get());
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->value);
}

TEST(Sema, TensorShapesResolveDimensions) {
  Loaded l("mask m(b, h, q, k; const L: i32 = 4, t: f32[L, H, N + 1]) = t[0, h, k] > 0.0;\n");
  ASSERT_TRUE(l.ok()) << l.diagnostics;
  const ParamDecl &t = *l.def("m")->params[1];
  ASSERT_EQ(t.dims.size(), 3u);
  auto *L = llvm::dyn_cast<NameExpr>(t.dims[0].get());
  ASSERT_TRUE(L);
  EXPECT_EQ(L->ref.kind, NameRef::Kind::Param);
  auto *H = llvm::dyn_cast<NameExpr>(t.dims[1].get());
  ASSERT_TRUE(H);
  EXPECT_EQ(H->ref.kind, NameRef::Kind::Dim);
  EXPECT_EQ(H->ref.dim, DimSymbol::Hq);
  EXPECT_EQ(t.dims[2]->type, ScalarType::I64);
}

//===----------------------------------------------------------------------===//
// Rejected programs
//===----------------------------------------------------------------------===//

TEST(Sema, ErrorsNameTheLocation) {
  std::string d = errorsOf("mask m(b, h, q, k) = k <= z;\n");
  EXPECT_TRUE(contains(d, "test.attn:1:27: error: unknown name 'z'"));
  EXPECT_TRUE(contains(d, "mask m(b, h, q, k) = k <= z;")); // the source line
}

TEST(Sema, TypeErrors) {
  EXPECT_TRUE(contains(errorsOf("score f(s, b, h, q, k) = s + q;"),
                       "type mismatch in operator '+': f32 and i32 (convert with f32(...))"));
  EXPECT_TRUE(
      contains(errorsOf("mask m(b, h, q, k) = q + k;"), "mask 'm' must yield bool, got i32"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k) = q % 2.0 == 0;"), "type mismatch"));
  EXPECT_TRUE(contains(errorsOf("score f(s, b, h, q, k) = s % 2.0;"),
                       "operator '%' expects integers, got f32"));
  EXPECT_TRUE(contains(errorsOf("score f(s, b, h, q, k) = exp(q);"), "'exp' expects f32, got i32"));
  EXPECT_TRUE(
      contains(errorsOf("score f(s, b, h, q, k) = min(s);"), "'min' expects 2 arguments, got 1"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k) = q > 0 ? 1 : false;"),
                       "type mismatch in '?:' branches"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k) = !q;"), "operator '!' expects bool, got i32"));
}

TEST(Sema, ParameterErrors) {
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k; t: i32[N]) = t == 0;"),
                       "tensor parameter 't' must be indexed"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k; w: i32) = w[q] == 0;"),
                       "'w' is a scalar parameter and cannot be indexed"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k; t: i32[N]) = t[q, k] == 0;"),
                       "tensor 't' has rank 1 but 2 indices were given"));
  EXPECT_TRUE(
      contains(errorsOf("mask m(b, h, q, k; t: i32[Dv]) = t[q] == 0;"), "unknown dimension 'Dv'"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k; W: i32 = 1, t: i32[W]) = t[q] == 0;"),
                       "dimension 'W' must be a const integer parameter"));
  EXPECT_TRUE(contains(errorsOf("mask w(b, h, q, k; const W: i32 = 4) = q - k < W;\n"
                                "mask m(b, h, q, k) = w(W: q);"),
                       "const parameter 'W' must be bound to a constant expression"));
  EXPECT_TRUE(contains(errorsOf("mask w(b, h, q, k; W: i32 = 4) = q - k < W;\n"
                                "mask m(b, h, q, k) = w(V: 3);"),
                       "'w' has no parameter 'V'"));
  EXPECT_TRUE(contains(errorsOf("mask w(b, h, q, k; W: i32 = 4) = q - k < W;\n"
                                "mask v(b, h, q, k; W: f32 = 4.0) = true;\n"
                                "mask m(b, h, q, k) = w && v;"),
                       "parameter 'W' of 'v' (f32) conflicts with the 'W' that 'm' already has (i32)"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k; W: i32 = q) = true;"),
                       "test.attn:1:29: error: 'q' cannot be used here"));
  EXPECT_TRUE(contains(errorsOf("mask m(b, h, q, k; V: i32 = 1, const W: i32 = V) = true;"),
                       "default value of 'W' must be a constant expression"));
}

TEST(Sema, CallErrors) {
  EXPECT_TRUE(contains(errorsOf("mask a(b, h, q, k) = b2(b, h, q, k);"), "unknown function 'b2'"));
  EXPECT_TRUE(contains(errorsOf("mask c(b, h, q, k) = k <= q;\nmask m(b, h, q, k) = c(q, k);"),
                       "mask 'c' expects no arguments or 4 (b, h, q, k), got 2"));
  EXPECT_TRUE(contains(errorsOf("score f(s, b, h, q, k) = s;\nmask m(b, h, q, k) = f > 0.0;"),
                       "score 'f' needs a score argument here: write f(x)"));
  EXPECT_TRUE(contains(errorsOf("mask a(b, h, q, k) = c;\nmask c(b, h, q, k) = a;"),
                       "recursive definition"));
  EXPECT_TRUE(contains(errorsOf("mask a(b, h, q, k) = true;\nmask a(b, h, q, k) = false;"),
                       "duplicate definition of mask 'a'"));
  EXPECT_TRUE(contains(errorsOf("mask m(q, k) = true;"),
                       "mask 'm' must take 4 index arguments (b, h, q, k), got 2"));
  EXPECT_TRUE(contains(errorsOf("kernel k { scale = f32(q); }"),
                       "'q' cannot be used here: a kernel scale may only use parameters"));
}

TEST(Sema, KernelFieldErrors) {
  EXPECT_TRUE(contains(errorsOf("kernel k { masks = true; }"), "unknown kernel field 'masks'"));
  EXPECT_TRUE(
      contains(errorsOf("kernel k { mask = true; mask = false; }"), "field 'mask' is set twice"));
  EXPECT_TRUE(contains(errorsOf("kernel k { normalizer = relu; }"),
                       "normalizer must be softmax or sigmoid"));
  EXPECT_TRUE(contains(errorsOf("kernel k { heads = random; }"), "heads must be grouped"));
  EXPECT_TRUE(
      contains(errorsOf("kernel k { score = q; }"), "kernel field 'score' must be f32, got i32"));
  EXPECT_TRUE(
      contains(errorsOf("kernel k { head_dim = 0; }"), "head_dim must be an integer in [1, 1024]"));
  EXPECT_TRUE(
      contains(errorsOf("kernel k { cache = nothing; }"), "unknown cache policy 'nothing'"));
}

} // namespace
