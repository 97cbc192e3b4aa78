// One /v1/completions or /v1/chat/completions request in flight: the OpenAI front end's
// counterpart of GenerateReactor. It submits the request to the engine, turns the
// engine's outputs into text (stop strings applied by TextStream, exactly as over gRPC)
// and answers through an HttpResponder: Server-Sent Event chunks as tokens come, or one
// JSON object at the end. A client that disconnects, or stops reading for longer than the
// server's unsent-bytes bound, aborts the engine request at once, freeing its blocks.
#ifndef MLA_SERVER_OPENAI_COMPLETION_STREAM_H_
#define MLA_SERVER_OPENAI_COMPLETION_STREAM_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "server/http/http_server.h"
#include "server/openai/openai_request.h"
#include "server/openai/openai_response.h"
#include "server/stream_registry.h"
#include "server/text_stream.h"
#include "server/text_support.h"

namespace mla::openai {

class CompletionStream {
 public:
  struct Context {
    Engine* engine;           // Must outlive every request (the server stops first).
    const TextSupport* text;  // Likewise.
    StreamRegistry* streams;  // Shared with the gRPC service: one cap, one drain.
    int max_streams = 0;      // The registry's cap (0 = none).
    int retry_after_s = 1;    // Suggested back-off when refused for load.
    // Called once with the HTTP status the request was answered with (metrics).
    std::function<void(int status)> on_status;
  };

  // Validates, submits and answers `request`; errors are answered at once.
  static void Start(const Context& context, OpenAiRequest request, http::HttpResponder responder);

  CompletionStream(const Context& context, OpenAiRequest request, http::HttpResponder responder,
                   std::unique_ptr<TextStream> text_stream);

 private:
  void OnOutput(GenerationOutput output);  // Engine thread.
  // Streaming: the next chunk (if any); false when the client is gone.
  bool SendChunk(const char* finish_reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(const GenerationOutput& output) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(const ApiError& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Context context_;
  const OpenAiRequest request_;
  const http::HttpResponder responder_;
  std::string request_id_;
  uint64_t serial_ = 0;  // Engine::Submit's serial: aborts name this submission only.
  std::vector<int32_t> prompt_;  // For echo.
  absl::Mutex mu_;
  std::unique_ptr<TextStream> text_stream_ ABSL_GUARDED_BY(mu_);  // Null without a tokenizer.
  ResponseEncoder encoder_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool first_output_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace mla::openai

#endif  // MLA_SERVER_OPENAI_COMPLETION_STREAM_H_
