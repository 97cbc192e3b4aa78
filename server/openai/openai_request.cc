#include "server/openai/openai_request.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mla::openai {
namespace {

using Json = nlohmann::json;
using Error = std::optional<ApiError>;

// The largest `logprobs` / `top_logprobs` OpenAI accepts (and the engine's bound too).
constexpr int kMaxLogprobs = 20;

ApiError Bad(absl::string_view param, absl::string_view what) {
  return ApiError{400, absl::StrCat(param, ": ", what), "invalid_request_error", std::string(param),
                  ""};
}

// An object whose "type" is "text" (json::value would throw on a non-string "type").
bool IsText(const Json& j) {
  auto it = j.find("type");
  return it != j.end() && *it == "text";
}

// Fields every request may carry, and those of one endpoint.
const absl::flat_hash_set<std::string>& CommonFields() {
  static const auto* fields = new absl::flat_hash_set<std::string>{
      "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "min_p",
      "seed", "stop", "ignore_eos", "n", "priority", "cache_salt", "user", "metadata", "store",
      "service_tier", "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias",
      "min_tokens",
      // Accepted at the values that change nothing only (see Neutral below).
      "best_of"};
  return *fields;
}

bool IsEndpointField(Endpoint e, const std::string& key) {
  if (e == Endpoint::kCompletions) {
    return key == "prompt" || key == "echo" || key == "logprobs" || key == "suffix";
  }
  return key == "messages" || key == "logprobs" || key == "top_logprobs" ||
         key == "max_completion_tokens" || key == "response_format" || key == "tools" ||
         key == "tool_choice" || key == "functions" || key == "function_call" ||
         key == "parallel_tool_calls";
}

// Fields accepted only at the value that leaves the result unchanged: anything else
// asks for a feature this server does not have, which must not pass silently.
Error Neutral(const std::string& key, const Json& v) {
  auto refuse = [&](absl::string_view why) {
    return Bad(key, absl::StrCat("is not supported by this server (", why, ")"));
  };
  if (key == "best_of") {
    if (!v.is_number_integer() || v.get<int64_t>() != 1) return refuse("only 1 is accepted");
  } else if (key == "suffix") {
    if (!v.is_string() || !v.get<std::string>().empty()) return refuse("insertion");
  } else if (key == "tools" || key == "functions") {
    if (!v.is_array() || !v.empty()) return refuse("no tool calling");
  } else if (key == "tool_choice" || key == "function_call") {
    if (v != "none") return refuse("no tool calling");
  } else if (key == "response_format") {
    if (!v.is_object() || !IsText(v) || v.size() != 1) {
      return refuse("only {\"type\": \"text\"} is accepted");
    }
  }
  return std::nullopt;
}

// Typed access to the body's fields; null counts as absent, as OpenAI's clients send it.
class Body {
 public:
  explicit Body(const Json& j) : j_(j) {}
  const Json* Get(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  Error Bool(const char* key, bool* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) return Bad(key, "must be true or false");
    *out = v->get<bool>();
    return std::nullopt;
  }
  Error Int(const char* key, int64_t lo, int64_t hi, std::optional<int64_t>* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) return Bad(key, "must be an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Bad(key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    }
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) return Bad(key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    *out = x;
    return std::nullopt;
  }
  // A number in [lo, hi] (or (lo, hi] when `open_low`).
  Error Number(const char* key, double lo, double hi, bool open_low, float* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) return Bad(key, "must be a number");
    const double x = v->get<double>();
    if (x > hi || (open_low ? x <= lo : x < lo)) {
      return Bad(key, absl::StrCat("must be in ", open_low ? "(" : "[", lo, ", ", hi, "]"));
    }
    *out = static_cast<float>(x);
    return std::nullopt;
  }
  Error String(const char* key, std::string* out) const {
    const Json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return Bad(key, "must be a string");
    *out = v->get<std::string>();
    return std::nullopt;
  }

 private:
  const Json& j_;
};

#define MLA_RETURN_IF_API_ERROR(expr)                 \
  do {                                                \
    if (Error mla_error_ = (expr)) return mla_error_; \
  } while (0)

Error CheckFields(Endpoint endpoint, const Json& j) {
  for (const auto& [key, value] : j.items()) {
    if (!CommonFields().contains(key) && !IsEndpointField(endpoint, key)) {
      return Bad(key,
                 "unknown field (this server refuses fields it does not implement "
                 "rather than ignore them)");
    }
    if (!value.is_null()) MLA_RETURN_IF_API_ERROR(Neutral(key, value));
  }
  return std::nullopt;
}

Error ParseStop(const Body& body, v1::SamplingParams* s) {
  const Json* stop = body.Get("stop");
  if (stop == nullptr) return std::nullopt;
  if (stop->is_string()) {
    s->add_stop(stop->get<std::string>());
    return std::nullopt;
  }
  if (!stop->is_array()) return Bad("stop", "must be a string or a list of strings");
  for (const Json& item : *stop) {
    if (!item.is_string()) return Bad("stop", "must be a string or a list of strings");
    s->add_stop(item.get<std::string>());
  }
  return std::nullopt;
}

// Penalties and logit bias in OpenAI's ranges (vLLM's for repetition_penalty and
// min_tokens); the engine checks the ids against the vocabulary, the number of entries
// and min_tokens against max_tokens.
Error ParsePenalties(const Body& body, v1::SamplingParams* s) {
  float presence = 0.0f, frequency = 0.0f, repetition = 1.0f;
  MLA_RETURN_IF_API_ERROR(body.Number("presence_penalty", -2, 2, false, &presence));
  MLA_RETURN_IF_API_ERROR(body.Number("frequency_penalty", -2, 2, false, &frequency));
  MLA_RETURN_IF_API_ERROR(
      body.Number("repetition_penalty", 0, std::numeric_limits<float>::max(), true, &repetition));
  s->set_presence_penalty(presence);
  s->set_frequency_penalty(frequency);
  s->set_repetition_penalty(repetition);
  std::optional<int64_t> min_tokens;
  MLA_RETURN_IF_API_ERROR(
      body.Int("min_tokens", 0, std::numeric_limits<int32_t>::max(), &min_tokens));
  if (min_tokens) s->set_min_tokens(static_cast<int32_t>(*min_tokens));
  const Json* bias = body.Get("logit_bias");
  if (bias == nullptr) return std::nullopt;
  if (!bias->is_object()) return Bad("logit_bias", "must be an object of token ids to biases");
  for (const auto& [key, value] : bias->items()) {
    int64_t id = -1;
    if (!absl::SimpleAtoi(key, &id) || id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return Bad("logit_bias", absl::StrCat("key \"", key, "\" is not a token id"));
    }
    if (!value.is_number()) {
      return Bad("logit_bias", absl::StrCat("the bias of token ", id, " must be a number"));
    }
    const double b = value.get<double>();
    if (!(b >= -100.0 && b <= 100.0)) {
      return Bad("logit_bias", absl::StrCat("the bias of token ", id, " must be in [-100, 100]"));
    }
    auto& biases = *s->mutable_logit_bias();
    if (biases.contains(static_cast<int32_t>(id))) {
      return Bad("logit_bias", absl::StrCat("token ", id, " appears more than once"));
    }
    biases[static_cast<int32_t>(id)] = static_cast<float>(b);
  }
  return std::nullopt;
}

Error ParseSampling(const Body& body, Endpoint endpoint, OpenAiRequest* out) {
  v1::SamplingParams* s = out->generate.mutable_sampling();
  float temperature = 1.0f;  // OpenAI's default; 0 is greedy.
  MLA_RETURN_IF_API_ERROR(body.Number("temperature", 0, 2, false, &temperature));
  s->set_temperature(temperature);
  float top_p = 1.0f, min_p = 0.0f;
  MLA_RETURN_IF_API_ERROR(body.Number("top_p", 0, 1, true, &top_p));
  MLA_RETURN_IF_API_ERROR(body.Number("min_p", 0, 1, false, &min_p));
  s->set_top_p(top_p);
  s->set_min_p(min_p);
  std::optional<int64_t> top_k, seed, max_tokens, max_completion, priority;
  MLA_RETURN_IF_API_ERROR(body.Int("top_k", -1, std::numeric_limits<int32_t>::max(), &top_k));
  if (top_k.has_value() && *top_k > 0) s->set_top_k(static_cast<int32_t>(*top_k));  // -1, 0: off
  MLA_RETURN_IF_API_ERROR(body.Int("seed", std::numeric_limits<int64_t>::min(),
                                   std::numeric_limits<int64_t>::max(), &seed));
  if (seed.has_value()) {
    s->set_seed(static_cast<uint64_t>(*seed));
    s->set_has_seed(true);
  }
  const int32_t kMaxInt = std::numeric_limits<int32_t>::max();
  MLA_RETURN_IF_API_ERROR(body.Int("max_tokens", 1, kMaxInt, &max_tokens));
  if (endpoint == Endpoint::kChat) {
    MLA_RETURN_IF_API_ERROR(body.Int("max_completion_tokens", 1, kMaxInt, &max_completion));
    if (max_tokens && max_completion && *max_tokens != *max_completion) {
      return Bad("max_completion_tokens", "differs from max_tokens: send one of them");
    }
    if (max_completion) max_tokens = max_completion;
  } else if (!max_tokens.has_value()) {
    max_tokens = 16;  // OpenAI's default for completions; chat runs to the context.
  }
  if (max_tokens) s->set_max_tokens(static_cast<int32_t>(*max_tokens));
  bool ignore_eos = false;
  MLA_RETURN_IF_API_ERROR(body.Bool("ignore_eos", &ignore_eos));
  s->set_ignore_eos(ignore_eos);
  MLA_RETURN_IF_API_ERROR(ParseStop(body, s));
  MLA_RETURN_IF_API_ERROR(ParsePenalties(body, s));
  MLA_RETURN_IF_API_ERROR(
      body.Int("priority", std::numeric_limits<int32_t>::min(), kMaxInt, &priority));
  if (priority) out->generate.set_priority(static_cast<int32_t>(*priority));
  std::string salt;
  MLA_RETURN_IF_API_ERROR(body.String("cache_salt", &salt));
  out->generate.set_cache_salt(salt);
  return std::nullopt;
}

Error ParseStreamFlags(const Body& body, OpenAiRequest* out) {
  MLA_RETURN_IF_API_ERROR(body.Bool("stream", &out->stream));
  const Json* options = body.Get("stream_options");
  if (options == nullptr) return std::nullopt;
  if (!out->stream) return Bad("stream_options", "is only allowed when stream is true");
  if (!options->is_object()) return Bad("stream_options", "must be an object");
  for (const auto& [key, value] : options->items()) {
    if (key != "include_usage") {
      return Bad(absl::StrCat("stream_options.", key), "unknown field");
    }
    if (!value.is_boolean()) return Bad("stream_options.include_usage", "must be true or false");
    out->include_usage = value.get<bool>();
  }
  return std::nullopt;
}

// A token id of a prompt given as ids (the engine checks it against the vocabulary).
Error AddTokenIds(const Json& ids, v1::TokenIds* out) {
  for (const Json& id : ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Bad("prompt", "token ids must be integers >= 0");
    }
    out->add_ids(static_cast<int32_t>(id.get<int64_t>()));
  }
  return std::nullopt;
}

Error ParsePrompt(const Body& body, OpenAiRequest* out) {
  const Json* prompt = body.Get("prompt");
  if (prompt == nullptr) return Bad("prompt", "is required");
  const Json* one = prompt;
  // A list holding one prompt is one prompt; several would be a batch.
  if (prompt->is_array() && !prompt->empty() && !(*prompt)[0].is_number()) {
    if (prompt->size() != 1) {
      return Bad("prompt",
                 "a list of several prompts is not supported: send one prompt per "
                 "request");
    }
    one = &(*prompt)[0];
  }
  if (one->is_string()) {
    out->prompt_text = one->get<std::string>();
    if (out->prompt_text.empty()) return Bad("prompt", "must not be empty");
    out->generate.set_text(out->prompt_text);
    return std::nullopt;
  }
  if (!one->is_array() || one->empty()) {
    return Bad("prompt", "must be a non-empty string or a non-empty list of token ids");
  }
  return AddTokenIds(*one, out->generate.mutable_token_ids());
}

Error ParseCompletionFields(const Body& body, OpenAiRequest* out) {
  MLA_RETURN_IF_API_ERROR(ParsePrompt(body, out));
  MLA_RETURN_IF_API_ERROR(body.Bool("echo", &out->echo));
  std::optional<int64_t> logprobs;
  MLA_RETURN_IF_API_ERROR(body.Int("logprobs", 0, kMaxLogprobs, &logprobs));
  if (logprobs.has_value()) {
    out->logprobs = static_cast<int>(*logprobs);
    // The engine's logprobs field is the number of alternatives; 0 would turn them off,
    // so the chosen token's own logprob always comes with at least one alternative.
    out->generate.set_logprobs(std::max(1, out->logprobs));
    if (out->echo) out->generate.set_prompt_logprobs(out->logprobs);
  }
  return std::nullopt;
}

Error ParseMessageContent(const Json& content, const std::string& field, std::string* text) {
  if (content.is_string()) {
    *text = content.get<std::string>();
    return std::nullopt;
  }
  if (!content.is_array()) return Bad(field, "must be a string or a list of text parts");
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string where = absl::StrCat(field, "[", i, "]");
    if (!part.is_object() || !IsText(part) || !part.contains("text") || !part["text"].is_string()) {
      return Bad(where, "only {\"type\": \"text\", \"text\": ...} parts are supported");
    }
    *text += part["text"].get<std::string>();
  }
  return std::nullopt;
}

Error ParseChatFields(const Body& body, OpenAiRequest* out) {
  const Json* messages = body.Get("messages");
  if (messages == nullptr) return Bad("messages", "is required");
  if (!messages->is_array() || messages->empty()) {
    return Bad("messages", "must be a non-empty list");
  }
  v1::ChatMessages* chat = out->generate.mutable_messages();
  chat->set_add_generation_prompt(true);
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Bad(where, "must be an object with role and content");
    for (const auto& [key, value] : m.items()) {
      if (key != "role" && key != "content" && !(key == "name" && value.is_null())) {
        return Bad(absl::StrCat(where, ".", key), "is not supported by this server");
      }
    }
    if (!m.contains("role") || !m["role"].is_string()) {
      return Bad(where + ".role", "must be a string");
    }
    v1::ChatMessage* message = chat->add_messages();
    message->set_role(m["role"].get<std::string>());
    if (m.contains("content") && !m["content"].is_null()) {
      MLA_RETURN_IF_API_ERROR(
          ParseMessageContent(m["content"], where + ".content", message->mutable_content()));
    }
  }
  bool logprobs = false;
  std::optional<int64_t> top;
  MLA_RETURN_IF_API_ERROR(body.Bool("logprobs", &logprobs));
  MLA_RETURN_IF_API_ERROR(body.Int("top_logprobs", 0, kMaxLogprobs, &top));
  if (top.has_value() && !logprobs) return Bad("top_logprobs", "needs logprobs: true");
  if (logprobs) {
    out->logprobs = static_cast<int>(top.value_or(0));
    out->generate.set_logprobs(std::max(1, out->logprobs));
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> ParseRequest(Endpoint endpoint, absl::string_view text,
                                     absl::string_view served_model, OpenAiRequest* out) {
  const Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return ApiError{400, "the request body is not valid JSON", "invalid_request_error", "", ""};
  if (!j.is_object())
    return ApiError{400, "the request body must be a JSON object", "invalid_request_error", "", ""};
  MLA_RETURN_IF_API_ERROR(CheckFields(endpoint, j));
  const Body body(j);
  out->endpoint = endpoint;
  MLA_RETURN_IF_API_ERROR(body.String("model", &out->model));
  if (body.Get("model") == nullptr) return Bad("model", "is required");
  if (out->model != served_model) {
    return ApiError{404,
                    absl::StrCat("The model '", out->model,
                                 "' does not exist: this server "
                                 "serves '",
                                 served_model, "'"),
                    "invalid_request_error", "model", "model_not_found"};
  }
  MLA_RETURN_IF_API_ERROR(ParseStreamFlags(body, out));
  MLA_RETURN_IF_API_ERROR(ParseSampling(body, endpoint, out));
  std::optional<int64_t> n;
  MLA_RETURN_IF_API_ERROR(body.Int("n", 1, kMaxChoices, &n));
  out->n = static_cast<int>(n.value_or(1));
  return endpoint == Endpoint::kCompletions ? ParseCompletionFields(body, out)
                                            : ParseChatFields(body, out);
}

ApiError FromStatus(const absl::Status& status, Endpoint endpoint) {
  ApiError e;
  std::string message(status.message());
  const std::string prompt = endpoint == Endpoint::kChat ? "messages" : "prompt";
  // The shared validation names proto fields; the client knows the OpenAI ones.
  const std::pair<absl::string_view, std::string> renames[] = {
      {"sampling.max_tokens", endpoint == Endpoint::kChat ? "max_completion_tokens" : "max_tokens"},
      {"sampling.stop", "stop"},
      {"sampling.", ""},
      {"token_ids.ids", prompt},
      {"token_ids", prompt},
      {"messages.messages", "messages"},
      {"text", "prompt"},
      {"prompt_logprobs", "logprobs"},
      {"logprobs", endpoint == Endpoint::kChat ? "top_logprobs" : "logprobs"}};
  for (const auto& [from, to] : renames) {
    if (absl::StartsWith(message, from)) {
      message = absl::StrCat(to, message.substr(from.size()));
      break;
    }
  }
  const size_t colon = message.find(": ");
  if (colon != std::string::npos && message.substr(0, colon).find(' ') == std::string::npos) {
    e.param = message.substr(0, colon);
  }
  e.message = std::move(message);
  if (absl::StrContains(e.message, "exceeds the model's context")) {
    e.code = "context_length_exceeded";
    e.param = prompt;
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      e.status = 400;
      break;
    case absl::StatusCode::kAlreadyExists:
      e.status = 409;
      break;
    case absl::StatusCode::kResourceExhausted:
      e.status = 429;
      e.type = "rate_limit_error";
      break;
    case absl::StatusCode::kUnavailable:
      e.status = 503;
      e.type = "server_error";
      break;
    default:
      e.status = 500;
      e.type = "server_error";
  }
  return e;
}

}  // namespace mla::openai
