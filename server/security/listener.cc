#include "server/security/listener.h"

#include <grpc/grpc.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/log.h"
#include "common/status_macros.h"
#include "server/security/tls.h"
#include "server/security/token_auth.h"

ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the server (with --tls_key_file: serve TLS)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: mutual TLS, every client must present a certificate "
          "signed by one of them");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of bearer tokens, one per line ('#' comments): every RPC except "
          "grpc.health.v1.Health must send 'authorization: Bearer <token>'");
ABSL_FLAG(int, max_concurrent_streams, 256,
          "Live Generate streams allowed server-wide; more are refused with "
          "RESOURCE_EXHAUSTED and a retry-after-ms hint (0 = no cap)");
ABSL_FLAG(int, max_streams_per_connection, 0,
          "HTTP/2 concurrent streams allowed per client connection (0 = gRPC's default)");
ABSL_FLAG(int, keepalive_time_s, 60,
          "Seconds of idleness after which the server pings a client connection");
ABSL_FLAG(int, keepalive_timeout_s, 20,
          "Seconds to wait for a keepalive ping's answer before closing the connection");
ABSL_FLAG(int, keepalive_min_client_ping_s, 10,
          "Shortest interval between client keepalive pings tolerated before GOAWAY");

namespace mla::security {
namespace {

absl::Status CheckFlags() {
  if (absl::GetFlag(FLAGS_max_concurrent_streams) < 0) {
    return absl::InvalidArgumentError("--max_concurrent_streams must be >= 0");
  }
  if (absl::GetFlag(FLAGS_max_streams_per_connection) < 0) {
    return absl::InvalidArgumentError("--max_streams_per_connection must be >= 0");
  }
  if (absl::GetFlag(FLAGS_keepalive_time_s) <= 0 ||
      absl::GetFlag(FLAGS_keepalive_timeout_s) <= 0 ||
      absl::GetFlag(FLAGS_keepalive_min_client_ping_s) <= 0) {
    return absl::InvalidArgumentError(
        "--keepalive_time_s, --keepalive_timeout_s and --keepalive_min_client_ping_s must "
        "be > 0");
  }
  return absl::OkStatus();
}

// Credentials that run `processor` on every call. A processor can only be attached to
// secure credentials in gRPC 1.51 (InsecureServerCredentials asserts), so plaintext
// serving with tokens uses local credentials: plaintext HTTP/2 like insecure ones (any
// client with insecure channel credentials connects), but they accept loopback peers
// only. Bearer tokens sent in the clear across a network could be read off the wire,
// so tokens on a non-loopback plaintext listener are refused instead.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> CredentialsWithTokens(
    const TlsServerOptions& tls, const std::string& address,
    std::shared_ptr<grpc::AuthMetadataProcessor> processor) {
  MLA_ASSIGN_OR_RETURN(std::optional<grpc::SslServerCredentialsOptions> ssl,
                       LoadServerTls(tls));
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (ssl.has_value()) {
    LogInfo("tls: enabled", tls.client_ca_file.empty() ? "" : ", client certificates required");
    creds = grpc::SslServerCredentials(*ssl);
  } else if (IsLoopbackAddress(address)) {
    const bool uds = absl::StartsWith(address, "unix");
    creds = grpc::experimental::LocalServerCredentials(uds ? UDS : LOCAL_TCP);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--auth_tokens_file on the plaintext non-loopback address --listen=", address,
        " would expose the tokens on the network: set --tls_cert_file and --tls_key_file, "
        "or listen on a loopback address"));
  }
  creds->SetAuthMetadataProcessor(std::move(processor));
  return creds;
}

void SetConnectionArguments(grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             absl::GetFlag(FLAGS_keepalive_time_s) * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             absl::GetFlag(FLAGS_keepalive_timeout_s) * 1000);
  // Streams are long and clients idle between them: keepalive pings from clients are
  // fine without active calls and as often as --keepalive_min_client_ping_s (gRPC's
  // defaults, 2 h without calls and 5 min with, GOAWAY ordinary client settings).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             absl::GetFlag(FLAGS_keepalive_min_client_ping_s) * 1000);
  // The server's own pings keep probing idle connections (the default stops after 2).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (const int n = absl::GetFlag(FLAGS_max_streams_per_connection); n > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, n);
  }
}

}  // namespace

absl::Status ConfigureListener(grpc::ServerBuilder& builder, const std::string& address,
                               int* port) {
  MLA_RETURN_IF_ERROR(CheckFlags());
  TlsServerOptions tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (const std::string file = absl::GetFlag(FLAGS_auth_tokens_file); !file.empty()) {
    MLA_ASSIGN_OR_RETURN(std::vector<std::string> tokens, LoadTokensFile(file));
    LogInfo("auth: bearer tokens required (", tokens.size(), " configured)");
    MLA_ASSIGN_OR_RETURN(creds, CredentialsWithTokens(tls, address,
                                                      std::make_shared<TokenAuthProcessor>(
                                                          std::move(tokens))));
  } else {
    MLA_ASSIGN_OR_RETURN(creds, MakeServerCredentials(tls, address));
  }
  builder.AddListeningPort(address, creds, port);
  SetConnectionArguments(builder);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> HttpTokens(const std::string& http_address) {
  const std::string file = absl::GetFlag(FLAGS_auth_tokens_file);
  if (file.empty() || http_address.empty()) return std::vector<std::string>();  // Or no API.
  if (!IsLoopbackAddress(http_address)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file with the non-loopback --http_address=", http_address,
                     " would send the tokens over plaintext HTTP: listen on a loopback address and "
                     "terminate TLS in front of it"));
  }
  return LoadTokensFile(file);
}

int MaxConcurrentStreams() { return absl::GetFlag(FLAGS_max_concurrent_streams); }

}  // namespace mla::security
