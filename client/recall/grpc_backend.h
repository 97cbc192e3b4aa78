// The recall backend for mla-server (mla.v1.Inference over gRPC).
#ifndef MLA_CLIENT_RECALL_GRPC_BACKEND_H_
#define MLA_CLIENT_RECALL_GRPC_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/mla_client.h"
#include "client/recall/backend.h"

namespace mla::recall {

// Tokenize / Detokenize RPCs: the server's own tokenizer.
class ServerTokenizer : public Tokenizer {
 public:
  explicit ServerTokenizer(MlaClient* client) : client_(client) {}
  absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text, bool add_special) override;
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) override;

 private:
  MlaClient* const client_;
};

// kText: Generate gets the prompt text and the server tokenizes it. kIds: the harness
// tokenizes (with its tokenizer) and sends token ids.
enum class PromptMode { kText, kIds };
absl::StatusOr<PromptMode> ParsePromptMode(absl::string_view name);

class GrpcBackend : public RecallBackend {
 public:
  // `client` outlives the backend. Text mode needs the server's tokenizer; answer
  // scoring always sends ids (prompt + answer) and reads their prompt logprobs.
  GrpcBackend(MlaClient* client, std::unique_ptr<Tokenizer> tokenizer, PromptMode mode,
              bool score_logprobs, std::string description);

  TokenCounter& counter() override { return counter_; }
  absl::StatusOr<GenerateResult> Generate(const std::string& prompt, int max_tokens) override;
  // Sends the span as token positions (GenerateRequest.indexer_watch): the token counts
  // of the prompt's text before it and through it, BOS included.
  absl::StatusOr<GenerateResult> GenerateWatching(const std::string& prompt, int max_tokens,
                                                  TextSpan watch) override;
  bool can_score() const override { return score_logprobs_; }
  absl::StatusOr<double> ScoreAnswer(const std::string& prompt, const std::string& answer) override;
  std::string Describe() const override { return description_; }
  std::string note() const override;

 private:
  absl::StatusOr<GenerateResult> Run(const std::string& prompt, int max_tokens,
                                     const v1::PositionRange* watch);

  MlaClient* const client_;
  const std::unique_ptr<Tokenizer> tokenizer_;
  CachingCounter counter_;
  const PromptMode mode_;
  const bool score_logprobs_;
  const std::string description_;
};

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_GRPC_BACKEND_H_
