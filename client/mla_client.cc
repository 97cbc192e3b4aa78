#include "client/mla_client.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "common/grpc_status.h"

namespace mla {

namespace {

// Reads a whole PEM file; `option` names it in errors.
absl::StatusOr<std::string> ReadPem(const char* option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  if (in) contents << in.rdbuf();
  if (!in || in.bad()) {
    return absl::InvalidArgumentError(std::string(option) + "=" + path + ": cannot be read");
  }
  return contents.str();
}

// TLS options from `options`; with `strict` false an unreadable file is left out.
absl::StatusOr<grpc::SslCredentialsOptions> SslOptions(const ClientOptions& options,
                                                       bool strict) {
  grpc::SslCredentialsOptions ssl;
  const std::pair<const char*, const std::string*> files[] = {
      {"tls_ca_file", &options.tls_ca_file},
      {"tls_cert_file", &options.tls_cert_file},
      {"tls_key_file", &options.tls_key_file}};
  std::string* fields[] = {&ssl.pem_root_certs, &ssl.pem_cert_chain, &ssl.pem_private_key};
  for (int i = 0; i < 3; ++i) {
    if (files[i].second->empty()) continue;
    absl::StatusOr<std::string> pem = ReadPem(files[i].first, *files[i].second);
    if (pem.ok()) {
      *fields[i] = std::move(*pem);
    } else if (strict) {
      return pem.status();
    }
  }
  if (strict && options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert_file and tls_key_file go together");
  }
  return ssl;
}

bool WantsTls(const ClientOptions& o) {
  return o.tls || !o.tls_ca_file.empty() || !o.tls_cert_file.empty() ||
         !o.tls_key_file.empty();
}

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options,
                                           std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args;
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.target, creds, args);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientOptions& options) {
  if (!WantsTls(options)) return grpc::InsecureChannelCredentials();
  absl::StatusOr<grpc::SslCredentialsOptions> ssl = SslOptions(options, /*strict=*/true);
  if (!ssl.ok()) return ssl.status();
  return grpc::SslCredentials(*ssl);
}

absl::StatusOr<std::unique_ptr<MlaClient>> MlaClient::Create(ClientOptions options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeChannelCredentials(options);
  if (!creds.ok()) return creds.status();
  return std::make_unique<MlaClient>(std::move(options), *std::move(creds));
}

MlaClient::MlaClient(ClientOptions options)
    : MlaClient(options, WantsTls(options)
                             ? grpc::SslCredentials(*SslOptions(options, /*strict=*/false))
                             : grpc::InsecureChannelCredentials()) {}

MlaClient::MlaClient(ClientOptions options, std::shared_ptr<grpc::ChannelCredentials> credentials)
    : options_(std::move(options)),
      channel_(MakeChannel(options_, std::move(credentials))),
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
