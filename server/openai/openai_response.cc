#include "server/openai/openai_response.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mla::openai {
namespace {

using Json = nlohmann::json;

Json NullIfEmpty(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

// OpenAI writes -inf logprobs as a very negative number; JSON has no infinity.
double Finite(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0; }

Json BytesOf(absl::string_view bytes) {
  Json out = Json::array();
  for (const char c : bytes) out.push_back(static_cast<unsigned char>(c));
  return out;
}

Json UsageJson(const Usage& usage) {
  return Json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

}  // namespace

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string ErrorBody(const ApiError& e) {
  return Dump(Json{{"error",
                    {{"message", e.message},
                     {"type", e.type},
                     {"param", NullIfEmpty(e.param)},
                     {"code", NullIfEmpty(e.code)}}}});
}

std::string SseEvent(absl::string_view json) { return absl::StrCat("data: ", json, "\n\n"); }

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
    case FinishReason::kStopSequence:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
    case FinishReason::kNone:
      break;
  }
  return "abort";
}

ResponseEncoder::ResponseEncoder(const OpenAiRequest& request, const Tokenizer* tokenizer,
                                 std::string id, int64_t created, int index)
    : endpoint_(request.endpoint),
      want_logprobs_(request.logprobs >= 0),
      top_n_(std::max(0, request.logprobs)),
      model_(request.model),
      tokenizer_(tokenizer),
      id_(std::move(id)),
      created_(created),
      index_(index),
      pending_logprobs_(EmptyLogprobs()),
      all_logprobs_(EmptyLogprobs()) {
  if (tokenizer_ != nullptr) {
    offsets_ = std::make_unique<StreamingDetokenizer>(tokenizer_, /*skip_special_tokens=*/true);
  }
}

Json ResponseEncoder::EmptyLogprobs() const {
  if (endpoint_ == Endpoint::kChat) return Json{{"content", Json::array()}};
  return Json{{"tokens", Json::array()},
              {"token_logprobs", Json::array()},
              {"top_logprobs", Json::array()},
              {"text_offset", Json::array()}};
}

std::string ResponseEncoder::TokenString(int32_t id) const {
  if (tokenizer_ == nullptr || !tokenizer_->IsValidId(id)) return absl::StrCat("token_id:", id);
  absl::StatusOr<std::string> text = tokenizer_->Decode({id}, /*skip_special_tokens=*/false);
  return text.ok() ? *text : absl::StrCat("token_id:", id);
}

void ResponseEncoder::AddLogprob(int32_t id, const TokenLogprobs* lp) {
  // The offset of this token's text in the returned text: where the text stood before it.
  const size_t offset = text_length_;
  if (offsets_ != nullptr) {
    absl::StatusOr<std::string> piece = offsets_->Add(id);
    if (piece.ok()) text_length_ += piece->size();
  }
  if (!want_logprobs_) return;
  const size_t top = lp == nullptr ? 0 : std::min<size_t>(lp->top.size(), top_n_);
  for (Json* target : {&pending_logprobs_, &all_logprobs_}) {
    Json& out = *target;
    if (endpoint_ == Endpoint::kChat) {
      Json alternatives = Json::array();
      for (size_t i = 0; i < top; ++i) {
        const int32_t alt = lp->top[i].token_id;
        alternatives.push_back({{"token", TokenString(alt)},
                                {"logprob", Finite(lp->top[i].logprob)},
                                {"bytes", BytesOf(tokenizer_ ? tokenizer_->TokenBytes(alt) : "")}});
      }
      out["content"].push_back({{"token", TokenString(id)},
                                {"logprob", lp == nullptr ? 0.0 : Finite(lp->logprob)},
                                {"bytes", BytesOf(tokenizer_ ? tokenizer_->TokenBytes(id) : "")},
                                {"top_logprobs", std::move(alternatives)}});
      continue;
    }
    out["tokens"].push_back(TokenString(id));
    out["text_offset"].push_back(offset);
    if (lp == nullptr) {
      out["token_logprobs"].push_back(nullptr);
      out["top_logprobs"].push_back(nullptr);
      continue;
    }
    out["token_logprobs"].push_back(Finite(lp->logprob));
    // As OpenAI's legacy format: the alternatives, and the chosen token among them.
    Json alternatives = Json::object();
    for (size_t i = 0; i < top; ++i) {
      alternatives[TokenString(lp->top[i].token_id)] = Finite(lp->top[i].logprob);
    }
    alternatives[TokenString(id)] = Finite(lp->logprob);
    out["top_logprobs"].push_back(std::move(alternatives));
  }
}

void ResponseEncoder::AddPrompt(absl::Span<const int32_t> ids,
                                absl::Span<const TokenLogprobs> logprobs) {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    // prompt_logprobs has one entry per prompt token from the second on.
    AddLogprob(ids[i], i >= 1 && i - 1 < logprobs.size() ? &logprobs[i - 1] : nullptr);
  }
  if (tokenizer_ != nullptr) {
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(ids, /*skip_special_tokens=*/true);
    if (decoded.ok()) text = std::move(*decoded);
  }
  pending_text_ += text;
  all_text_ += text;
}

void ResponseEncoder::AddTokens(absl::Span<const int32_t> ids,
                                absl::Span<const TokenLogprobs> logprobs, absl::string_view text) {
  for (size_t i = 0; i < ids.size(); ++i) {
    AddLogprob(ids[i], i < logprobs.size() ? &logprobs[i] : nullptr);
  }
  absl::StrAppend(&pending_text_, text);
  absl::StrAppend(&all_text_, text);
}

Json ResponseEncoder::Envelope(bool chunk) const {
  const char* object = endpoint_ == Endpoint::kChat
                           ? (chunk ? "chat.completion.chunk" : "chat.completion")
                           : "text_completion";
  return Json{{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}};
}

Json ResponseEncoder::Choice(const std::string& text, const Json& logprobs,
                             const char* finish_reason, bool chunk) const {
  Json choice{{"index", index_},
              {"logprobs", want_logprobs_ ? logprobs : Json(nullptr)},
              {"finish_reason", finish_reason == nullptr ? Json(nullptr) : Json(finish_reason)}};
  if (endpoint_ == Endpoint::kCompletions) {
    choice["text"] = text;
  } else if (!chunk) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    Json delta = Json::object();
    if (!sent_first_) delta["role"] = "assistant";
    if (!text.empty() || !sent_first_) delta["content"] = text;
    choice["delta"] = std::move(delta);
  }
  return choice;
}

std::string ResponseEncoder::TakeChunk(const char* finish_reason) {
  const bool has_logprobs = endpoint_ == Endpoint::kChat ? !pending_logprobs_["content"].empty()
                                                         : !pending_logprobs_["tokens"].empty();
  if (finish_reason == nullptr && sent_first_ && pending_text_.empty() && !has_logprobs) {
    return "";
  }
  Json j = Envelope(true);
  j["choices"] = Json::array({Choice(pending_text_, pending_logprobs_, finish_reason, true)});
  sent_first_ = true;
  pending_text_.clear();
  pending_logprobs_ = EmptyLogprobs();
  return Dump(j);
}

std::string ResponseEncoder::UsageChunk(const Usage& usage) const {
  Json j = Envelope(true);
  j["choices"] = Json::array();
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ResponseEncoder::Whole(const char* finish_reason, const Usage& usage) const {
  const ResponseEncoder* self = this;
  return WholeOfChoices({&self, 1}, {&finish_reason, 1}, usage);
}

std::string ResponseEncoder::WholeOfChoices(absl::Span<const ResponseEncoder* const> choices,
                                            absl::Span<const char* const> finish_reasons,
                                            const Usage& usage) {
  Json j = choices.front()->Envelope(false);
  j["choices"] = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ResponseEncoder& c = *choices[i];
    j["choices"].push_back(c.Choice(c.all_text_, c.all_logprobs_, finish_reasons[i], false));
  }
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

}  // namespace mla::openai
