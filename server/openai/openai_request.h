// The request side of the OpenAI-compatible API: a JSON body of /v1/completions or
// /v1/chat/completions becomes the same v1::GenerateRequest the gRPC API takes, so that
// both front ends share one validation (ToGenerationRequest, Engine::Submit), one
// admission path and one set of limits.
//
// Every field OpenAI's clients send is either honoured or refused with 400 naming it:
// a field that would change the result and is not supported (best_of > 1, suffix, tools,
// ...) is never silently ignored. Fields that change nothing (user, metadata) are
// accepted. Unknown fields are refused, as OpenAI does.
#ifndef MLA_SERVER_OPENAI_OPENAI_REQUEST_H_
#define MLA_SERVER_OPENAI_OPENAI_REQUEST_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "mla/v1/inference.pb.h"

namespace mla::openai {

enum class Endpoint { kCompletions, kChat };

// The most choices (`n`) one request may ask for.
inline constexpr int kMaxChoices = 16;

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // The request field at fault; empty when none.
  std::string code;   // e.g. "model_not_found"; empty when none.
};

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  v1::GenerateRequest generate;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage.
  // Completions: the prompt before the completion in `text` (with its logprobs when
  // `logprobs` is set: prompt logprobs, as scoring tools use).
  bool echo = false;
  // Completions: `logprobs` alternatives per token (0..20; -1 = none). Chat: `logprobs`
  // true gives top_logprobs alternatives (-1 = logprobs false).
  int logprobs = -1;
  // The prompt as the client gave it (a string), echoed back as is; empty for token ids.
  std::string prompt_text;
  // Choices (1..kMaxChoices): each its own engine request on the same prompt; with a
  // seed, choice i samples with seed + i.
  int n = 1;
};

// Parses and checks a request body. `served_model` is the only model name accepted
// (404 model_not_found otherwise). The error, or nullopt when `*out` is filled in.
std::optional<ApiError> ParseRequest(Endpoint endpoint, absl::string_view body,
                                     absl::string_view served_model, OpenAiRequest* out);

// An error from the shared validation (ToGenerationRequest, Engine::Submit), whose
// messages start with the proto field ("sampling.top_p: ..."), in OpenAI's shape, with
// `param` the OpenAI field it came from.
ApiError FromStatus(const absl::Status& status, Endpoint endpoint);

}  // namespace mla::openai

#endif  // MLA_SERVER_OPENAI_OPENAI_REQUEST_H_
