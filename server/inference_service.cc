#include "server/inference_service.h"

#include "server/generate_reactor.h"
#include "server/proto_convert.h"

namespace mla {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

const grpc::Status kLoading(grpc::StatusCode::UNAVAILABLE, "the model is still loading");
const grpc::Status kNoTokenizer(grpc::StatusCode::FAILED_PRECONDITION,
                                "no tokenizer is loaded for this model: send token ids");

// Finishes a server stream with an error before any message was written.
class ErrorWriter final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit ErrorWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

void InferenceService::SetReady(std::shared_ptr<Engine> engine) {
  absl::MutexLock lock(&mu_);
  engine_ = std::move(engine);
}

std::shared_ptr<Engine> InferenceService::engine() const {
  absl::MutexLock lock(&mu_);
  return engine_;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return new ErrorWriter(kLoading);
  if (draining_.load()) {
    return new ErrorWriter(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "the server is draining: retry on another replica"));
  }
  return new GenerateReactor(e.get(), *request, &active_streams_);
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
  return Finish(ctx, kNoTokenizer);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  if (!engine()) return Finish(ctx, kLoading);
  return Finish(ctx, kNoTokenizer);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest* request,
                                                         v1::ModelInfo* response) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return Finish(ctx, kLoading);
  FillModelInfo(e->info(), response);
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
