#include "server/inference_service.h"

#include "absl/strings/str_cat.h"
#include "server/generate_reactor.h"
#include "server/proto_convert.h"
#include "server/request_codec.h"
#include "server/status_convert.h"

namespace mla {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// Parses the request, runs `method` on it and serializes its response.
template <typename Request, typename Response, typename Method>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* raw_request,
                                   grpc::ByteBuffer* raw_response, Method method) {
  Request request;
  grpc::Status status = ParseRequest(*raw_request, &request);
  if (status.ok()) {
    Response response;
    status = method(request, &response);
    if (status.ok()) status = SerializeResponse(response, raw_response);
  }
  return Finish(ctx, status);
}

const grpc::Status kLoading(grpc::StatusCode::UNAVAILABLE, "the model is still loading");

// Finishes a server stream with an error before any message was written.
class ErrorWriter final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
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

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw_request) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return new ErrorWriter(kLoading);
  if (draining_.load()) {
    return new ErrorWriter(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "the server is draining: retry on another replica"));
  }
  v1::GenerateRequest request;
  if (grpc::Status s = ParseRequest(*raw_request, &request); !s.ok()) return new ErrorWriter(s);
  // The reactor gives the slot back when it is done.
  if (const int cap = max_streams_.load(); !streams_.TryEnter(cap)) {
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
  return new GenerateReactor(e.get(), text().get(), ctx, request, &streams_, limits);
}

void InferenceService::AbortAll() {
  std::shared_ptr<Engine> e = engine();
  if (!e) return;
  for (const std::string& id : streams_.RequestIds()) e->Abort(id);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  return RunUnary<v1::AbortRequest, v1::AbortResponse>(
      ctx, request, response, [this](const auto& r, auto* out) { return DoAbort(r, out); });
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return RunUnary<v1::TokenizeRequest, v1::TokenizeResponse>(
      ctx, request, response, [this](const auto& r, auto* out) { return DoTokenize(r, out); });
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return RunUnary<v1::DetokenizeRequest, v1::DetokenizeResponse>(
      ctx, request, response, [this](const auto& r, auto* out) { return DoDetokenize(r, out); });
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const grpc::ByteBuffer* request,
                                                         grpc::ByteBuffer* response) {
  return RunUnary<v1::GetModelInfoRequest, v1::ModelInfo>(
      ctx, request, response,
      [this](const auto& r, auto* out) { return DoGetModelInfo(r, out); });
}

grpc::ServerUnaryReactor* InferenceService::GetLoad(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return RunUnary<v1::GetLoadRequest, v1::Load>(
      ctx, request, response, [this](const auto& r, auto* out) { return DoGetLoad(r, out); });
}

grpc::Status InferenceService::DoAbort(const v1::AbortRequest& request, v1::AbortResponse*) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return kLoading;
  if (request.request_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request_id: must not be empty");
  }
  if (!e->Abort(request.request_id())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "request_id '" + request.request_id() + "' is not live");
  }
  return grpc::Status::OK;
}

grpc::Status InferenceService::DoTokenize(const v1::TokenizeRequest& request,
                                          v1::TokenizeResponse* response) {
  if (!engine()) return kLoading;
  absl::StatusOr<std::vector<int32_t>> ids =
      text()->Tokenize(request.text(), request.add_special_tokens());
  if (!ids.ok()) return ToGrpcStatus(ids.status());
  response->mutable_token_ids()->Add(ids->begin(), ids->end());
  return grpc::Status::OK;
}

grpc::Status InferenceService::DoDetokenize(const v1::DetokenizeRequest& request,
                                            v1::DetokenizeResponse* response) {
  if (!engine()) return kLoading;
  absl::StatusOr<std::string> text_out =
      text()->Detokenize(request.token_ids(), request.skip_special_tokens());
  if (!text_out.ok()) return ToGrpcStatus(text_out.status());
  response->set_text(std::move(*text_out));
  return grpc::Status::OK;
}

grpc::Status InferenceService::DoGetModelInfo(const v1::GetModelInfoRequest&,
                                              v1::ModelInfo* response) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return kLoading;
  FillModelInfo(e->info(), *text(), response);
  return grpc::Status::OK;
}

grpc::Status InferenceService::DoGetLoad(const v1::GetLoadRequest&, v1::Load* response) {
  std::shared_ptr<Engine> e = engine();
  if (!e) return kLoading;
  FillLoad(e->GetLoad(), response);
  return grpc::Status::OK;
}

}  // namespace mla
