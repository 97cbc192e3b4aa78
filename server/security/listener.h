// The gRPC listener's flags: TLS / mutual TLS, bearer tokens, keepalive and stream
// limits. server_main calls ConfigureListener instead of AddListeningPort.
#ifndef MLA_SERVER_SECURITY_LISTENER_H_
#define MLA_SERVER_SECURITY_LISTENER_H_

#include <grpcpp/server_builder.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mla::security {

// Adds the listening port on `address` with the credentials that --tls_cert_file,
// --tls_key_file, --tls_client_ca_file and --auth_tokens_file ask for, and sets the
// keepalive and per-connection stream arguments. `*port` is filled in by
// grpc::ServerBuilder::BuildAndStart. Errors name the flag (and file) at fault.
absl::Status ConfigureListener(grpc::ServerBuilder& builder, const std::string& address,
                               int* port);

// The bearer tokens of --auth_tokens_file for the HTTP API listening on `http_address`
// (empty when the flag is unset, or `http_address` is: no API). Tokens on a non-loopback address
// are refused, as for plaintext gRPC: the HTTP API has no TLS of its own (terminate TLS in front of
// it).
absl::StatusOr<std::vector<std::string>> HttpTokens(const std::string& http_address);

// --max_concurrent_streams: live Generate streams allowed server-wide (0 = no cap).
int MaxConcurrentStreams();

}  // namespace mla::security

#endif  // MLA_SERVER_SECURITY_LISTENER_H_
