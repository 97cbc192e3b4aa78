// The syntax tree of a parsed chat template: expressions and statements.
#ifndef MLA_ENGINE_CHAT_AST_H_
#define MLA_ENGINE_CHAT_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/chat/value.h"

namespace mla::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,     // literal
    kName,        // name
    kAttr,        // children[0].name
    kItem,        // children[0][children[1]]
    kSlice,       // children[0][children[1]:children[2]:children[3]] (parts may be null)
    kUnary,       // name is "-", "+" or "not"; children[0]
    kBinary,      // name is the operator (+ - * / // % ** ~ and or); children[0], children[1]
    kCompare,     // children[0] ops[0] children[1] ops[1] children[2] ... (Python chaining)
    kCondExpr,    // children[1] if children[0] else children[2] (children[2] may be null)
    kTest,        // children[0] is [not] name(children[1..])
    kFilter,      // children[0] | name(children[1..], kwargs)
    kCall,        // global function name(children..., kwargs)
    kMethodCall,  // children[0].name(children[1..], kwargs)
    kList,        // [children...]
    kDict,        // {children[0]: children[1], ...}
  };

  Kind kind = Kind::kLiteral;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<std::string> ops;
  bool negated = false;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches, else_body
    kFor,       // {% for targets in expr [if cond] %} body {% else %} else_body
    kSet,       // {% set name = expr %} or, with attr, {% set name.attr = expr %}
    kSetBlock,  // {% set name %} body {% endset %}
    kBreak,
    kContinue,
  };

  Kind kind = Kind::kText;
  int line = 0;
  std::string text;  // kText: the text; kSet/kSetBlock: the target name
  std::string attr;  // kSet: namespace attribute, empty for a plain variable
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, StmtList>> branches;
  StmtList body;
  StmtList else_body;
};

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_AST_H_
