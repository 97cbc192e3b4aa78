#include "engine/chat/parser.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/chat/builtins.h"
#include "engine/chat/parser_internal.h"
#include "common/status_macros.h"

namespace mla::chat {
namespace parser_internal {

absl::Status Parser::ParseBody(const std::vector<std::string>& ends, StmtList* out,
                               std::string* end_tag) {
  while (true) {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kEof:
        if (ends.empty()) return absl::OkStatus();
        return Error(t.line, absl::StrCat("unexpected end of template, expected '",
                                          absl::StrJoin(ends, "' or '"), "'"));
      case TokenKind::kText: {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = t.line;
        s->text = Next().text;
        out->push_back(std::move(s));
        break;
      }
      case TokenKind::kVarBegin: {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = t.line;
        MLA_ASSIGN_OR_RETURN(s->expr, ParseTopExpression());
        if (Peek().kind != TokenKind::kVarEnd) return Unexpected();
        Next();
        out->push_back(std::move(s));
        break;
      }
      case TokenKind::kBlockBegin: {
        Next();
        bool done = false;
        MLA_RETURN_IF_ERROR(ParseBlock(ends, out, end_tag, &done));
        if (done) return absl::OkStatus();
        break;
      }
      default:
        return Unexpected();
    }
  }
}

absl::Status Parser::ParseBlock(const std::vector<std::string>& ends, StmtList* out,
                                std::string* end_tag, bool* done) {
  if (static_cast<int>(ends.size()) > 0 && ++block_depth_ > kMaxDepth) {
    return Error(Peek().line, "blocks nested too deeply");
  }
  struct Leave {
    int* depth;
    bool counted;
    ~Leave() {
      if (counted) --*depth;
    }
  } leave{&block_depth_, !ends.empty()};
  const int line = Peek().line;
  std::string tag;
  MLA_RETURN_IF_ERROR(ExpectName(&tag));
  for (const std::string& end : ends) {
    if (tag == end) {
      *end_tag = tag;
      *done = true;
      return absl::OkStatus();
    }
  }
  absl::StatusOr<StmtPtr> stmt;
  if (tag == "if") {
    stmt = ParseIf(line);
  } else if (tag == "for") {
    stmt = ParseFor(line);
  } else if (tag == "set") {
    stmt = ParseSet(line);
  } else if (tag == "break" || tag == "continue") {
    auto s = std::make_unique<Stmt>();
    s->kind = tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    s->line = line;
    MLA_RETURN_IF_ERROR(ExpectBlockEnd());
    stmt = std::move(s);
  } else if (tag == "generation") {
    // transformers' {% generation %} only marks assistant spans; the text is unchanged.
    MLA_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    MLA_RETURN_IF_ERROR(ParseBody({"endgeneration"}, out, &end));
    return ExpectBlockEnd();
  } else {
    return Error(line, absl::StrCat("unsupported tag '", tag, "'"));
  }
  if (!stmt.ok()) return stmt.status();
  out->push_back(*std::move(stmt));
  return absl::OkStatus();
}

absl::StatusOr<StmtPtr> Parser::ParseIf(int line) {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kIf;
  s->line = line;
  while (true) {
    MLA_ASSIGN_OR_RETURN(ExprPtr cond, ParseTopExpression(/*with_condexpr=*/false));
    MLA_RETURN_IF_ERROR(ExpectBlockEnd());
    StmtList body;
    std::string end;
    MLA_RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &body, &end));
    s->branches.emplace_back(std::move(cond), std::move(body));
    if (end == "elif") continue;
    MLA_RETURN_IF_ERROR(ExpectBlockEnd());
    if (end == "else") {
      MLA_RETURN_IF_ERROR(ParseBody({"endif"}, &s->else_body, &end));
      MLA_RETURN_IF_ERROR(ExpectBlockEnd());
    }
    return s;
  }
}

absl::StatusOr<StmtPtr> Parser::ParseFor(int line) {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kFor;
  s->line = line;
  while (true) {
    std::string name;
    MLA_RETURN_IF_ERROR(ExpectName(&name));
    s->targets.push_back(name);
    if (!IsOp(",")) break;
    Next();
  }
  if (!IsName("in")) return Unexpected();
  Next();
  MLA_ASSIGN_OR_RETURN(s->expr, ParseTopExpression(/*with_condexpr=*/false));
  if (IsName("if")) {
    Next();
    MLA_ASSIGN_OR_RETURN(s->cond, ParseExpression());
  }
  if (IsName("recursive")) return Error(line, "unsupported recursive for loop");
  MLA_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  MLA_RETURN_IF_ERROR(ParseBody({"endfor", "else"}, &s->body, &end));
  MLA_RETURN_IF_ERROR(ExpectBlockEnd());
  if (end == "else") {
    MLA_RETURN_IF_ERROR(ParseBody({"endfor"}, &s->else_body, &end));
    MLA_RETURN_IF_ERROR(ExpectBlockEnd());
  }
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseSet(int line) {
  auto s = std::make_unique<Stmt>();
  s->kind = Stmt::Kind::kSet;
  s->line = line;
  MLA_RETURN_IF_ERROR(ExpectName(&s->text));
  if (IsOp(".")) {
    Next();
    MLA_RETURN_IF_ERROR(ExpectName(&s->attr));
  }
  if (IsOp(",")) return Error(line, "unsupported tuple assignment in set");
  if (IsOp("=")) {
    Next();
    MLA_ASSIGN_OR_RETURN(s->expr, ParseTopExpression());
    MLA_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }
  if (!s->attr.empty()) return Unexpected();
  if (IsOp("|")) return Error(line, "unsupported filtered block set");
  MLA_RETURN_IF_ERROR(ExpectBlockEnd());
  s->kind = Stmt::Kind::kSetBlock;
  std::string end;
  MLA_RETURN_IF_ERROR(ParseBody({"endset"}, &s->body, &end));
  MLA_RETURN_IF_ERROR(ExpectBlockEnd());
  return s;
}

}  // namespace parser_internal

absl::StatusOr<StmtList> ParseTemplate(const std::vector<Token>& tokens) {
  return parser_internal::Parser(tokens).ParseAll();
}

}  // namespace mla::chat
