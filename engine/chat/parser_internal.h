// The recursive-descent parser shared by parser.cc (statements) and parser_expr.cc
// (expressions). Not part of the engine's API.
#ifndef MLA_ENGINE_CHAT_PARSER_INTERNAL_H_
#define MLA_ENGINE_CHAT_PARSER_INTERNAL_H_

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/chat/ast.h"
#include "engine/chat/lexer.h"
#include "common/status_macros.h"

namespace mla::chat::parser_internal {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  absl::StatusOr<StmtList> ParseAll() {
    StmtList out;
    std::string end_tag;
    MLA_RETURN_IF_ERROR(ParseBody({}, &out, &end_tag));
    return out;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool IsName(const char* name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }

  absl::Status Error(int line, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
  }
  absl::Status Unexpected() const {
    const Token& t = Peek();
    std::string what = t.text;
    if (t.kind == TokenKind::kBlockEnd) what = "end of statement block";
    if (t.kind == TokenKind::kVarEnd) what = "end of print statement";
    if (t.kind == TokenKind::kEof) what = "end of template";
    return Error(t.line, absl::StrCat("unexpected '", what, "'"));
  }
  absl::Status ExpectOp(const char* op) {
    if (!IsOp(op)) return Unexpected();
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectName(std::string* out) {
    if (Peek().kind != TokenKind::kName) return Unexpected();
    *out = Next().text;
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Peek().kind != TokenKind::kBlockEnd) return Unexpected();
    Next();
    return absl::OkStatus();
  }

  // Parses statements until a block tag named in `ends` (consumed up to its name, which
  // goes to *end_tag) or, with no `ends`, the end of the template.
  absl::Status ParseBody(const std::vector<std::string>& ends, StmtList* out,
                         std::string* end_tag);
  absl::Status ParseBlock(const std::vector<std::string>& ends, StmtList* out,
                          std::string* end_tag, bool* done);
  absl::StatusOr<StmtPtr> ParseIf(int line);
  absl::StatusOr<StmtPtr> ParseFor(int line);
  absl::StatusOr<StmtPtr> ParseSet(int line);

  // Expressions, from lowest to highest precedence.
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseExpressionImpl(bool with_condexpr);
  // An expression that a tuple could follow (`{{ a, b }}`): the comma is rejected.
  absl::StatusOr<ExprPtr> ParseTopExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseBinaryLevel(int level);
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node, int line);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::Status ParseCallArgs(Expr* call);

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  static constexpr int kMaxDepth = 100;
  int depth_ = 0;
  int block_depth_ = 0;
};

inline ExprPtr MakeExpr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

}  // namespace mla::chat::parser_internal

#endif  // MLA_ENGINE_CHAT_PARSER_INTERNAL_H_
