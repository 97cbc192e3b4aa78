// The response side of the OpenAI-compatible API: completion and chat completion objects,
// their streamed chunks (Server-Sent Events), usage, logprobs in both of OpenAI's formats
// (the legacy completions one with text offsets, the chat one with bytes), and errors.
// Pure formatting: no engine, no sockets.
#ifndef MLA_SERVER_OPENAI_OPENAI_RESPONSE_H_
#define MLA_SERVER_OPENAI_OPENAI_RESPONSE_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/request.h"
#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/openai/openai_request.h"

namespace mla::openai {

// {"error": {"message", "type", "param", "code"}}; param and code null when empty.
std::string ErrorBody(const ApiError& error);
// One Server-Sent Event carrying `json`, and the stream's end marker.
std::string SseEvent(absl::string_view json);
inline constexpr absl::string_view kSseDone = "data: [DONE]\n\n";
// JSON text; invalid UTF-8 (a token that is part of a character) becomes U+FFFD.
std::string Dump(const nlohmann::json& j);

// "stop" (end of sequence, a stop token or a stop string), "length", or "abort".
const char* FinishReasonName(FinishReason reason);

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
};

// Builds one request's response objects. Completions logprobs carry text offsets into
// the returned text, which this object tracks token by token.
class ResponseEncoder {
 public:
  // `tokenizer` may be null (token strings are then "token_id:N"); it must outlive this.
  // `index`: the choice this encoder writes (of a request's n).
  ResponseEncoder(const OpenAiRequest& request, const Tokenizer* tokenizer, std::string id,
                  int64_t created, int index = 0);

  const std::string& id() const { return id_; }

  // Completions with echo: the prompt's text, then its tokens' logprobs (the first token
  // has none). Call once, before any generated token.
  void AddPrompt(absl::Span<const int32_t> ids, absl::Span<const TokenLogprobs> logprobs);
  // Generated tokens with their text (already cut at a stop string) and logprobs.
  void AddTokens(absl::Span<const int32_t> ids, absl::Span<const TokenLogprobs> logprobs,
                 absl::string_view text);

  // Streaming: the chunk with everything added since the previous chunk (with chat's
  // role on the first); `finish_reason` null until the last. Empty when nothing is new.
  std::string TakeChunk(const char* finish_reason);
  // Streaming, stream_options.include_usage: the last chunk, with no choices.
  std::string UsageChunk(const Usage& usage) const;
  // Not streaming: the whole object.
  std::string Whole(const char* finish_reason, const Usage& usage) const;
  // Not streaming, n choices: the whole object with one choice per encoder (their own
  // indices, in this order), the envelope of the first. `finish_reasons` has one entry
  // per encoder.
  static std::string WholeOfChoices(absl::Span<const ResponseEncoder* const> choices,
                                    absl::Span<const char* const> finish_reasons,
                                    const Usage& usage);

 private:
  nlohmann::json Envelope(bool chunk) const;
  nlohmann::json Choice(const std::string& text, const nlohmann::json& logprobs,
                        const char* finish_reason, bool chunk) const;
  std::string TokenString(int32_t id) const;
  // Appends one token to the pending logprobs; `lp` null for a token without one.
  void AddLogprob(int32_t id, const TokenLogprobs* lp);
  nlohmann::json EmptyLogprobs() const;

  const Endpoint endpoint_;
  const bool want_logprobs_;
  const int top_n_;
  const std::string model_;
  const Tokenizer* tokenizer_;
  const std::string id_;
  const int64_t created_;
  const int index_;
  // Offsets: the text returned so far, measured as a detokenizer emits it.
  std::unique_ptr<StreamingDetokenizer> offsets_;
  size_t text_length_ = 0;
  // What the next chunk carries (streaming), and everything (not streaming).
  std::string pending_text_;
  nlohmann::json pending_logprobs_;
  std::string all_text_;
  nlohmann::json all_logprobs_;
  bool sent_first_ = false;
};

}  // namespace mla::openai

#endif  // MLA_SERVER_OPENAI_OPENAI_RESPONSE_H_
