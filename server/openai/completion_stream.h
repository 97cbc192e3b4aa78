// One /v1/completions or /v1/chat/completions request in flight: the OpenAI front end's
// counterpart of GenerateReactor. It submits the request to the engine (n choices: n
// engine requests on the same prompt), turns the engine's outputs into text (stop
// strings applied by TextStream, exactly as over gRPC) and answers through an
// HttpResponder: Server-Sent Event chunks as tokens come (each naming its choice), or one
// JSON object once every choice has finished. A client that disconnects, or stops reading
// for longer than the server's unsent-bytes bound, aborts every engine request at once,
// freeing their blocks; so does one choice that fails.
#ifndef MLA_SERVER_OPENAI_COMPLETION_STREAM_H_
#define MLA_SERVER_OPENAI_COMPLETION_STREAM_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

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

  CompletionStream(const Context& context, OpenAiRequest request, http::HttpResponder responder);

 private:
  // One of the request's choices: its engine request, stop strings and encoding.
  struct Choice {
    std::string request_id;
    uint64_t serial = 0;  // Engine::Submit's serial: aborts name this submission only.
    std::unique_ptr<TextStream> text_stream;  // Null without a tokenizer.
    std::unique_ptr<ResponseEncoder> encoder;
    bool first_output = true;
    bool finished = false;
    const char* finish_reason = nullptr;
  };

  void OnOutput(size_t index, GenerationOutput output);  // Engine thread.
  // Streaming: choice c's next chunk (if any); false when the client is gone.
  bool SendChunk(Choice& c, const char* finish_reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Choice c ended as `output` says: an error fails the request, the last one answers it.
  void EndChoice(Choice& c, const GenerationOutput& output) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerWhole() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(const ApiError& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbortUnfinished() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Context context_;
  const OpenAiRequest request_;
  const http::HttpResponder responder_;
  std::vector<int32_t> prompt_;  // For echo.
  absl::Mutex mu_;
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
  int unfinished_ ABSL_GUARDED_BY(mu_) = 0;
  Usage usage_ ABSL_GUARDED_BY(mu_);        // The prompt once, the choices' completions summed.
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // Answered (or failed): later outputs only end.
};

}  // namespace mla::openai

#endif  // MLA_SERVER_OPENAI_COMPLETION_STREAM_H_
