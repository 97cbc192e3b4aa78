// Splits a template into text and tag tokens the way jinja2's lexer does with the options
// transformers uses (trim_blocks, lstrip_blocks, keep_trailing_newline off): whitespace
// control (`{%-`, `-%}`, `{%+`, `+%}`) is applied here, to the text tokens.
#ifndef MLA_ENGINE_CHAT_LEXER_H_
#define MLA_ENGINE_CHAT_LEXER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::chat {

enum class TokenKind {
  kText,        // literal template text (after whitespace control)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,      // value already unescaped
  kInt,
  kFloat,
  kOperator,    // + - * / // % ** ~ == != < > <= >= = . : | , ( ) [ ] { } ;
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;  // text, name, operator or unescaped string value
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1;
};

// InvalidArgument (with the line) for an unterminated tag, comment or string, an unknown
// character inside a tag, unbalanced brackets, or `{% raw %}` (not supported).
absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_LEXER_H_
