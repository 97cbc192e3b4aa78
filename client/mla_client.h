// A small synchronous client library for mla.v1.Inference and grpc.health.v1.Health.
#ifndef MLA_CLIENT_MLA_CLIENT_H_
#define MLA_CLIENT_MLA_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mla/v1/inference.grpc.pb.h"

namespace mla {

struct ClientOptions {
  std::string target = "127.0.0.1:50051";
  std::string bearer_token;  // Sent as "authorization: Bearer <token>" when non-empty.
  std::chrono::milliseconds timeout{0};  // Per-call deadline; 0 = none.
  // TLS is used when `tls` is set or any TLS file is given.
  bool tls = false;
  std::string tls_ca_file;      // PEM roots that verify the server; empty = system roots.
  std::string tls_cert_file;    // PEM client certificate chain, for mutual TLS...
  std::string tls_key_file;     // ...and its private key.
  std::string tls_server_name;  // Name to verify in the server's certificate (default:
                                // the host of `target`).
};

// Channel credentials for `options`: insecure unless TLS is asked for. Errors name the
// option whose file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientOptions& options);

class MlaClient {
 public:
  // Reads the TLS files of `options` first; errors name the unreadable file.
  static absl::StatusOr<std::unique_ptr<MlaClient>> Create(ClientOptions options);
  // With TLS files that cannot be read, the channel still uses TLS without them (so
  // calls fail to verify rather than fall back to plaintext): prefer Create.
  explicit MlaClient(ClientOptions options);
  MlaClient(ClientOptions options, std::shared_ptr<grpc::ChannelCredentials> credentials);

  // The overall server health ("" service). Errors are transport errors.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health();
  absl::StatusOr<v1::ModelInfo> GetModelInfo();
  absl::StatusOr<v1::Load> GetLoad();
  absl::Status Abort(const std::string& request_id);
  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request);
  absl::StatusOr<v1::DetokenizeResponse> Detokenize(const v1::DetokenizeRequest& request);

  // Streams one generation; `on_message` sees every message as it arrives and may
  // return false to cancel the call. Returns the call's final status.
  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<bool(const v1::GenerateResponse&)>& on_message);

 private:
  void Prepare(grpc::ClientContext* ctx) const;

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace mla

#endif  // MLA_CLIENT_MLA_CLIENT_H_
