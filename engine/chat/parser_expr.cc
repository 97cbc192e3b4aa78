// Expression parsing: jinja2's precedence climbing, from conditional expressions down to
// primaries, postfix subscripts and calls, filters and tests.
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/chat/builtins.h"
#include "engine/chat/parser_internal.h"
#include "common/status_macros.h"

namespace mla::chat::parser_internal {
namespace {

bool IsCompareOp(const std::string& op) {
  return op == "==" || op == "!=" || op == "<" || op == ">" || op == "<=" || op == ">=";
}

}  // namespace

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  // Bounds the recursion (parentheses, brackets, arguments) so no input overflows the stack.
  if (depth_ >= kMaxDepth) return Error(Peek().line, "expression nested too deeply");
  ++depth_;
  absl::StatusOr<ExprPtr> expr = ParseExpressionImpl(with_condexpr);
  --depth_;
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseExpressionImpl(bool with_condexpr) {
  MLA_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  while (with_condexpr && IsName("if")) {
    const int line = Next().line;
    auto cond = MakeExpr(Expr::Kind::kCondExpr, line);
    MLA_ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
    ExprPtr otherwise;
    if (IsName("else")) {
      Next();
      MLA_ASSIGN_OR_RETURN(otherwise, ParseExpression());
    }
    cond->children.push_back(std::move(test));
    cond->children.push_back(std::move(expr));
    cond->children.push_back(std::move(otherwise));
    expr = std::move(cond);
  }
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseTopExpression(bool with_condexpr) {
  MLA_ASSIGN_OR_RETURN(ExprPtr expr, ParseExpression(with_condexpr));
  if (IsOp(",")) return Error(Peek().line, "unsupported tuple expression");
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  MLA_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsName("or")) {
    auto e = MakeExpr(Expr::Kind::kBinary, Next().line);
    e->name = "or";
    MLA_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    left = std::move(e);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  MLA_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsName("and")) {
    auto e = MakeExpr(Expr::Kind::kBinary, Next().line);
    e->name = "and";
    MLA_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    left = std::move(e);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    auto e = MakeExpr(Expr::Kind::kUnary, Next().line);
    e->name = "not";
    MLA_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    e->children.push_back(std::move(operand));
    return e;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  MLA_ASSIGN_OR_RETURN(ExprPtr first, ParseBinaryLevel(0));
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (Peek().kind == TokenKind::kOperator && IsCompareOp(Peek().text)) {
      op = Peek().text;
      Next();
    } else if (IsName("in")) {
      op = "in";
      Next();
    } else if (IsName("not") && IsName("in", 1)) {
      op = "not in";
      Next();
      Next();
    } else {
      break;
    }
    if (cmp == nullptr) {
      cmp = MakeExpr(Expr::Kind::kCompare, first->line);
      cmp->children.push_back(std::move(first));
    }
    cmp->ops.push_back(op);
    MLA_ASSIGN_OR_RETURN(ExprPtr operand, ParseBinaryLevel(0));
    cmp->children.push_back(std::move(operand));
  }
  return cmp != nullptr ? std::move(cmp) : std::move(first);
}

// Levels (jinja's parse_math1, parse_concat, parse_math2, parse_pow), all left-assoc.
absl::StatusOr<ExprPtr> Parser::ParseBinaryLevel(int level) {
  static const std::vector<std::vector<std::string>> kLevels = {
      {"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
  if (level == static_cast<int>(kLevels.size())) return ParseUnary(/*with_filter=*/true);
  MLA_ASSIGN_OR_RETURN(ExprPtr left, ParseBinaryLevel(level + 1));
  while (Peek().kind == TokenKind::kOperator) {
    const std::string op = Peek().text;
    bool match = false;
    for (const std::string& candidate : kLevels[level]) match = match || op == candidate;
    if (!match) break;
    auto e = MakeExpr(Expr::Kind::kBinary, Next().line);
    e->name = op;
    MLA_ASSIGN_OR_RETURN(ExprPtr right, ParseBinaryLevel(level + 1));
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    left = std::move(e);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    node = MakeExpr(Expr::Kind::kUnary, Peek().line);
    node->name = Next().text;
    MLA_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(/*with_filter=*/false));
    node->children.push_back(std::move(operand));
  } else {
    MLA_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  MLA_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) return ParseFilterExpr(std::move(node));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& t = Peek();
  const int line = t.line;
  if (t.kind == TokenKind::kName) {
    Next();
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
      e->literal = Value::Bool(t.text == "true" || t.text == "True");
    } else if (t.text == "none" || t.text == "None") {
      e->literal = Value::None();
    } else {
      e->kind = Expr::Kind::kName;
      e->name = t.text;
    }
    return e;
  }
  if (t.kind == TokenKind::kString) {
    std::string text;
    while (Peek().kind == TokenKind::kString) text += Next().text;  // adjacent literals join
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    e->literal = Value::String(std::move(text));
    return e;
  }
  if (t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat) {
    Next();
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    e->literal = t.kind == TokenKind::kInt ? Value::Int(t.int_value) : Value::Float(t.float_value);
    return e;
  }
  if (IsOp("(")) {
    Next();
    if (IsOp(")")) return Error(line, "unsupported tuple expression");
    MLA_ASSIGN_OR_RETURN(ExprPtr inner, ParseTopExpression());
    MLA_RETURN_IF_ERROR(ExpectOp(")"));
    return inner;
  }
  if (IsOp("[") || IsOp("{")) {
    const bool is_list = IsOp("[");
    Next();
    auto e = MakeExpr(is_list ? Expr::Kind::kList : Expr::Kind::kDict, line);
    const char* close = is_list ? "]" : "}";
    while (!IsOp(close)) {
      if (!e->children.empty()) MLA_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(close)) break;  // trailing comma
      MLA_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      e->children.push_back(std::move(item));
      if (!is_list) {
        MLA_RETURN_IF_ERROR(ExpectOp(":"));
        MLA_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        e->children.push_back(std::move(value));
      }
    }
    Next();
    return e;
  }
  return Unexpected();
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    const int line = Peek().line;
    if (IsOp(".") || IsOp("[")) {
      MLA_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), line));
    } else if (IsOp("(")) {
      // Only global functions and methods can be called.
      auto call = MakeExpr(Expr::Kind::kCall, line);
      if (node->kind == Expr::Kind::kName) {
        if (!IsKnownFunction(node->name)) {
          return Error(line, absl::StrCat("unsupported function '", node->name, "'"));
        }
        call->name = node->name;
      } else if (node->kind == Expr::Kind::kAttr) {
        if (!IsKnownMethod(node->name)) {
          return Error(line, absl::StrCat("unsupported method '", node->name, "'"));
        }
        call->kind = Expr::Kind::kMethodCall;
        call->name = node->name;
        call->children.push_back(std::move(node->children[0]));
      } else {
        return Error(line, "unsupported call expression");
      }
      MLA_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node, int line) {
  if (IsOp(".")) {
    Next();
    if (Peek().kind == TokenKind::kInt) {
      auto e = MakeExpr(Expr::Kind::kItem, line);
      auto index = MakeExpr(Expr::Kind::kLiteral, line);
      index->literal = Value::Int(Next().int_value);
      e->children.push_back(std::move(node));
      e->children.push_back(std::move(index));
      return e;
    }
    auto e = MakeExpr(Expr::Kind::kAttr, line);
    MLA_RETURN_IF_ERROR(ExpectName(&e->name));
    e->children.push_back(std::move(node));
    return e;
  }
  Next();  // '['
  if (IsOp(",")) return Error(line, "unsupported tuple subscript");
  ExprPtr start;
  if (!IsOp(":")) {
    MLA_ASSIGN_OR_RETURN(start, ParseExpression());
    if (!IsOp(":")) {
      if (IsOp(",")) return Error(line, "unsupported tuple subscript");
      MLA_RETURN_IF_ERROR(ExpectOp("]"));
      auto e = MakeExpr(Expr::Kind::kItem, line);
      e->children.push_back(std::move(node));
      e->children.push_back(std::move(start));
      return e;
    }
  }
  Next();  // ':'
  ExprPtr stop;
  ExprPtr step;
  if (!IsOp("]") && !IsOp(":")) {
    MLA_ASSIGN_OR_RETURN(stop, ParseExpression());
  }
  if (IsOp(":")) {
    Next();
    if (!IsOp("]")) {
      MLA_ASSIGN_OR_RETURN(step, ParseExpression());
    }
  }
  MLA_RETURN_IF_ERROR(ExpectOp("]"));
  auto e = MakeExpr(Expr::Kind::kSlice, line);
  e->children.push_back(std::move(node));
  e->children.push_back(std::move(start));
  e->children.push_back(std::move(stop));
  e->children.push_back(std::move(step));
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (IsOp("|") || IsName("is")) {
    const bool is_filter = IsOp("|");
    const int line = Next().line;
    auto e = MakeExpr(is_filter ? Expr::Kind::kFilter : Expr::Kind::kTest, line);
    if (!is_filter && IsName("not")) {
      Next();
      e->negated = true;
    }
    MLA_RETURN_IF_ERROR(ExpectName(&e->name));
    if (is_filter ? !IsKnownFilter(e->name) : !IsKnownTest(e->name)) {
      return Error(line, absl::StrCat("unsupported ", is_filter ? "filter" : "test", " '",
                                      e->name, "'"));
    }
    e->children.push_back(std::move(node));
    if (IsOp("(")) {
      MLA_RETURN_IF_ERROR(ParseCallArgs(e.get()));
    } else if (!is_filter && (Peek().kind == TokenKind::kString || Peek().kind == TokenKind::kInt ||
                              Peek().kind == TokenKind::kFloat ||
                              (Peek().kind == TokenKind::kName && !IsName("else") &&
                               !IsName("or") && !IsName("and")))) {
      // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
      MLA_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      MLA_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      e->children.push_back(std::move(arg));
    }
    node = std::move(e);
  }
  return node;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  MLA_RETURN_IF_ERROR(ExpectOp("("));
  bool first = true;
  while (!IsOp(")")) {
    if (!first) MLA_RETURN_IF_ERROR(ExpectOp(","));
    first = false;
    if (IsOp(")")) break;
    if (IsOp("*") || IsOp("**")) return Error(Peek().line, "unsupported *args in call");
    if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
      std::string key = Next().text;
      Next();
      MLA_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->kwargs.emplace_back(std::move(key), std::move(value));
      continue;
    }
    if (!call->kwargs.empty()) return Error(Peek().line, "positional argument after keyword");
    MLA_ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression());
    call->children.push_back(std::move(arg));
  }
  Next();
  return absl::OkStatus();
}

}  // namespace mla::chat::parser_internal
