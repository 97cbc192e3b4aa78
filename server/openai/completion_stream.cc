#include "server/openai/completion_stream.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/common/log.h"
#include "server/proto_convert.h"

namespace mla::openai {
namespace {

constexpr absl::string_view kJson = "application/json";

void Reply(const CompletionStream::Context& context, const http::HttpResponder& responder,
           const ApiError& error, http::HttpHeaders headers = {}) {
  responder.Respond(
      http::HttpResponse{error.status, std::string(kJson), ErrorBody(error), std::move(headers)});
  if (context.on_status) context.on_status(error.status);
}

// A fresh id, used both as the engine's request id (so logs and Abort name it) and as
// the response's id, as OpenAI's "cmpl-..." / "chatcmpl-...".
std::string NewId(Endpoint endpoint) {
  absl::BitGen gen;
  return absl::StrFormat("%s-%016x%08x", endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl",
                         absl::Uniform<uint64_t>(gen), absl::Uniform<uint32_t>(gen));
}

// Refused for load (the engine's waiting queue is full) rather than for the request
// itself (it could never fit in the cache): the first is worth retrying.
bool IsBusy(const absl::Status& status, const Engine& engine, const GenerationRequest& r) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return false;
  const EngineInfo& info = engine.info();
  const int64_t need = static_cast<int64_t>(r.prompt.size()) + std::max(r.max_tokens, 1);
  return need <= int64_t{info.kv_num_blocks} * info.kv_block_size;
}

}  // namespace

CompletionStream::CompletionStream(const Context& context, OpenAiRequest request,
                                   http::HttpResponder responder,
                                   std::unique_ptr<TextStream> text_stream)
    : context_(context),
      request_(std::move(request)),
      responder_(std::move(responder)),
      text_stream_(std::move(text_stream)),
      encoder_(request_, context.text->tokenizer(), NewId(request_.endpoint),
               absl::ToUnixSeconds(absl::Now())) {}

void CompletionStream::Start(const Context& context, OpenAiRequest request,
                             http::HttpResponder responder) {
  absl::StatusOr<GenerationRequest> converted =
      ToGenerationRequest(request.generate, *context.text);
  if (!converted.ok())
    return Reply(context, responder, FromStatus(converted.status(), request.endpoint));
  const http::HttpHeaders retry = {{"Retry-After", std::to_string(context.retry_after_s)}};
  if (!context.streams->TryEnter(context.max_streams)) {
    return Reply(
        context, responder,
        ApiError{429,
                 absl::StrCat("the server is at its limit of ", context.max_streams,
                              " concurrent requests; retry in ", context.retry_after_s, " s"),
                 "rate_limit_error", "", ""},
        retry);
  }
  std::unique_ptr<TextStream> text_stream;
  if (const Tokenizer* tokenizer = context.text->tokenizer(); tokenizer != nullptr) {
    const auto& stops = request.generate.sampling().stop();
    text_stream = std::make_unique<TextStream>(
        tokenizer, std::vector<std::string>(stops.begin(), stops.end()));
  }
  const Endpoint endpoint = request.endpoint;
  const bool streamed = request.stream;
  auto stream = std::make_shared<CompletionStream>(context, std::move(request), responder,
                                                   std::move(text_stream));
  // Held across Submit so that the first output waits until the stream has its id.
  absl::MutexLock lock(&stream->mu_);
  converted->api = "openai";
  converted->request_id = stream->encoder_.id();
  stream->prompt_ = converted->prompt;
  const GenerationRequest copy_for_errors = *converted;
  uint64_t serial = 0;
  absl::StatusOr<std::string> id = context.engine->Submit(
      std::move(*converted),
      [stream](GenerationOutput output) { stream->OnOutput(std::move(output)); }, &serial);
  if (!id.ok()) {
    context.streams->Leave("");
    stream->done_ = true;
    if (IsBusy(id.status(), *context.engine, copy_for_errors)) {
      return Reply(context, responder, FromStatus(id.status(), endpoint), retry);
    }
    ApiError error = FromStatus(id.status(), endpoint);
    if (error.status == 429) error.status = 400;  // Never fits: retrying cannot help.
    error.type = "invalid_request_error";
    return Reply(context, responder, error);
  }
  stream->request_id_ = *id;
  stream->serial_ = serial;
  context.streams->AddRequest(*id);
  if (streamed) {
    responder.StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    if (context.on_status) context.on_status(200);
  }
  responder.OnDisconnect([engine = context.engine, id = *id, serial] {
    engine->Abort(id, FinishReason::kAbort, serial);
  });
}

void CompletionStream::OnOutput(GenerationOutput output) {
  absl::MutexLock lock(&mu_);
  std::string text;
  if (text_stream_ != nullptr) {
    bool abort = false;
    text = text_stream_->Apply(output, &abort);
    // As in GenerateReactor: the stop lands before the next step, so no token is
    // generated past it, and the engine reports a stop_sequence, not an abort.
    if (abort) context_.engine->Abort(request_id_, FinishReason::kStopSequence, serial_);
  }
  if (first_output_) {
    first_output_ = false;
    if (request_.echo) encoder_.AddPrompt(prompt_, output.prompt_logprobs);
  }
  encoder_.AddTokens(output.tokens, output.logprobs, text);
  if (!done_) {
    if (output.finished) {
      Finish(output);
    } else if (request_.stream && !SendChunk(nullptr)) {
      // The client is gone or too far behind: the work stops now.
      context_.engine->Abort(request_id_, FinishReason::kAbort, serial_);
      done_ = true;
    }
  }
  if (output.finished) context_.streams->Leave(request_id_);
}

bool CompletionStream::SendChunk(const char* finish_reason) {
  const std::string chunk = encoder_.TakeChunk(finish_reason);
  return chunk.empty() || responder_.Send(SseEvent(chunk));
}

void CompletionStream::Finish(const GenerationOutput& output) {
  done_ = true;
  if (!output.error.empty()) {
    return Fail(ApiError{500, output.error, "server_error", "", ""});
  }
  if (output.reason == FinishReason::kAbort) {
    return Fail(ApiError{503,
                         "the request was aborted before it finished (the server is "
                         "shutting down, or the client stopped reading)",
                         "server_error", "", ""});
  }
  const Usage usage{output.prompt_tokens, output.completion_tokens, output.cached_prompt_tokens};
  const char* reason = FinishReasonName(output.reason);
  if (!request_.stream) {
    responder_.Respond(
        http::HttpResponse{200, std::string(kJson), encoder_.Whole(reason, usage), {}});
    if (context_.on_status) context_.on_status(200);
    return;
  }
  SendChunk(reason);
  if (request_.include_usage) responder_.Send(SseEvent(encoder_.UsageChunk(usage)));
  responder_.Send(kSseDone);
  responder_.End();
}

void CompletionStream::Fail(const ApiError& error) {
  if (!request_.stream) return Reply(context_, responder_, error);
  // The status line went out with the first chunk: the error travels as an event.
  responder_.Send(SseEvent(ErrorBody(error)));
  responder_.Send(kSseDone);
  responder_.End();
}

}  // namespace mla::openai
