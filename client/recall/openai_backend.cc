#include "client/recall/openai_backend.h"

#include <httplib.h>

#include <cmath>
#include <functional>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/recall/scoring.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mla::recall {
namespace {

using Json = nlohmann::json;

absl::StatusOr<Json> ParseJson(absl::string_view body) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::DataLossError("the server's response is not JSON");
  return j;
}

// The "tokens" array of a /tokenize response, or an error.
absl::StatusOr<std::vector<int32_t>> TokenIds(absl::string_view body) {
  MLA_ASSIGN_OR_RETURN(const Json j, ParseJson(body));
  if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) {
    return absl::DataLossError("no tokens in the /tokenize response");
  }
  std::vector<int32_t> ids;
  for (const Json& t : j["tokens"]) {
    if (!t.is_number_integer()) return absl::DataLossError("a token is not an id");
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

// Counting through a function (the endpoint's /tokenize); decoding is never needed.
class FnTokenizer : public Tokenizer {
 public:
  using Fn = std::function<absl::StatusOr<std::vector<int32_t>>(const std::string&, bool)>;
  explicit FnTokenizer(Fn fn) : fn_(std::move(fn)) {}
  absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text, bool add_special) override {
    return fn_(text, add_special);
  }
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>&) override {
    return absl::UnimplementedError("no detokenizer for OpenAI endpoints");
  }

 private:
  Fn fn_;
};

// ceil(bytes / chars_per_token), plus one for BOS in whole prompts.
class EstimateCounter : public TokenCounter {
 public:
  explicit EstimateCounter(double chars_per_token) : chars_per_token_(chars_per_token) {}
  absl::StatusOr<int> CountPiece(const std::string& piece) override {
    return static_cast<int>(std::ceil(static_cast<double>(piece.size()) / chars_per_token_));
  }
  absl::StatusOr<int> CountPrompt(const std::string& prompt) override {
    MLA_ASSIGN_OR_RETURN(const int n, CountPiece(prompt));
    return n + 1;
  }

 private:
  const double chars_per_token_;
};

}  // namespace

absl::StatusOr<GenerateResult> ParseCompletion(absl::string_view body) {
  MLA_ASSIGN_OR_RETURN(const Json j, ParseJson(body));
  if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() ||
      j["choices"].empty() || !j["choices"][0].contains("text") ||
      !j["choices"][0]["text"].is_string()) {
    return absl::DataLossError("no choices[0].text in the completion");
  }
  GenerateResult result;
  result.text = j["choices"][0]["text"].get<std::string>();
  if (j.contains("usage") && j["usage"].is_object()) {
    result.tokens = j["usage"].value("completion_tokens", 0);
    result.prompt_tokens = j["usage"].value("prompt_tokens", 0);
  }
  return result;
}

absl::StatusOr<double> ParseEchoLogprob(absl::string_view body, int answer_begin, int answer_end) {
  MLA_ASSIGN_OR_RETURN(const Json j, ParseJson(body));
  const Json* lp = nullptr;
  if (j.is_object() && j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
    const Json& c = j["choices"][0];
    if (c.contains("logprobs") && c["logprobs"].is_object()) lp = &c["logprobs"];
  }
  if (lp == nullptr || !lp->contains("token_logprobs") || !lp->contains("text_offset") ||
      !(*lp)["token_logprobs"].is_array() || !(*lp)["text_offset"].is_array()) {
    return absl::UnimplementedError("the completion has no echoed token logprobs");
  }
  std::vector<int> offsets;
  std::vector<double> logprobs;
  for (const Json& o : (*lp)["text_offset"]) offsets.push_back(o.is_number() ? o.get<int>() : 0);
  for (const Json& l : (*lp)["token_logprobs"]) {
    logprobs.push_back(l.is_number() ? l.get<double>() : std::numeric_limits<double>::quiet_NaN());
  }
  return SumEchoLogprobs(offsets, logprobs, answer_begin, answer_end);
}

absl::StatusOr<std::unique_ptr<OpenAiBackend>> OpenAiBackend::Create(OpenAiOptions options) {
  if (absl::EndsWith(options.url, "/")) options.url.pop_back();
  if (absl::EndsWith(options.url, "/v1")) options.url.resize(options.url.size() - 3);
  if (options.chars_per_token <= 0) {
    return absl::InvalidArgumentError("--chars_per_token must be > 0");
  }
  std::unique_ptr<OpenAiBackend> backend(new OpenAiBackend(std::move(options)));
  MLA_RETURN_IF_ERROR(backend->ResolveModel());
  backend->ProbeTokenize();
  backend->ProbeEcho();
  return backend;
}

absl::StatusOr<std::string> OpenAiBackend::Post(const std::string& path,
                                                const std::string& json) const {
  httplib::Client client(options_.url);
  client.set_read_timeout(options_.timeout_s, 0);
  client.set_write_timeout(options_.timeout_s, 0);
  if (!options_.api_key.empty()) client.set_bearer_token_auth(options_.api_key);
  const httplib::Result res = client.Post(path, json, "application/json");
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("POST ", options_.url, path, ": ", httplib::to_string(res.error())));
  }
  if (res->status != 200) {
    return absl::UnknownError(
        absl::StrCat("POST ", path, ": HTTP ", res->status, ": ", res->body.substr(0, 300)));
  }
  return res->body;
}

absl::StatusOr<std::string> OpenAiBackend::Get(const std::string& path) const {
  httplib::Client client(options_.url);
  client.set_read_timeout(options_.timeout_s, 0);
  if (!options_.api_key.empty()) client.set_bearer_token_auth(options_.api_key);
  const httplib::Result res = client.Get(path);
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("GET ", options_.url, path, ": ", httplib::to_string(res.error())));
  }
  // 503: the server is up but still loading its model (a caller may wait for it).
  if (res->status == 503)
    return absl::UnavailableError(absl::StrCat("GET ", path, ": HTTP 503: ", res->body.substr(0, 300)));
  if (res->status != 200)
    return absl::UnknownError(absl::StrCat("GET ", path, ": HTTP ", res->status));
  return res->body;
}

absl::Status OpenAiBackend::ResolveModel() {
  if (!options_.model.empty()) return absl::OkStatus();
  MLA_ASSIGN_OR_RETURN(const std::string body, Get("/v1/models"));
  MLA_ASSIGN_OR_RETURN(const Json j, ParseJson(body));
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id") || !j["data"][0]["id"].is_string()) {
    return absl::FailedPreconditionError("GET /v1/models lists no model: pass --model");
  }
  options_.model = j["data"][0]["id"].get<std::string>();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> OpenAiBackend::Tokenize(const std::string& text,
                                                             bool add_special) const {
  Json request;
  if (style_ == TokenizeStyle::kLlamaCpp) {
    request = {{"content", text}, {"add_special", add_special}};
  } else {
    request = {{"model", options_.model}, {"prompt", text}, {"add_special_tokens", add_special}};
  }
  MLA_ASSIGN_OR_RETURN(const std::string body, Post("/tokenize", request.dump()));
  return TokenIds(body);
}

void OpenAiBackend::ProbeTokenize() {
  for (const TokenizeStyle style : {TokenizeStyle::kVllm, TokenizeStyle::kLlamaCpp}) {
    style_ = style;
    if (Tokenize("The grass is green.", false).ok()) {
      tokenizer_ = std::make_unique<FnTokenizer>([this](const std::string& text, bool add_special) {
        return Tokenize(text, add_special);
      });
      counter_ = std::make_unique<CachingCounter>(tokenizer_.get());
      return;
    }
  }
  style_ = TokenizeStyle::kEstimate;
  counter_ = std::make_unique<EstimateCounter>(options_.chars_per_token);
}

void OpenAiBackend::ProbeEcho() {
  if (!options_.score_logprobs) {
    note_ = "answer logprob scoring disabled (--score_logprobs=false)";
    return;
  }
  const std::string prompt = "The grass is green. The sky is ";
  absl::StatusOr<double> probe = ScoreAnswer(prompt, "blue");
  can_score_ = probe.ok();
  if (!can_score_) {
    note_ = absl::StrCat("exact match only: the endpoint does not return echoed prompt ",
                         "logprobs (echo + logprobs): ", probe.status().message());
  }
}

absl::StatusOr<GenerateResult> OpenAiBackend::Generate(const std::string& prompt, int max_tokens) {
  const Json request = {{"model", options_.model},
                        {"prompt", prompt},
                        {"max_tokens", max_tokens},
                        {"temperature", 0}};
  MLA_ASSIGN_OR_RETURN(const std::string body, Post("/v1/completions", request.dump()));
  return ParseCompletion(body);
}

absl::StatusOr<double> OpenAiBackend::ScoreAnswer(const std::string& prompt,
                                                  const std::string& answer) {
  const std::string text = prompt + answer;
  const Json request = {{"model", options_.model}, {"prompt", text}, {"max_tokens", 1},
                        {"temperature", 0},        {"echo", true},   {"logprobs", 1}};
  MLA_ASSIGN_OR_RETURN(const std::string body, Post("/v1/completions", request.dump()));
  return ParseEchoLogprob(body, static_cast<int>(prompt.size()), static_cast<int>(text.size()));
}

std::string OpenAiBackend::Describe() const {
  const char* counts = style_ == TokenizeStyle::kVllm       ? "/tokenize (model, prompt)"
                       : style_ == TokenizeStyle::kLlamaCpp ? "/tokenize (content)"
                                                            : "estimated from characters";
  return absl::StrCat("openai ", options_.url, " model ", options_.model, ", token counts ",
                      counts);
}

}  // namespace mla::recall
