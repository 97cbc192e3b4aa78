#include "server/text_support.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/log.h"

namespace mla {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Prefixes an error's message with the request field it is about; keeps the code.
absl::Status InField(absl::string_view field, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
}

}  // namespace

TextSupport::TextSupport(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {
  if (tokenizer_ == nullptr) return;
  if (tokenizer_->chat_template().empty()) {
    chat_error_ = "the model's tokenizer_config.json has no chat_template";
    return;
  }
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed =
      ChatTemplate::Parse(tokenizer_->chat_template());
  if (!parsed.ok()) {
    chat_error_ = absl::StrCat("the model's chat template is not supported by this server: ",
                               parsed.status().message());
    LogWarning(chat_error_, "; chat requests will be refused (send text or token ids)");
    return;
  }
  chat_ = std::move(*parsed);
}

absl::Status TextSupport::NoTokenizer(absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": needs a tokenizer, and the model directory has no tokenizer.json: "
                         "send token ids"));
}

absl::StatusOr<std::string> TextSupport::RenderChat(const v1::ChatMessages& messages) const {
  if (tokenizer_ == nullptr) return NoTokenizer("messages");
  if (chat_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("messages: ", chat_error_));
  }
  if (messages.messages().empty()) return Invalid("messages.messages", "must not be empty");
  std::vector<ChatTurn> turns;
  turns.reserve(static_cast<size_t>(messages.messages_size()));
  for (int i = 0; i < messages.messages_size(); ++i) {
    const v1::ChatMessage& m = messages.messages(i);
    if (m.role().empty()) {
      return Invalid(absl::StrCat("messages.messages[", i, "].role"), "must not be empty");
    }
    turns.push_back({m.role(), m.content()});
  }
  ChatRenderOptions options;
  options.add_generation_prompt = messages.add_generation_prompt();
  options.bos_token = tokenizer_->bos_token();
  options.eos_token = tokenizer_->eos_token();
  absl::StatusOr<std::string> rendered = chat_->Render(turns, options);
  if (!rendered.ok()) return InField("messages", rendered.status());
  return rendered;
}

absl::StatusOr<std::vector<int32_t>> TextSupport::PromptIds(
    const v1::GenerateRequest& request) const {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) return Invalid("token_ids", "must not be empty");
      return std::vector<int32_t>(ids.begin(), ids.end());
    }
    case v1::GenerateRequest::kText: {
      if (tokenizer_ == nullptr) return NoTokenizer("text");
      if (request.text().empty()) return Invalid("text", "must not be empty");
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(request.text(), true);
      if (!ids.ok()) return InField("text", ids.status());
      return ids;
    }
    case v1::GenerateRequest::kMessages: {
      absl::StatusOr<std::string> rendered = RenderChat(request.messages());
      if (!rendered.ok()) return rendered.status();
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(*rendered, false);
      if (!ids.ok()) return InField("messages", ids.status());
      if (ids->empty()) return Invalid("messages", "the chat template rendered an empty prompt");
      return ids;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      break;
  }
  return Invalid("prompt", "set one of token_ids, text or messages");
}

absl::StatusOr<std::vector<int32_t>> TextSupport::Tokenize(const std::string& text,
                                                           bool add_special_tokens) const {
  if (tokenizer_ == nullptr) return NoTokenizer("Tokenize");
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, add_special_tokens);
  if (!ids.ok()) return InField("text", ids.status());
  return ids;
}

absl::StatusOr<std::string> TextSupport::Detokenize(absl::Span<const int32_t> ids,
                                                    bool skip_special_tokens) const {
  if (tokenizer_ == nullptr) return NoTokenizer("Detokenize");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!tokenizer_->IsValidId(ids[i])) {
      return Invalid(absl::StrCat("token_ids[", i, "]"),
                     absl::StrCat(ids[i], " is not a token of the model's tokenizer (",
                                  tokenizer_->vocab_size(), " ids)"));
    }
  }
  return tokenizer_->Decode(ids, skip_special_tokens);
}

}  // namespace mla
