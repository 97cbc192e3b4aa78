#include "client/mla_client.h"

#include "server/status_convert.h"

namespace mla {

MlaClient::MlaClient(ClientOptions options)
    : options_(std::move(options)),
      channel_(grpc::CreateChannel(options_.target, grpc::InsecureChannelCredentials())),
      stub_(v1::Inference::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

void MlaClient::Prepare(grpc::ClientContext* ctx) const {
  if (!options_.bearer_token.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  if (options_.timeout.count() > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() + options_.timeout);
  }
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> MlaClient::Health() {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = health_->Check(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response.status();
}

absl::StatusOr<v1::ModelInfo> MlaClient::GetModelInfo() {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::ModelInfo info;
  grpc::Status s = stub_->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
  if (!s.ok()) return FromGrpcStatus(s);
  return info;
}

absl::StatusOr<v1::Load> MlaClient::GetLoad() {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::Load load;
  grpc::Status s = stub_->GetLoad(&ctx, v1::GetLoadRequest(), &load);
  if (!s.ok()) return FromGrpcStatus(s);
  return load;
}

absl::Status MlaClient::Abort(const std::string& request_id) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::AbortRequest request;
  request.set_request_id(request_id);
  v1::AbortResponse response;
  return FromGrpcStatus(stub_->Abort(&ctx, request, &response));
}

absl::StatusOr<v1::TokenizeResponse> MlaClient::Tokenize(const v1::TokenizeRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::TokenizeResponse response;
  grpc::Status s = stub_->Tokenize(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<v1::DetokenizeResponse> MlaClient::Detokenize(
    const v1::DetokenizeRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::DetokenizeResponse response;
  grpc::Status s = stub_->Detokenize(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::Status MlaClient::Generate(
    const v1::GenerateRequest& request,
    const std::function<bool(const v1::GenerateResponse&)>& on_message) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub_->Generate(&ctx, request);
  v1::GenerateResponse message;
  while (reader->Read(&message)) {
    if (!on_message(message)) {
      ctx.TryCancel();
      break;
    }
  }
  return FromGrpcStatus(reader->Finish());
}

}  // namespace mla
