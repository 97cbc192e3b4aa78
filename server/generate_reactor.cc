#include "server/generate_reactor.h"

#include "engine/common/log.h"
#include "server/proto_convert.h"
#include "server/status_convert.h"

namespace mla {

GenerateReactor::GenerateReactor(Engine* engine, const v1::GenerateRequest& request)
    : engine_(engine), state_(std::make_shared<State>()) {
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
  }
  queue_.push_back(ToGenerateResponse(output));
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
  delete this;
}

}  // namespace mla
