// The OpenAI-compatible HTTP API, served beside gRPC on --http_address:
//   GET  /v1/models            the served model, with its context length
//   POST /v1/completions       a prompt (text or token ids) → completion, streamed or not
//   POST /v1/chat/completions  chat messages (the model's chat template) → completion
//   POST /tokenize, /detokenize  vLLM's shapes, for clients that count tokens (mla-recall)
// It shares the gRPC service's engine, text support, stream registry (one cap, one drain)
// and bearer tokens; requests reach the engine through the same conversion and checks.
#ifndef MLA_SERVER_OPENAI_OPENAI_SERVICE_H_
#define MLA_SERVER_OPENAI_OPENAI_SERVICE_H_

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "server/http/http_server.h"
#include "server/metrics/serving_metrics.h"
#include "server/openai/openai_request.h"
#include "server/stream_registry.h"
#include "server/text_support.h"

namespace mla::openai {

struct OpenAiServiceOptions {
  std::vector<std::string> tokens;             // Bearer tokens; empty: no authentication.
  StreamRegistry* streams = nullptr;           // Required; must outlive the service.
  int max_streams = 0;                         // Cap on streams' active count (0 = none).
  int retry_after_s = 1;                       // Retry-After of 429 and 503 answers.
  metrics::ServingMetrics* metrics = nullptr;  // May be null.
};

class OpenAiService {
 public:
  explicit OpenAiService(OpenAiServiceOptions options) : options_(std::move(options)) {}

  // Until called, every route answers 503 (the model is loading).
  void SetReady(std::shared_ptr<Engine> engine, std::shared_ptr<const TextSupport> text);
  // From now on completions answer 503 with Retry-After; other routes keep working.
  void SetDraining() { draining_.store(true); }

  // The routes to serve. The service must outlive the server that serves them.
  std::vector<http::HttpRoute> Routes();
  // For HttpServerOptions::error_response: the HTTP server's own answers (413, 404, ...)
  // in OpenAI's error shape.
  static http::HttpResponse ErrorResponse(int status, absl::string_view message);

 private:
  struct Ready {
    std::shared_ptr<Engine> engine;
    std::shared_ptr<const TextSupport> text;
  };
  // Authentication and readiness (and, for `generates`, the drain); answers and returns
  // null when the request may not proceed.
  std::unique_ptr<Ready> Admit(const http::HttpRequest& request,
                               const http::HttpResponder& responder, bool generates);
  // Admit (not generating), then the body as a JSON object.
  std::unique_ptr<Ready> AdmitJson(const http::HttpRequest& request,
                                   const http::HttpResponder& responder, nlohmann::json* body);
  void Reply(const http::HttpRequest& request, const http::HttpResponder& responder, int status,
             std::string json, http::HttpHeaders headers = {});
  void ReplyError(const http::HttpRequest& request, const http::HttpResponder& responder,
                  const ApiError& error, http::HttpHeaders headers = {});

  void Models(const http::HttpRequest& request, const http::HttpResponder& responder);
  void Complete(Endpoint endpoint, const http::HttpRequest& request,
                const http::HttpResponder& responder);
  void Tokenize(const http::HttpRequest& request, const http::HttpResponder& responder);
  void Detokenize(const http::HttpRequest& request, const http::HttpResponder& responder);

  const OpenAiServiceOptions options_;
  std::atomic<bool> draining_{false};
  mutable absl::Mutex mu_;
  Ready ready_ ABSL_GUARDED_BY(mu_);
  int64_t created_ ABSL_GUARDED_BY(mu_) = 0;  // When the model became ready (Unix s).
};

}  // namespace mla::openai

#endif  // MLA_SERVER_OPENAI_OPENAI_SERVICE_H_
