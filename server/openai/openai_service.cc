#include "server/openai/openai_service.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/openai/completion_stream.h"
#include "server/openai/openai_response.h"
#include "server/security/token_auth.h"

namespace mla::openai {
namespace {

using Json = nlohmann::json;

ApiError Error(int status, std::string message, std::string type, std::string param = "",
               std::string code = "") {
  return ApiError{status, std::move(message), std::move(type), std::move(param), std::move(code)};
}

// The body as a JSON object, or an error answer.
std::optional<ApiError> ParseObject(const std::string& body, Json* out) {
  *out = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded())
    return Error(400, "the request body is not valid JSON", "invalid_request_error");
  if (!out->is_object())
    return Error(400, "the request body must be a JSON object", "invalid_request_error");
  return std::nullopt;
}

}  // namespace

void OpenAiService::SetReady(std::shared_ptr<Engine> engine,
                             std::shared_ptr<const TextSupport> text) {
  absl::MutexLock lock(&mu_);
  ready_ = Ready{std::move(engine), std::move(text)};
  created_ = absl::ToUnixSeconds(absl::Now());
}

std::vector<http::HttpRoute> OpenAiService::Routes() {
  auto route = [this](const char* method, const char* path, auto fn) {
    return http::HttpRoute{method, path, [this, fn](http::HttpRequest r, http::HttpResponder w) {
                             (this->*fn)(r, w);
                           }};
  };
  return {
      route("GET", "/v1/models", &OpenAiService::Models),
      http::HttpRoute{"POST", "/v1/completions",
                      [this](http::HttpRequest r, http::HttpResponder w) {
                        Complete(Endpoint::kCompletions, r, w);
                      }},
      http::HttpRoute{
          "POST", "/v1/chat/completions",
          [this](http::HttpRequest r, http::HttpResponder w) { Complete(Endpoint::kChat, r, w); }},
      route("POST", "/tokenize", &OpenAiService::Tokenize),
      route("POST", "/detokenize", &OpenAiService::Detokenize),
  };
}

http::HttpResponse OpenAiService::ErrorResponse(int status, absl::string_view message) {
  return http::HttpResponse{
      status,
      "application/json",
      ErrorBody(Error(status, std::string(message),
                      status >= 500 ? "server_error" : "invalid_request_error")),
      {}};
}

void OpenAiService::Reply(const http::HttpRequest& request, const http::HttpResponder& responder,
                          int status, std::string json, http::HttpHeaders headers) {
  responder.Respond(
      http::HttpResponse{status, "application/json", std::move(json), std::move(headers)});
  if (options_.metrics != nullptr) options_.metrics->RecordHttp(request.head.path, status);
}

void OpenAiService::ReplyError(const http::HttpRequest& request,
                               const http::HttpResponder& responder, const ApiError& error,
                               http::HttpHeaders headers) {
  Reply(request, responder, error.status, ErrorBody(error), std::move(headers));
}

std::unique_ptr<OpenAiService::Ready> OpenAiService::Admit(const http::HttpRequest& request,
                                                           const http::HttpResponder& responder,
                                                           bool generates) {
  if (!options_.tokens.empty()) {
    const absl::string_view header = request.head.Header("authorization");
    const std::optional<absl::string_view> token =
        header.empty() ? std::nullopt : security::ParseBearer(header);
    if (!token.has_value() || !security::TokenMatches(*token, options_.tokens)) {
      ReplyError(request, responder,
                 Error(401,
                       token.has_value() ? "invalid bearer token"
                                         : "missing bearer token: "
                                           "send 'Authorization: Bearer <token>'",
                       "invalid_request_error", "", "invalid_api_key"),
                 {{"WWW-Authenticate", "Bearer"}});
      return nullptr;
    }
  }
  const http::HttpHeaders retry = {{"Retry-After", std::to_string(options_.retry_after_s)}};
  auto ready = std::make_unique<Ready>();
  {
    absl::MutexLock lock(&mu_);
    *ready = ready_;
  }
  if (ready->engine == nullptr) {
    ReplyError(request, responder, Error(503, "the model is still loading", "server_error"), retry);
    return nullptr;
  }
  if (generates && draining_.load()) {
    ReplyError(request, responder,
               Error(503, "the server is draining: retry on another replica", "server_error"),
               retry);
    return nullptr;
  }
  return ready;
}

std::unique_ptr<OpenAiService::Ready> OpenAiService::AdmitJson(const http::HttpRequest& request,
                                                               const http::HttpResponder& responder,
                                                               nlohmann::json* body) {
  std::unique_ptr<Ready> ready = Admit(request, responder, false);
  if (ready == nullptr) return nullptr;
  if (std::optional<ApiError> error = ParseObject(request.body, body)) {
    ReplyError(request, responder, *error);
    return nullptr;
  }
  return ready;
}

void OpenAiService::Models(const http::HttpRequest& request, const http::HttpResponder& responder) {
  std::unique_ptr<Ready> ready = Admit(request, responder, false);
  if (ready == nullptr) return;
  const EngineInfo& info = ready->engine->info();
  int64_t created = 0;
  {
    absl::MutexLock lock(&mu_);
    created = created_;
  }
  const Json model = {{"id", info.model_name},
                      {"object", "model"},
                      {"created", created},
                      {"owned_by", "mla-serve"},
                      {"max_model_len", info.max_context}};
  Reply(request, responder, 200, Dump(Json{{"object", "list"}, {"data", Json::array({model})}}));
}

void OpenAiService::Complete(Endpoint endpoint, const http::HttpRequest& request,
                             const http::HttpResponder& responder) {
  std::unique_ptr<Ready> ready = Admit(request, responder, true);
  if (ready == nullptr) return;
  OpenAiRequest parsed;
  if (std::optional<ApiError> error =
          ParseRequest(endpoint, request.body, ready->engine->info().model_name, &parsed)) {
    return ReplyError(request, responder, *error);
  }
  CompletionStream::Context context;
  context.engine = ready->engine.get();
  context.text = ready->text.get();
  context.streams = options_.streams;
  context.max_streams = options_.max_streams;
  context.retry_after_s = options_.retry_after_s;
  if (options_.metrics != nullptr) {
    context.on_status = [metrics = options_.metrics, path = request.head.path](int status) {
      metrics->RecordHttp(path, status);
    };
  }
  CompletionStream::Start(context, std::move(parsed), responder);
}

void OpenAiService::Tokenize(const http::HttpRequest& request,
                             const http::HttpResponder& responder) {
  Json body;
  std::unique_ptr<Ready> ready = AdmitJson(request, responder, &body);
  if (ready == nullptr) return;
  if (!body.contains("prompt") || !body["prompt"].is_string()) {
    return ReplyError(request, responder,
                      Error(400, "prompt: must be a string", "invalid_request_error", "prompt"));
  }
  const Json add_special = body.value("add_special_tokens", Json(true));
  if (!add_special.is_boolean()) {
    return ReplyError(request, responder,
                      Error(400, "add_special_tokens: must be true or false",
                            "invalid_request_error", "add_special_tokens"));
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      ready->text->Tokenize(body["prompt"].get<std::string>(), add_special.get<bool>());
  if (!ids.ok())
    return ReplyError(request, responder, FromStatus(ids.status(), Endpoint::kCompletions));
  Reply(request, responder, 200,
        Dump(Json{{"tokens", *ids},
                  {"count", ids->size()},
                  {"max_model_len", ready->engine->info().max_context}}));
}

void OpenAiService::Detokenize(const http::HttpRequest& request,
                               const http::HttpResponder& responder) {
  Json body;
  std::unique_ptr<Ready> ready = AdmitJson(request, responder, &body);
  if (ready == nullptr) return;
  std::vector<int32_t> ids;
  const Json tokens = body.value("tokens", Json());
  bool valid = tokens.is_array();
  for (const Json& t : valid ? tokens : Json::array()) {
    valid = valid && t.is_number_integer() && t.get<int64_t>() >= 0 &&
            t.get<int64_t>() <= std::numeric_limits<int32_t>::max();
    if (valid) ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  if (!valid) {
    return ReplyError(
        request, responder,
        Error(400, "tokens: must be a list of token ids", "invalid_request_error", "tokens"));
  }
  absl::StatusOr<std::string> text = ready->text->Detokenize(ids, /*skip_special_tokens=*/true);
  if (!text.ok())
    return ReplyError(request, responder, FromStatus(text.status(), Endpoint::kCompletions));
  Reply(request, responder, 200, Dump(Json{{"prompt", *text}}));
}

}  // namespace mla::openai
