// The gRPC listener's flags: TLS / mutual TLS, bearer tokens, keepalive and stream
// limits. server_main calls ConfigureListener instead of AddListeningPort.
#ifndef MLA_SERVER_SECURITY_LISTENER_H_
#define MLA_SERVER_SECURITY_LISTENER_H_

#include <grpcpp/server_builder.h>

#include <string>

#include "absl/status/status.h"

namespace mla::security {

// Adds the listening port on `address` with the credentials that --tls_cert_file,
// --tls_key_file, --tls_client_ca_file and --auth_tokens_file ask for, and sets the
// keepalive and per-connection stream arguments. `*port` is filled in by
// grpc::ServerBuilder::BuildAndStart. Errors name the flag (and file) at fault.
absl::Status ConfigureListener(grpc::ServerBuilder& builder, const std::string& address,
                               int* port);

// --max_concurrent_streams: live Generate streams allowed server-wide (0 = no cap).
int MaxConcurrentStreams();

}  // namespace mla::security

#endif  // MLA_SERVER_SECURITY_LISTENER_H_
