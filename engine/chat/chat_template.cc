#include "engine/chat/chat_template.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "engine/chat/ast.h"
#include "engine/chat/evaluator.h"
#include "engine/chat/lexer.h"
#include "engine/chat/parser.h"
#include "engine/chat/value.h"
#include "common/status_macros.h"

namespace mla {
namespace {

class JinjaChatTemplate : public ChatTemplate {
 public:
  explicit JinjaChatTemplate(chat::StmtList body) : body_(std::move(body)) {}

  absl::StatusOr<std::string> Render(absl::Span<const ChatTurn> messages,
                                     const ChatRenderOptions& options) const override {
    chat::ValueList list;
    list.reserve(messages.size());
    for (const ChatTurn& turn : messages) {
      chat::ValueDict message;
      message.Set("role", chat::Value::String(turn.role));
      message.Set("content", chat::Value::String(turn.content));
      list.push_back(chat::Value::Dict(std::move(message)));
    }
    // The variables transformers' apply_chat_template passes (tools and documents are None
    // when the request has none).
    chat::ValueDict context;
    context.Set("messages", chat::Value::List(std::move(list)));
    context.Set("tools", chat::Value::None());
    context.Set("documents", chat::Value::None());
    context.Set("add_generation_prompt", chat::Value::Bool(options.add_generation_prompt));
    context.Set("bos_token", chat::Value::String(options.bos_token));
    context.Set("eos_token", chat::Value::String(options.eos_token));
    return chat::RenderTemplate(body_, context);
  }

 private:
  chat::StmtList body_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(absl::string_view source) {
  MLA_ASSIGN_OR_RETURN(std::vector<chat::Token> tokens, chat::Tokenize(source));
  MLA_ASSIGN_OR_RETURN(chat::StmtList body, chat::ParseTemplate(tokens));
  return std::make_unique<JinjaChatTemplate>(std::move(body));
}

}  // namespace mla
