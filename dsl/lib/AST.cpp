//===- AST.cpp - Names of AST enums -------------------------------------===//

#include "attnc/DSL/AST.h"

#include "llvm/ADT/StringSwitch.h"

using namespace attnc::dsl;

llvm::StringRef attnc::dsl::toString(ScalarType type) {
  switch (type) {
  case ScalarType::Bool:
    return "bool";
  case ScalarType::I32:
    return "i32";
  case ScalarType::I64:
    return "i64";
  case ScalarType::F32:
    return "f32";
  case ScalarType::Invalid:
    break;
  }
  return "<invalid>";
}

ScalarType attnc::dsl::parseScalarType(llvm::StringRef name) {
  return llvm::StringSwitch<ScalarType>(name)
      .Case("bool", ScalarType::Bool)
      .Case("i32", ScalarType::I32)
      .Case("i64", ScalarType::I64)
      .Case("f32", ScalarType::F32)
      .Default(ScalarType::Invalid);
}

llvm::StringRef attnc::dsl::toString(DimSymbol sym) {
  switch (sym) {
  case DimSymbol::B:
    return "B";
  case DimSymbol::Hq:
    return "Hq";
  case DimSymbol::Hkv:
    return "Hkv";
  case DimSymbol::Nq:
    return "Nq";
  case DimSymbol::Nk:
    return "Nk";
  case DimSymbol::N:
    return "N";
  case DimSymbol::D:
    return "D";
  }
  return "?";
}

static const std::pair<const char *, Builtin> kBuiltins[] = {
    {"min", Builtin::Min},        {"max", Builtin::Max},         {"abs", Builtin::Abs},
    {"clamp", Builtin::Clamp},    {"select", Builtin::Select},   {"exp", Builtin::Exp},
    {"exp2", Builtin::Exp2},      {"log", Builtin::Log},         {"log2", Builtin::Log2},
    {"tanh", Builtin::Tanh},      {"sqrt", Builtin::Sqrt},       {"sigmoid", Builtin::Sigmoid},
    {"floor", Builtin::Floor},    {"i32", Builtin::CastI32},     {"i64", Builtin::CastI64},
    {"f32", Builtin::CastF32},    {"bool", Builtin::CastBool}};

Builtin attnc::dsl::lookupBuiltin(llvm::StringRef name) {
  for (auto &[text, b] : kBuiltins)
    if (name == text)
      return b;
  return Builtin::None;
}

llvm::StringRef attnc::dsl::toString(Builtin b) {
  for (auto &[text, kind] : kBuiltins)
    if (kind == b)
      return text;
  return "<none>";
}

llvm::StringRef attnc::dsl::toString(UnaryOp op) { return op == UnaryOp::Neg ? "-" : "!"; }

llvm::StringRef attnc::dsl::toString(BinaryOp op) {
  switch (op) {
  case BinaryOp::Mul:
    return "*";
  case BinaryOp::Div:
    return "/";
  case BinaryOp::Mod:
    return "%";
  case BinaryOp::Add:
    return "+";
  case BinaryOp::Sub:
    return "-";
  case BinaryOp::Lt:
    return "<";
  case BinaryOp::Le:
    return "<=";
  case BinaryOp::Gt:
    return ">";
  case BinaryOp::Ge:
    return ">=";
  case BinaryOp::Eq:
    return "==";
  case BinaryOp::Ne:
    return "!=";
  case BinaryOp::And:
    return "&&";
  case BinaryOp::Or:
    return "||";
  }
  return "?";
}

llvm::StringRef attnc::dsl::toString(Normalizer n) {
  return n == Normalizer::Softmax ? "softmax" : "sigmoid";
}
llvm::StringRef attnc::dsl::toString(HeadMapping h) {
  return h == HeadMapping::Grouped ? "grouped" : "interleaved";
}
llvm::StringRef attnc::dsl::toString(ElemType e) {
  switch (e) {
  case ElemType::F32:
    return "f32";
  case ElemType::F16:
    return "f16";
  case ElemType::BF16:
    return "bf16";
  }
  return "?";
}
