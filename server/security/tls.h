// Server transport security: TLS and mutual TLS credentials from PEM files.
#ifndef MLA_SERVER_SECURITY_TLS_H_
#define MLA_SERVER_SECURITY_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::security {

struct TlsServerOptions {
  std::string cert_file;       // --tls_cert_file: PEM certificate chain, leaf first.
  std::string key_file;        // --tls_key_file: PEM private key of the leaf.
  std::string client_ca_file;  // --tls_client_ca_file: set = mutual TLS, certs required.
};

// Reads a whole file named by `flag` (used in error messages, e.g. "--tls_key_file").
absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path);

// The SSL options the flags ask for, with the PEM files read and sanity-checked;
// std::nullopt when neither certificate nor key is set (plaintext).
absl::StatusOr<std::optional<grpc::SslServerCredentialsOptions>> LoadServerTls(
    const TlsServerOptions& options);

// True for addresses only reachable from this host: 127.0.0.0/8, [::1], localhost,
// and unix: sockets.
bool IsLoopbackAddress(absl::string_view address);

// TLS credentials when LoadServerTls finds any; otherwise insecure credentials, with a
// warning when `listen_address` is reachable from other hosts.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerOptions& options, absl::string_view listen_address);

}  // namespace mla::security

#endif  // MLA_SERVER_SECURITY_TLS_H_
