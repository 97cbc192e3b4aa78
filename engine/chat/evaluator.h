// Executes a parsed template against a set of variables, with jinja2's scoping: `set`
// inside an `if` changes the enclosing scope, each for-loop iteration gets a fresh scope
// (so loop-body assignments never leak out or carry over), and namespaces are shared
// objects whose attributes can be assigned from anywhere.
#ifndef MLA_ENGINE_CHAT_EVALUATOR_H_
#define MLA_ENGINE_CHAT_EVALUATOR_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/chat/ast.h"
#include "engine/chat/value.h"

namespace mla::chat {

// Renders `body` with the variables in `context`. InvalidArgument on evaluation errors
// ("line N: ..."), or with exactly the message of a raise_exception(...) call.
absl::StatusOr<std::string> RenderTemplate(const StmtList& body, const ValueDict& context);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_EVALUATOR_H_
