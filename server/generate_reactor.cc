#include "server/generate_reactor.h"

#include "engine/common/log.h"
#include "server/proto_convert.h"
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
  LogInfo("request_finished id=", o.request_id, " reason=", ReasonName(o.reason),
          " error=", o.error.empty() ? "none" : "\"" + o.error + "\"",
          " prompt_tokens=", o.prompt_tokens, " cached_prompt_tokens=", o.cached_prompt_tokens,
          " completion_tokens=", o.completion_tokens, " queue_s=", o.queue_seconds,
          " ttft_s=", o.time_to_first_token_seconds, " total_s=", o.total_seconds);
}

}  // namespace

GenerateReactor::GenerateReactor(Engine* engine, const v1::GenerateRequest& request,
                                 std::atomic<int>* active_streams)
    : engine_(engine), active_streams_(active_streams), state_(std::make_shared<State>()) {
  active_streams_->fetch_add(1);
  absl::StatusOr<GenerationRequest> converted = ToGenerationRequest(request);
  if (!converted.ok()) {
    done_ = true;
    Finish(ToGrpcStatus(converted.status()));
    return;
  }
  {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
  }
  std::weak_ptr<State> weak = state_;
  absl::StatusOr<std::string> id =
      engine_->Submit(std::move(*converted), [weak](GenerationOutput output) {
        std::shared_ptr<State> state = weak.lock();
        if (!state) return;
        absl::MutexLock lock(&state->mu);
        if (state->reactor != nullptr) state->reactor->Enqueue(std::move(output));
      });
  absl::MutexLock lock(&mu_);
  if (!id.ok()) {
    done_ = true;
    Finish(ToGrpcStatus(id.status()));
    return;
  }
  request_id_ = *id;
}

void GenerateReactor::Enqueue(GenerationOutput output) {
  absl::MutexLock lock(&mu_);
  if (done_) return;
  if (output.finished) {
    finished_ = true;
    if (!output.error.empty()) {
      final_status_ = grpc::Status(grpc::StatusCode::INTERNAL, output.error);
    }
    LogFinished(output);
  }
  v1::GenerateResponse message = ToGenerateResponse(output);
  // One write is in flight and one message waits behind it at most: new tokens join the
  // waiting message, so a slow reader costs memory only for its unread tokens.
  if (queue_.size() >= 2) {
    MergeInto(queue_.back(), message);
    if (queue_.back().token_ids_size() > kMaxUnreadTokens && !finished_) {
      LogWarning("request ", request_id_, ": the client stopped reading (", kMaxUnreadTokens,
                 " tokens unread); aborting it");
      engine_->Abort(request_id_);
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

void GenerateReactor::WriteNextLocked() {
  if (writing_ || done_) return;
  if (!queue_.empty()) {
    writing_ = true;
    StartWrite(&queue_.front());
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
    engine_->Abort(request_id_);
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
  if (!request_id_.empty()) engine_->Abort(request_id_);
  absl::MutexLock lock(&mu_);
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
  std::atomic<int>* active = active_streams_;
  delete this;
  active->fetch_sub(1);
}

}  // namespace mla
