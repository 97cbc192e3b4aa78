#include "server/inference_service.h"

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
                                "the model directory has no tokenizer.json: send token ids");

// Finishes a server stream with an error before any message was written.
class ErrorWriter final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit ErrorWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

void InferenceService::SetReady(std::shared_ptr<const EngineInfo> info) {
  absl::MutexLock lock(&mu_);
  info_ = std::move(info);
}

std::shared_ptr<const EngineInfo> InferenceService::info() const {
  absl::MutexLock lock(&mu_);
  return info_;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  if (!info()) return new ErrorWriter(kLoading);
  return new ErrorWriter(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                      "Generate is not implemented yet: the engine is not built"));
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx,
                                                  const v1::AbortRequest* request,
                                                  v1::AbortResponse* response) {
  if (!info()) return Finish(ctx, kLoading);
  return Finish(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                  "request_id '" + request->request_id() + "' is not live"));
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const v1::TokenizeRequest* request,
                                                     v1::TokenizeResponse* response) {
  if (!info()) return Finish(ctx, kLoading);
  return Finish(ctx, kNoTokenizer);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  if (!info()) return Finish(ctx, kLoading);
  return Finish(ctx, kNoTokenizer);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest* request,
                                                         v1::ModelInfo* response) {
  std::shared_ptr<const EngineInfo> i = info();
  if (!i) return Finish(ctx, kLoading);
  FillModelInfo(*i, response);
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetLoad(grpc::CallbackServerContext* ctx,
                                                    const v1::GetLoadRequest* request,
                                                    v1::Load* response) {
  std::shared_ptr<const EngineInfo> i = info();
  if (!i) return Finish(ctx, kLoading);
  response->set_kv_blocks_total(i->kv_num_blocks);
  response->set_kv_blocks_free(i->kv_num_blocks);
  response->set_kv_bytes_total(i->kv_num_blocks * i->kv_block_size * i->kv_bytes_per_token);
  return Finish(ctx, grpc::Status::OK);
}

}  // namespace mla
