// Builds the syntax tree from lexer tokens, following jinja2's grammar and operator
// precedence. Constructs outside the supported subset (macros, includes, unknown filters,
// tests, functions or methods, ...) are rejected here with their line, so a template that
// parses never renders a prompt that differs from jinja2 because of them.
#ifndef MLA_ENGINE_CHAT_PARSER_H_
#define MLA_ENGINE_CHAT_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/ast.h"
#include "engine/chat/lexer.h"

namespace mla::chat {

absl::StatusOr<StmtList> ParseTemplate(const std::vector<Token>& tokens);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_PARSER_H_
