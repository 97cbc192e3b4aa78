#include "client/recall/grpc_backend.h"

#include "absl/strings/str_cat.h"
#include "client/recall/scoring.h"
#include "common/status_macros.h"

namespace mla::recall {

absl::StatusOr<std::vector<int32_t>> ServerTokenizer::Encode(const std::string& text,
                                                             bool add_special) {
  v1::TokenizeRequest request;
  request.set_text(text);
  request.set_add_special_tokens(add_special);
  MLA_ASSIGN_OR_RETURN(const v1::TokenizeResponse response, client_->Tokenize(request));
  return std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end());
}

absl::StatusOr<std::string> ServerTokenizer::Decode(const std::vector<int32_t>& ids) {
  v1::DetokenizeRequest request;
  for (const int32_t id : ids) request.add_token_ids(id);
  request.set_skip_special_tokens(true);
  MLA_ASSIGN_OR_RETURN(const v1::DetokenizeResponse response, client_->Detokenize(request));
  return response.text();
}

absl::StatusOr<PromptMode> ParsePromptMode(absl::string_view name) {
  if (name == "text") return PromptMode::kText;
  if (name == "ids") return PromptMode::kIds;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown --mode '", std::string(name), "' (text or ids)"));
}

GrpcBackend::GrpcBackend(MlaClient* client, std::unique_ptr<Tokenizer> tokenizer, PromptMode mode,
                         bool score_logprobs, std::string description)
    : client_(client),
      tokenizer_(std::move(tokenizer)),
      counter_(tokenizer_.get()),
      mode_(mode),
      score_logprobs_(score_logprobs),
      description_(std::move(description)) {}

std::string GrpcBackend::note() const {
  return score_logprobs_ ? "" : "answer logprob scoring disabled (--score_logprobs=false)";
}

absl::StatusOr<GenerateResult> GrpcBackend::Generate(const std::string& prompt, int max_tokens) {
  return Run(prompt, max_tokens, nullptr);
}

absl::StatusOr<GenerateResult> GrpcBackend::GenerateWatching(const std::string& prompt,
                                                             int max_tokens, TextSpan watch) {
  MLA_ASSIGN_OR_RETURN(const std::vector<int32_t> before,
                       tokenizer_->Encode(prompt.substr(0, watch.begin), true));
  MLA_ASSIGN_OR_RETURN(const std::vector<int32_t> through,
                       tokenizer_->Encode(prompt.substr(0, watch.end), true));
  v1::PositionRange range;
  range.set_begin(static_cast<int64_t>(before.size()));
  range.set_end(static_cast<int64_t>(through.size()));
  return Run(prompt, max_tokens, &range);
}

absl::StatusOr<GenerateResult> GrpcBackend::Run(const std::string& prompt, int max_tokens,
                                                const v1::PositionRange* watch) {
  v1::GenerateRequest request;
  if (watch != nullptr) *request.mutable_indexer_watch() = *watch;
  if (mode_ == PromptMode::kText) {
    request.set_text(prompt);
  } else {
    MLA_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, tokenizer_->Encode(prompt, true));
    request.mutable_token_ids()->mutable_ids()->Assign(ids.begin(), ids.end());
  }
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  GenerateResult result;
  std::vector<int32_t> generated;
  MLA_RETURN_IF_ERROR(client_->Generate(request, [&](const v1::GenerateResponse& m) {
    generated.insert(generated.end(), m.token_ids().begin(), m.token_ids().end());
    result.text += m.text();
    if (m.has_finished()) {
      result.prompt_tokens = m.finished().usage().prompt_tokens();
      double share = 0;
      int layers = 0;
      for (const v1::IndexerRecall& r : m.finished().indexer_recall()) {
        if (r.watched() <= 0) continue;
        share += static_cast<double>(r.selected()) / static_cast<double>(r.watched());
        ++layers;
      }
      if (layers > 0) result.indexer_recall = share / layers;
    }
    return true;
  }));
  result.tokens = static_cast<int>(generated.size());
  // A server without a tokenizer streams ids only.
  if (result.text.empty() && !generated.empty()) {
    MLA_ASSIGN_OR_RETURN(result.text, tokenizer_->Decode(generated));
  }
  return result;
}

absl::StatusOr<double> GrpcBackend::ScoreAnswer(const std::string& prompt,
                                                const std::string& answer) {
  if (!score_logprobs_) return absl::FailedPreconditionError(note());
  // The answer is tokenized on its own and appended to the prompt's ids, which are
  // exactly what greedy generation continues from.
  MLA_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(prompt, true));
  MLA_ASSIGN_OR_RETURN(const std::vector<int32_t> answer_ids, tokenizer_->Encode(answer, false));
  ids.insert(ids.end(), answer_ids.begin(), answer_ids.end());
  v1::GenerateRequest request;
  request.mutable_token_ids()->mutable_ids()->Assign(ids.begin(), ids.end());
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(1);
  request.set_prompt_logprobs(0);
  google::protobuf::RepeatedPtrField<v1::TokenLogprob> prompt_logprobs;
  MLA_RETURN_IF_ERROR(client_->Generate(request, [&](const v1::GenerateResponse& m) {
    prompt_logprobs.MergeFrom(m.prompt_logprobs());
    return true;
  }));
  return SumAnswerLogprobs(prompt_logprobs, answer_ids);
}

}  // namespace mla::recall
