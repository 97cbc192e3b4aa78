#include "server/generate_reactor.h"

#include "engine/common/log.h"
#include "server/proto_convert.h"
#include "server/request_codec.h"
#include "server/status_convert.h"

namespace mla {
namespace {

// Appends `next` (a later message of the same stream) to `into`.
void MergeInto(v1::GenerateResponse& into, const v1::GenerateResponse& next) {
  into.mutable_token_ids()->MergeFrom(next.token_ids());
  into.mutable_logprobs()->MergeFrom(next.logprobs());
  into.mutable_prompt_logprobs()->MergeFrom(next.prompt_logprobs());
  into.mutable_text()->append(next.text());
  if (next.has_finished()) *into.mutable_finished() = next.finished();
}

const char* ReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kStopSequence: return "stop_sequence";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return "none";
}

// One structured line per finished request; never the prompt or output text.
void LogFinished(const GenerationOutput& o) {
  LogInfo("request_finished id=", LogQuoted(o.request_id), " reason=", ReasonName(o.reason),
          " error=", o.error.empty() ? "none" : LogQuoted(o.error),
          " prompt_tokens=", o.prompt_tokens, " cached_prompt_tokens=", o.cached_prompt_tokens,
          " completion_tokens=", o.completion_tokens, " queue_s=", o.queue_seconds,
          " ttft_s=", o.time_to_first_token_seconds, " total_s=", o.total_seconds);
}

}  // namespace

GenerateReactor::GenerateReactor(Engine* engine, const TextSupport* text,
                                 grpc::CallbackServerContext* ctx,
                                 const v1::GenerateRequest& request,
                                 StreamRegistry* streams, const Limits& limits)
    : engine_(engine),
      streams_(streams),
      max_unread_tokens_(limits.max_unread_tokens),
      state_(std::make_shared<State>()) {
  absl::StatusOr<GenerationRequest> converted = ToGenerationRequest(request, *text);
  if (!converted.ok()) {
    done_ = true;
    Finish(ToGrpcStatus(converted.status()));
    return;
  }
  if (text->tokenizer() != nullptr) {
    const auto& stops = request.sampling().stop();
    text_stream_ = std::make_unique<TextStream>(
        text->tokenizer(), std::vector<std::string>(stops.begin(), stops.end()));
  }
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
  }
  std::weak_ptr<State> weak = state_;
  uint64_t serial = 0;
  absl::StatusOr<std::string> id = engine_->Submit(
      std::move(*converted),
      [weak](GenerationOutput output) {
        std::shared_ptr<State> state = weak.lock();
        if (!state) return;
        absl::MutexLock lock(&state->mu);
        if (state->reactor != nullptr) state->reactor->Enqueue(std::move(output));
      },
      &serial);
  absl::MutexLock lock(&mu_);
  if (!id.ok()) {
    done_ = true;
    if (id.status().code() == absl::StatusCode::kResourceExhausted) {
      AddRetryHint(ctx, limits.retry_after_ms);  // Trailers go before Finish.
    }
    Finish(ToGrpcStatus(id.status()));
    return;
  }
  request_id_ = *id;
  serial_ = serial;
  streams_->AddRequest(request_id_);
}

std::string GenerateReactor::ApplyText(GenerationOutput& output) {
  bool abort = false;
  std::string text = text_stream_->Apply(output, &abort);
  // Runs on the engine thread between steps: the abort lands before the next step, so
  // no token is generated past the stop and the blocks are freed at once.
  // The engine then finishes it as a stop_sequence (metrics count it so), not an abort.
  if (abort) {
    engine_->Abort(output.request_id, FinishReason::kStopSequence, output.serial);
    aborted_ = true;
  }
  return text;
}

void GenerateReactor::Enqueue(GenerationOutput output) {
  absl::MutexLock lock(&mu_);
  if (done_) return;
  // The engine may emit before Submit has returned its id to the constructor; an abort
  // issued in that window with an empty id would leave the request running.
  if (request_id_.empty()) {
    request_id_ = output.request_id;
    serial_ = output.serial;
  }
  std::string text;
  if (text_stream_ != nullptr) text = ApplyText(output);
  if (output.finished) {
    finished_ = true;
    if (!output.error.empty()) {
      final_status_ = grpc::Status(grpc::StatusCode::INTERNAL, output.error);
    }
    LogFinished(output);
  }
  v1::GenerateResponse message = ToGenerateResponse(output);
  message.set_text(std::move(text));
  if (text_stream_ != nullptr && output.reason == FinishReason::kStopSequence) {
    message.mutable_finished()->set_stop_sequence(text_stream_->stop_sequence());
  }
  // Outputs whose tokens all came after a stop string leave nothing to send.
  if (!output.finished && message.token_ids().empty() && message.text().empty() &&
      message.prompt_logprobs().empty()) {
    return;
  }
  // One write is in flight and one message waits behind it at most: new tokens join the
  // waiting message, so a slow reader costs memory only for its unread tokens.
  if (queue_.size() >= 2) {
    MergeInto(queue_.back(), message);
    if (queue_.back().token_ids_size() > max_unread_tokens_ && !finished_) {
      LogWarning("request ", LogQuoted(request_id_), ": the client stopped reading (", max_unread_tokens_,
                 " tokens unread); aborting it");
      AbortLocked();
      final_status_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "the client is not reading its stream: request aborted");
      queue_.pop_back();
      finished_ = true;
    }
  } else {
    queue_.push_back(std::move(message));
  }
  WriteNextLocked();
}

void GenerateReactor::AbortLocked() {
  // Once only, and never after the last output: by then the engine has released the id,
  // and a client may have reused it for a new request that a late abort from this call
  // would kill (a write that fails after a deadline already cancelled the call did). The
  // serial covers the rest: the engine releases the id just before the last output.
  if (aborted_ || finished_ || request_id_.empty()) return;
  aborted_ = true;
  engine_->Abort(request_id_, FinishReason::kAbort, serial_);
}

void GenerateReactor::WriteNextLocked() {
  if (writing_ || done_) return;
  if (!queue_.empty()) {
    if (grpc::Status s = SerializeResponse(queue_.front(), &write_buffer_); !s.ok()) {
      AbortLocked();
      done_ = true;
      Finish(s);
      return;
    }
    writing_ = true;
    StartWrite(&write_buffer_);
  } else if (finished_) {
    done_ = true;
    Finish(final_status_);
  }
}

void GenerateReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) {
    // The stream broke (client gone): stop the work and end the call.
    AbortLocked();
    if (!done_) {
      done_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed"));
    }
    return;
  }
  queue_.pop_front();
  WriteNextLocked();
}

void GenerateReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  AbortLocked();
  if (!done_ && !writing_) {
    done_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
  }
}

void GenerateReactor::OnDone() {
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = nullptr;
  }
  StreamRegistry* streams = streams_;
  const std::string request_id = std::move(request_id_);
  delete this;
  streams->Leave(request_id);
}

}  // namespace mla
