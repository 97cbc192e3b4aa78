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
                                   http::HttpResponder responder)
    : context_(context), request_(std::move(request)), responder_(std::move(responder)) {}

void CompletionStream::Start(const Context& context, OpenAiRequest request,
                             http::HttpResponder responder) {
  absl::StatusOr<GenerationRequest> converted =
      ToGenerationRequest(request.generate, *context.text);
  if (!converted.ok())
    return Reply(context, responder, FromStatus(converted.status(), request.endpoint));
  const http::HttpHeaders retry = {{"Retry-After", std::to_string(context.retry_after_s)}};
  // A slot per choice: each is an engine request, as a gRPC stream is.
  const int n = request.n;
  for (int taken = 0; taken < n; ++taken) {
    if (context.streams->TryEnter(context.max_streams)) continue;
    for (int i = 0; i < taken; ++i) context.streams->Leave("");
    return Reply(context, responder,
                 ApiError{429,
                          absl::StrCat("the server is at its limit of ", context.max_streams,
                                       " concurrent requests (a request of n choices takes n); "
                                       "retry in ",
                                       context.retry_after_s, " s"),
                          "rate_limit_error", "", ""},
                 retry);
  }
  const Endpoint endpoint = request.endpoint;
  const bool streamed = request.stream;
  auto stream = std::make_shared<CompletionStream>(context, std::move(request), responder);
  // Held across Submit so that the first outputs wait until the stream has their ids.
  absl::MutexLock lock(&stream->mu_);
  const std::string id = NewId(endpoint);
  const int64_t created = absl::ToUnixSeconds(absl::Now());
  const Tokenizer* tokenizer = context.text->tokenizer();
  const auto& stops = stream->request_.generate.sampling().stop();
  for (int i = 0; i < n; ++i) {
    Choice c;
    c.encoder = std::make_unique<ResponseEncoder>(stream->request_, tokenizer, id, created, i);
    if (tokenizer != nullptr) {
      c.text_stream = std::make_unique<TextStream>(
          tokenizer, std::vector<std::string>(stops.begin(), stops.end()));
    }
    stream->choices_.push_back(std::move(c));
  }
  stream->unfinished_ = n;
  converted->api = "openai";
  stream->prompt_ = converted->prompt;
  for (int i = 0; i < n; ++i) {
    GenerationRequest r = *converted;
    // The response's id names the engine request too (logs, Abort); choices add "-i".
    r.request_id = n == 1 ? id : absl::StrCat(id, "-", i);
    if (r.has_seed) r.sampling.seed += static_cast<uint64_t>(i);
    uint64_t serial = 0;
    absl::StatusOr<std::string> submitted = context.engine->Submit(
        r,
        [stream, i](GenerationOutput output) {
          stream->OnOutput(static_cast<size_t>(i), std::move(output));
        },
        &serial);
    if (!submitted.ok()) {
      // The choices not submitted give their slots back now; those submitted end as
      // aborted, and give theirs back as they end.
      for (int j = i; j < n; ++j) context.streams->Leave("");
      stream->choices_.resize(static_cast<size_t>(i));
      stream->done_ = true;
      stream->AbortUnfinished();
      if (IsBusy(submitted.status(), *context.engine, r)) {
        return Reply(context, responder, FromStatus(submitted.status(), endpoint), retry);
      }
      ApiError error = FromStatus(submitted.status(), endpoint);
      if (error.status == 429) error.status = 400;  // Never fits: retrying cannot help.
      error.type = "invalid_request_error";
      return Reply(context, responder, error);
    }
    Choice& c = stream->choices_[static_cast<size_t>(i)];
    c.request_id = *submitted;
    c.serial = serial;
    context.streams->AddRequest(*submitted);
  }
  if (streamed) {
    responder.StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    if (context.on_status) context.on_status(200);
  }
  std::vector<std::pair<std::string, uint64_t>> submissions;
  for (const Choice& c : stream->choices_) submissions.emplace_back(c.request_id, c.serial);
  responder.OnDisconnect([engine = context.engine, submissions] {
    for (const auto& [request_id, serial] : submissions) {
      engine->Abort(request_id, FinishReason::kAbort, serial);
    }
  });
}

void CompletionStream::OnOutput(size_t index, GenerationOutput output) {
  absl::MutexLock lock(&mu_);
  Choice& c = choices_[index];
  std::string text;
  if (c.text_stream != nullptr) {
    bool abort = false;
    text = c.text_stream->Apply(output, &abort);
    // As in GenerateReactor: the stop lands before the next step, so no token is
    // generated past it, and the engine reports a stop_sequence, not an abort.
    if (abort) context_.engine->Abort(c.request_id, FinishReason::kStopSequence, c.serial);
  }
  if (c.first_output) {
    c.first_output = false;
    if (request_.echo) c.encoder->AddPrompt(prompt_, output.prompt_logprobs);
  }
  c.encoder->AddTokens(output.tokens, output.logprobs, text);
  if (output.finished) {
    c.finished = true;
    --unfinished_;
    usage_.prompt_tokens = output.prompt_tokens;
    usage_.completion_tokens += output.completion_tokens;
    if (index == 0) usage_.cached_tokens = output.cached_prompt_tokens;
  }
  if (!done_) {
    if (output.finished) {
      EndChoice(c, output);
    } else if (request_.stream && !SendChunk(c, nullptr)) {
      // The client is gone or too far behind: the work stops now.
      done_ = true;
      AbortUnfinished();
    }
  }
  if (output.finished) context_.streams->Leave(c.request_id);
}

bool CompletionStream::SendChunk(Choice& c, const char* finish_reason) {
  const std::string chunk = c.encoder->TakeChunk(finish_reason);
  return chunk.empty() || responder_.Send(SseEvent(chunk));
}

void CompletionStream::AbortUnfinished() {
  for (const Choice& c : choices_) {
    if (!c.finished) context_.engine->Abort(c.request_id, FinishReason::kAbort, c.serial);
  }
}

void CompletionStream::EndChoice(Choice& c, const GenerationOutput& output) {
  if (!output.error.empty()) {
    done_ = true;
    AbortUnfinished();
    return Fail(ApiError{500, output.error, "server_error", "", ""});
  }
  if (output.reason == FinishReason::kAbort) {
    done_ = true;
    AbortUnfinished();
    return Fail(ApiError{503,
                         "the request was aborted before it finished (the server is "
                         "shutting down, or the client stopped reading)",
                         "server_error", "", ""});
  }
  c.finish_reason = FinishReasonName(output.reason);
  if (request_.stream && !SendChunk(c, c.finish_reason)) {
    done_ = true;
    AbortUnfinished();
    return;
  }
  if (unfinished_ == 0) AnswerWhole();
}

void CompletionStream::AnswerWhole() {
  done_ = true;
  if (!request_.stream) {
    std::vector<const ResponseEncoder*> encoders;
    std::vector<const char*> reasons;
    for (const Choice& c : choices_) {
      encoders.push_back(c.encoder.get());
      reasons.push_back(c.finish_reason);
    }
    responder_.Respond(http::HttpResponse{
        200, std::string(kJson), ResponseEncoder::WholeOfChoices(encoders, reasons, usage_), {}});
    if (context_.on_status) context_.on_status(200);
    return;
  }
  if (request_.include_usage) {
    responder_.Send(SseEvent(choices_.front().encoder->UsageChunk(usage_)));
  }
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
