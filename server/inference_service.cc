#include "server/inference_service.h"

#include "absl/strings/str_cat.h"
#include "server/generate_reactor.h"
#include "server/proto_convert.h"
#include "server/status_convert.h"

namespace mla {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

const grpc::Status kLoading(grpc::StatusCode::UNAVAILABLE, "the model is still loading");

// Finishes a server stream with an error before any message was written.
class ErrorWriter final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit ErrorWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

void InferenceService::SetReady(std::shared_ptr<Engine> engine) {
  auto text = std::make_shared<const TextSupport>(engine->tokenizer());
  absl::MutexLock lock(&mu_);
  text_ = std::move(text);
  engine_ = std::move(engine);
}

std::shared_ptr<Engine> InferenceService::engine() const {
  absl::MutexLock lock(&mu_);
  return engine_;
}

std::shared_ptr<const TextSupport> InferenceService::text() const {
  absl::MutexLock lock(&mu_);
  return text_;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return new ErrorWriter(kLoading);
  if (draining_.load()) {
    return new ErrorWriter(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "the server is draining: retry on another replica"));
  }
  // The slot is taken before the check, so that concurrent calls cannot overshoot the cap;
  // the reactor gives it back when it is done.
  const int before = active_streams_.fetch_add(1);
  if (const int cap = max_streams_.load(); cap > 0 && before >= cap) {
    active_streams_.fetch_sub(1);
    AddRetryHint(ctx, kStreamsFullRetryMs);
    return new ErrorWriter(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the server is at its limit of ", cap,
                     " concurrent Generate streams (--max_concurrent_streams); retry in ",
                     kStreamsFullRetryMs, " ms")));
  }
  GenerateReactor::Limits limits;
  limits.max_unread_tokens = max_unread_tokens_.load();
  limits.retry_after_ms = kStreamsFullRetryMs;
  return new GenerateReactor(e.get(), text().get(), ctx, *request, &active_streams_, limits);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx,
                                                  const v1::AbortRequest* request,
                                                  v1::AbortResponse* response) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return Finish(ctx, kLoading);
  if (request->request_id().empty()) {
    return Finish(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "request_id: must not be empty"));
  }
  if (!e->Abort(request->request_id())) {
    return Finish(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                    "request_id '" + request->request_id() + "' is not live"));
  }
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const v1::TokenizeRequest* request,
                                                     v1::TokenizeResponse* response) {
  if (!engine()) return Finish(ctx, kLoading);
  absl::StatusOr<std::vector<int32_t>> ids =
      text()->Tokenize(request->text(), request->add_special_tokens());
  if (!ids.ok()) return Finish(ctx, ToGrpcStatus(ids.status()));
  response->mutable_token_ids()->Add(ids->begin(), ids->end());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  if (!engine()) return Finish(ctx, kLoading);
  absl::StatusOr<std::string> text_out =
      text()->Detokenize(request->token_ids(), request->skip_special_tokens());
  if (!text_out.ok()) return Finish(ctx, ToGrpcStatus(text_out.status()));
  response->set_text(std::move(*text_out));
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest* request,
                                                         v1::ModelInfo* response) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return Finish(ctx, kLoading);
  FillModelInfo(e->info(), *text(), response);
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetLoad(grpc::CallbackServerContext* ctx,
                                                    const v1::GetLoadRequest* request,
                                                    v1::Load* response) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return Finish(ctx, kLoading);
  FillLoad(e->GetLoad(), response);
  return Finish(ctx, grpc::Status::OK);
}

}  // namespace mla
