// The recall backend for OpenAI-compatible completion servers (vLLM, SGLang, the
// llama.cpp server): POST /v1/completions with a text prompt, greedy decoding.
//
// Token counts come from the server's /tokenize when it has one (vLLM's
// {"model", "prompt"} form or llama.cpp's {"content"} form, probed in that order);
// otherwise they are estimated as ceil(bytes / chars_per_token), and prompt lengths are
// then approximate (the results record the server's usage.prompt_tokens).
// Answer logprobs use `echo: true, logprobs: 1` on prompt + answer; servers that do not
// echo prompt logprobs get exact-match scoring only, and note() says so.
#ifndef MLA_CLIENT_RECALL_OPENAI_BACKEND_H_
#define MLA_CLIENT_RECALL_OPENAI_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/recall/backend.h"

namespace mla::recall {

struct OpenAiOptions {
  std::string url;               // http://host:port (a trailing /v1 is dropped).
  std::string model;             // The "model" field; empty: the first of GET /v1/models.
  std::string api_key;           // Sent as a bearer token when non-empty.
  double chars_per_token = 4.0;  // For the estimate when the server cannot tokenize.
  int timeout_s = 600;
  bool score_logprobs = true;
};

// Response parsing, separate from the transport for testing.
// choices[0].text and usage of a /v1/completions response.
absl::StatusOr<GenerateResult> ParseCompletion(absl::string_view body);
// The answer's logprob from an echoed completion of prompt + answer, where the answer
// occupies characters [answer_begin, answer_end) of the echoed text.
absl::StatusOr<double> ParseEchoLogprob(absl::string_view body, int answer_begin, int answer_end);

class OpenAiBackend : public RecallBackend {
 public:
  // Resolves the model name and probes /tokenize and echoed logprobs.
  static absl::StatusOr<std::unique_ptr<OpenAiBackend>> Create(OpenAiOptions options);

  TokenCounter& counter() override { return *counter_; }
  absl::StatusOr<GenerateResult> Generate(const std::string& prompt, int max_tokens) override;
  bool can_score() const override { return can_score_; }
  absl::StatusOr<double> ScoreAnswer(const std::string& prompt, const std::string& answer) override;
  std::string Describe() const override;
  std::string note() const override { return note_; }
  const std::string& model() const { return options_.model; }

 private:
  enum class TokenizeStyle { kVllm, kLlamaCpp, kEstimate };

  explicit OpenAiBackend(OpenAiOptions options) : options_(std::move(options)) {}
  // POSTs JSON to `path`; the body of a 200 response.
  absl::StatusOr<std::string> Post(const std::string& path, const std::string& json) const;
  absl::StatusOr<std::string> Get(const std::string& path) const;
  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& text, bool add_special) const;
  absl::Status ResolveModel();
  void ProbeTokenize();
  void ProbeEcho();

  OpenAiOptions options_;
  TokenizeStyle style_ = TokenizeStyle::kEstimate;
  std::unique_ptr<Tokenizer> tokenizer_;  // Null when counts are estimated.
  std::unique_ptr<TokenCounter> counter_;
  bool can_score_ = false;
  std::string note_;
};

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_OPENAI_BACKEND_H_
