// Renders a Hugging Face chat template (the Jinja `chat_template` of tokenizer_config.json)
// for a list of messages, byte-identically to transformers' apply_chat_template (Python
// jinja2 with trim_blocks and lstrip_blocks). Only the Jinja subset that the DeepSeek
// V2/V2.5/V3 templates and similar ones use is implemented; a template using anything else
// fails Parse with an error naming the construct and its line, never a wrong prompt.
#ifndef MLA_ENGINE_CHAT_CHAT_TEMPLATE_H_
#define MLA_ENGINE_CHAT_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mla {

struct ChatTurn {
  std::string role;  // "system", "user", "assistant" (templates may accept others)
  std::string content;
};

struct ChatRenderOptions {
  bool add_generation_prompt = false;
  std::string bos_token;  // tokenizer_config.json's bos_token / eos_token, as text
  std::string eos_token;
};

class ChatTemplate {
 public:
  // InvalidArgument naming the unsupported construct or syntax error and its line.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(absl::string_view source);
  virtual ~ChatTemplate() = default;

  // InvalidArgument for a template's raise_exception(...) (its message) or an evaluation
  // error (e.g. an unsupported filter on a value that only appears at run time).
  virtual absl::StatusOr<std::string> Render(absl::Span<const ChatTurn> messages,
                                             const ChatRenderOptions& options) const = 0;
};

}  // namespace mla

#endif  // MLA_ENGINE_CHAT_CHAT_TEMPLATE_H_
