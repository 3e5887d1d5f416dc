//===- Parser.cpp - ANTLR parse tree to AST -------------------------------===//
//
// The only file that sees ANTLR types. It is compiled in its own target with
// exceptions enabled (the ANTLR runtime throws); every exception is caught
// here and turned into a diagnostic, so nothing throws past parseModule.
//
//===----------------------------------------------------------------------===//

#include "attnc/DSL/Frontend.h"

#include "AttnDSLLexer.h"
#include "AttnDSLParser.h"
#include "antlr4-runtime.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/ConvertUTF.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

using namespace attnc::dsl;
using P = attnc_grammar::AttnDSLParser;

namespace {

/// Deeper nesting than this is rejected before parsing: the ANTLR parser is
/// recursive and would otherwise overflow the stack on hostile input.
constexpr unsigned kMaxNesting = 100;
constexpr unsigned kMaxOperators = 1000;
/// Stop after this many syntax errors; the rest are usually cascades.
constexpr unsigned kMaxSyntaxErrors = 10;

class DiagnosticErrorListener : public antlr4::BaseErrorListener {
public:
  DiagnosticErrorListener(mlir::MLIRContext &ctx, std::string file) : ctx(ctx), file(std::move(file)) {}

  void syntaxError(antlr4::Recognizer *, antlr4::Token *offending, size_t line,
                   size_t charPositionInLine, const std::string &msg,
                   std::exception_ptr) override {
    if (++numErrors > kMaxSyntaxErrors)
      return;
    auto loc = mlir::FileLineColLoc::get(&ctx, file, line, charPositionInLine + 1);
    if (offending && offending->getType() == attnc_grammar::AttnDSLLexer::ERROR_CHAR) {
      std::string text = offending->getText();
      if (text == "\"") {
        mlir::emitError(loc) << "unterminated string literal (a string ends on its line)";
        return;
      }
      auto diag = mlir::emitError(loc);
      diag << "unexpected character ";
      // Control characters are shown as escapes, not raw bytes.
      if (text.size() == 1 && (static_cast<unsigned char>(text[0]) < 0x20 || text[0] == 0x7f))
        diag << "'\\x" << llvm::hexdigit((text[0] >> 4) & 0xf, true)
             << llvm::hexdigit(text[0] & 0xf, true) << "'";
      else
        diag << "'" << text << "'";
      return;
    }
    mlir::emitError(loc) << "syntax error: " << msg;
  }

  unsigned numErrors = 0;

private:
  mlir::MLIRContext &ctx;
  std::string file;
};

/// Builds the AST from a parse tree that had no syntax errors.
class ASTBuilder {
public:
  ASTBuilder(mlir::MLIRContext &ctx, std::string file) : ctx(ctx), file(std::move(file)) {}

  std::unique_ptr<Module> build(P::ModuleContext *tree) {
    auto mod = std::make_unique<Module>();
    mod->file = file;
    for (auto *item : tree->item()) {
      if (auto *imp = item->importDecl()) {
        std::string text = imp->STRING()->getText();
        mod->imports.push_back({text.substr(1, text.size() - 2), loc(imp->STRING()->getSymbol())});
      } else if (auto *def = item->defDecl()) {
        mod->defs.push_back(buildDef(def));
      } else if (auto *kernel = item->kernelDecl()) {
        mod->kernels.push_back(buildKernel(kernel));
      } else if (auto *cache = item->cacheDecl()) {
        mod->caches.push_back(buildCache(cache));
      }
    }
    return failed ? nullptr : std::move(mod);
  }

private:
  Location loc(antlr4::Token *tok) const {
    return {file, static_cast<unsigned>(tok->getLine()),
            static_cast<unsigned>(tok->getCharPositionInLine() + 1)};
  }
  Location loc(antlr4::ParserRuleContext *ctx) const { return loc(ctx->getStart()); }

  std::unique_ptr<DefDecl> buildDef(P::DefDeclContext *ctx) {
    auto def = std::make_unique<DefDecl>();
    def->kind = ctx->kind->getText() == "mask" ? DefKind::Mask : DefKind::Score;
    def->name = ctx->name->getText();
    def->loc = loc(ctx->name);
    if (ctx->indexArgs)
      def->indexArgs = buildIdents(ctx->indexArgs);
    if (ctx->params)
      def->params = buildParams(ctx->params);
    for (auto &p : def->params)
      p->owner = def.get();
    auto *body = ctx->body();
    for (auto *let : body->letStmt()) {
      auto stmt = std::make_unique<LetStmt>();
      stmt->name = let->name->getText();
      stmt->loc = loc(let->name);
      stmt->value = buildExpr(let->expr());
      def->lets.push_back(std::move(stmt));
    }
    def->body = buildExpr(body->expr());
    return def;
  }

  std::vector<Ident> buildIdents(P::IdentListContext *ctx) {
    std::vector<Ident> out;
    for (auto *id : ctx->IDENT())
      out.push_back({id->getText(), loc(id->getSymbol())});
    return out;
  }

  std::vector<std::unique_ptr<ParamDecl>> buildParams(P::ParamListContext *ctx) {
    std::vector<std::unique_ptr<ParamDecl>> out;
    for (auto *p : ctx->paramDecl()) {
      auto param = std::make_unique<ParamDecl>();
      param->name = p->name->getText();
      param->loc = loc(p->name);
      param->isConst = p->isConst != nullptr;
      param->elemType = parseScalarType(p->type->elem->getText());
      if (param->elemType == ScalarType::Invalid) {
        error(loc(p->type->elem), "unknown type '" + p->type->elem->getText() +
                                      "' (expected bool, i32, i64 or f32)");
      }
      for (auto *dim : p->type->dims)
        param->dims.push_back(buildExpr(dim));
      if (p->init)
        param->init = buildExpr(p->init);
      out.push_back(std::move(param));
    }
    return out;
  }

  std::vector<Field> buildFields(const std::vector<P::FieldContext *> &fields) {
    std::vector<Field> out;
    for (auto *f : fields) {
      Field field;
      field.name = f->name->getText();
      field.loc = loc(f->name);
      field.isList = f->value()->getStart()->getText() == "[";
      for (auto *e : f->value()->expr())
        field.values.push_back(buildExpr(e));
      out.push_back(std::move(field));
    }
    return out;
  }

  std::unique_ptr<KernelDecl> buildKernel(P::KernelDeclContext *ctx) {
    auto kernel = std::make_unique<KernelDecl>();
    kernel->name = ctx->name->getText();
    kernel->loc = loc(ctx->name);
    if (ctx->params)
      kernel->params = buildParams(ctx->params);
    for (auto &p : kernel->params)
      p->owner = kernel.get();
    kernel->fields = buildFields(ctx->field());
    return kernel;
  }

  std::unique_ptr<CacheDecl> buildCache(P::CacheDeclContext *ctx) {
    auto cache = std::make_unique<CacheDecl>();
    if (auto *rec = dynamic_cast<P::CacheRecordContext *>(ctx)) {
      cache->name = rec->name->getText();
      cache->loc = loc(rec->name);
      cache->fields = buildFields(rec->field());
    } else if (auto *ph = dynamic_cast<P::CachePerHeadContext *>(ctx)) {
      cache->name = ph->name->getText();
      cache->loc = loc(ph->name);
      cache->perHead = buildIdents(ph->identList());
      cache->table = {ph->table->getText(), loc(ph->table)};
    }
    return cache;
  }

  ExprPtr buildExpr(P::ExprContext *ctx) {
    if (auto *e = dynamic_cast<P::PrimaryExprContext *>(ctx))
      return buildPrimary(e->primary());
    if (auto *e = dynamic_cast<P::UnaryExprContext *>(ctx)) {
      UnaryOp op = e->op->getText() == "-" ? UnaryOp::Neg : UnaryOp::Not;
      return std::make_unique<UnaryExpr>(loc(e->op), op, buildExpr(e->expr()));
    }
    if (auto *e = dynamic_cast<P::BinaryExprContext *>(ctx)) {
      return std::make_unique<BinaryExpr>(loc(e->op), binaryOp(e->op->getText()),
                                          buildExpr(e->lhs), buildExpr(e->rhs));
    }
    if (auto *e = dynamic_cast<P::CondExprContext *>(ctx)) {
      return std::make_unique<CondExpr>(loc(e), buildExpr(e->cond), buildExpr(e->then),
                                        buildExpr(e->otherwise));
    }
    error(loc(ctx), "unsupported expression");
    return std::make_unique<BoolLitExpr>(loc(ctx), false);
  }

  static BinaryOp binaryOp(const std::string &op) {
    static const std::pair<const char *, BinaryOp> table[] = {
        {"*", BinaryOp::Mul}, {"/", BinaryOp::Div}, {"%", BinaryOp::Mod}, {"+", BinaryOp::Add},
        {"-", BinaryOp::Sub}, {"<", BinaryOp::Lt},  {"<=", BinaryOp::Le}, {">", BinaryOp::Gt},
        {">=", BinaryOp::Ge}, {"==", BinaryOp::Eq}, {"!=", BinaryOp::Ne}, {"&&", BinaryOp::And},
        {"||", BinaryOp::Or}};
    for (auto &[text, kind] : table)
      if (op == text)
        return kind;
    return BinaryOp::Add; // unreachable: the grammar admits only the above
  }

  ExprPtr buildPrimary(P::PrimaryContext *ctx) {
    if (auto *e = dynamic_cast<P::IntLitContext *>(ctx)) {
      std::string text = e->INT()->getText();
      errno = 0;
      char *end = nullptr;
      long long value = std::strtoll(text.c_str(), &end, 10);
      if (errno == ERANGE || value > INT64_MAX)
        error(loc(e), "integer literal '" + text + "' is out of range");
      return std::make_unique<IntLitExpr>(loc(e), value);
    }
    if (auto *e = dynamic_cast<P::FloatLitContext *>(ctx)) {
      std::string text = e->FLOAT()->getText();
      double value = std::strtod(text.c_str(), nullptr);
      if (!std::isfinite(value))
        error(loc(e), "float literal '" + text + "' is out of range");
      return std::make_unique<FloatLitExpr>(loc(e), value);
    }
    if (auto *e = dynamic_cast<P::BoolLitContext *>(ctx))
      return std::make_unique<BoolLitExpr>(loc(e), e->getText() == "true");
    if (auto *e = dynamic_cast<P::CallExprContext *>(ctx)) {
      std::vector<CallArg> args;
      for (auto *arg : e->callArg()) {
        CallArg a;
        if (arg->name)
          a.name = arg->name->getText();
        a.loc = loc(arg);
        a.value = buildExpr(arg->expr());
        args.push_back(std::move(a));
      }
      return std::make_unique<CallExpr>(loc(e->name), e->name->getText(), std::move(args));
    }
    if (auto *e = dynamic_cast<P::IndexExprContext *>(ctx)) {
      std::vector<ExprPtr> indices;
      for (auto *i : e->expr())
        indices.push_back(buildExpr(i));
      return std::make_unique<IndexExpr>(loc(e->name), e->name->getText(), std::move(indices));
    }
    if (auto *e = dynamic_cast<P::NameExprContext *>(ctx))
      return std::make_unique<NameExpr>(loc(e), e->IDENT()->getText());
    if (auto *e = dynamic_cast<P::ParenExprContext *>(ctx))
      return buildExpr(e->expr());
    error(loc(ctx), "unsupported expression");
    return std::make_unique<BoolLitExpr>(loc(ctx), false);
  }

  void error(const Location &l, const std::string &msg) {
    failed = true;
    mlir::emitError(mlir::FileLineColLoc::get(&ctx, l.file, l.line, l.col)) << msg;
  }

  mlir::MLIRContext &ctx;
  std::string file;
  bool failed = false;
};

/// Rejects inputs the recursive parser (and the recursive passes after it)
/// could overflow the stack on: bracket nesting deeper than kMaxNesting, or
/// more than kMaxOperators operators in one statement.
bool checkNesting(antlr4::CommonTokenStream &tokens, mlir::MLIRContext &ctx,
                  const std::string &file) {
  unsigned depth = 0, operators = 0;
  auto fail = [&](antlr4::Token *tok, llvm::StringRef what) {
    mlir::emitError(mlir::FileLineColLoc::get(&ctx, file, tok->getLine(),
                                              tok->getCharPositionInLine() + 1))
        << what;
    return false;
  };
  const std::vector<antlr4::Token *> &all = tokens.getTokens();
  for (size_t i = 0; i < all.size(); ++i) {
    antlr4::Token *tok = all[i];
    if (tok->getType() == antlr4::Token::EOF)
      break;
    std::string text = tok->getText();
    // `/*` with no `*/` after it does not lex as a comment: it falls apart
    // into the operators `/` and `*`, which nothing else puts side by side.
    if (text == "/" && i + 1 < all.size() && all[i + 1]->getText() == "*" &&
        all[i + 1]->getStartIndex() == tok->getStopIndex() + 1)
      return fail(tok, "unterminated block comment");
    if (text == "(" || text == "[" || text == "{") {
      if (++depth > kMaxNesting)
        return fail(tok, "expression nested too deeply (more than " +
                             std::to_string(kMaxNesting) + " levels)");
    } else if (text == ")" || text == "]" || text == "}") {
      if (depth > 0)
        --depth;
    } else if (text == ";") {
      operators = 0;
    } else if (llvm::StringRef("+-*/%!<>=&|?").contains(text[0])) {
      if (++operators > kMaxOperators)
        return fail(tok, "expression too long (more than " + std::to_string(kMaxOperators) +
                             " operators in one statement)");
    }
  }
  return true;
}

} // namespace

std::unique_ptr<Module> attnc::dsl::parseModule(llvm::SourceMgr &sm, unsigned bufferId,
                                                mlir::MLIRContext &ctx) {
  const llvm::MemoryBuffer *buffer = sm.getMemoryBuffer(bufferId);
  std::string file = buffer->getBufferIdentifier().str();
  // The ANTLR input stream decodes UTF-8 and throws on a bad byte; report it
  // where it is instead.
  const auto *begin = reinterpret_cast<const llvm::UTF8 *>(buffer->getBufferStart());
  const auto *end = reinterpret_cast<const llvm::UTF8 *>(buffer->getBufferEnd());
  const llvm::UTF8 *bad = begin;
  if (!llvm::isLegalUTF8String(&bad, end)) {
    llvm::StringRef before(buffer->getBufferStart(), bad - begin);
    size_t lineStart = before.rfind('\n');
    lineStart = lineStart == llvm::StringRef::npos ? 0 : lineStart + 1;
    unsigned line = before.count('\n') + 1;
    unsigned col = before.size() - lineStart + 1; // in bytes, as the caret is drawn
    auto diag = mlir::emitError(mlir::FileLineColLoc::get(&ctx, file, line, col));
    diag << "invalid UTF-8 byte 0x" << llvm::hexdigit(*bad >> 4, true)
         << llvm::hexdigit(*bad & 0xf, true);
    return nullptr;
  }
  try {
    antlr4::ANTLRInputStream input(buffer->getBuffer().data(), buffer->getBufferSize());
    attnc_grammar::AttnDSLLexer lexer(&input);
    DiagnosticErrorListener listener(ctx, file);
    lexer.removeErrorListeners();
    lexer.addErrorListener(&listener);
    antlr4::CommonTokenStream tokens(&lexer);
    tokens.fill();
    if (listener.numErrors || !checkNesting(tokens, ctx, file))
      return nullptr;

    attnc_grammar::AttnDSLParser parser(&tokens);
    parser.removeErrorListeners();
    parser.addErrorListener(&listener);
    P::ModuleContext *tree = parser.module();
    if (listener.numErrors || parser.getNumberOfSyntaxErrors())
      return nullptr;
    return ASTBuilder(ctx, file).build(tree);
  } catch (const std::exception &e) {
    mlir::emitError(mlir::FileLineColLoc::get(&ctx, file, 1, 1))
        << "internal parser error: " << e.what();
  } catch (...) {
    mlir::emitError(mlir::FileLineColLoc::get(&ctx, file, 1, 1)) << "internal parser error";
  }
  return nullptr;
}
