// What the server does with text: prompts given as text or chat messages become token
// ids, and the Tokenize / Detokenize RPCs. Built once when the model is ready, from the
// engine's tokenizer (null: text requests answer FAILED_PRECONDITION) and its chat
// template, which is parsed here. A template this server cannot render does not stop the
// server: it is logged, and chat requests get FAILED_PRECONDITION quoting the error.
//
// Immutable after construction; all methods may be called from any thread.
#ifndef MLA_SERVER_TEXT_SUPPORT_H_
#define MLA_SERVER_TEXT_SUPPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/chat/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "mla/v1/inference.pb.h"

namespace mla {

class TextSupport {
 public:
  // `tokenizer` may be null; otherwise it must outlive this object.
  explicit TextSupport(const Tokenizer* tokenizer);

  const Tokenizer* tokenizer() const { return tokenizer_; }
  bool has_chat_template() const { return chat_ != nullptr; }

  // The prompt of a Generate request as token ids: token_ids as given; text encoded with
  // the tokenizer's special tokens (BOS as tokenizer_config.json says); messages rendered
  // with the chat template and encoded without adding special tokens again (the template
  // writes the BOS itself), as transformers' apply_chat_template(tokenize=True) does.
  // INVALID_ARGUMENT naming the field; FAILED_PRECONDITION when the tokenizer or chat
  // template it needs is missing.
  absl::StatusOr<std::vector<int32_t>> PromptIds(const v1::GenerateRequest& request) const;
  // The rendered chat prompt (the text PromptIds encodes for `messages`).
  absl::StatusOr<std::string> RenderChat(const v1::ChatMessages& messages) const;

  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& text,
                                                bool add_special_tokens) const;
  // INVALID_ARGUMENT "token_ids[i]: ..." for an id the tokenizer does not know.
  absl::StatusOr<std::string> Detokenize(absl::Span<const int32_t> ids,
                                         bool skip_special_tokens) const;

  // FAILED_PRECONDITION saying that text needs a tokenizer (for `what`, e.g. "text").
  static absl::Status NoTokenizer(absl::string_view what);

 private:
  const Tokenizer* tokenizer_;
  std::unique_ptr<ChatTemplate> chat_;
  std::string chat_error_;  // Why there is no chat template.
};

}  // namespace mla

#endif  // MLA_SERVER_TEXT_SUPPORT_H_
