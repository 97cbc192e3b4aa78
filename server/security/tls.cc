#include "server/security/tls.h"

#include <grpcpp/security/server_credentials.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/common/log.h"
#include "common/status_macros.h"

namespace mla::security {
namespace {

// Certificates and keys are a few KiB; anything this large is the wrong file.
constexpr long kMaxFileBytes = 16 << 20;

absl::Status FileError(absl::string_view flag, const std::string& path,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": ", what));
}

// A PEM file must hold at least one block of the expected kind; catching a swapped or
// DER-encoded file here gives a better message than the TLS handshake would.
absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path,
                                    absl::string_view label, absl::string_view expected) {
  MLA_ASSIGN_OR_RETURN(std::string pem, ReadFlagFile(flag, path));
  if (!absl::StrContains(pem, "-----BEGIN ") || !absl::StrContains(pem, label)) {
    return FileError(flag, path, absl::StrCat("not a PEM file with ", expected));
  }
  return pem;
}

}  // namespace

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return FileError(flag, path, std::strerror(errno));
  std::string contents;
  char buffer[8192];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    contents.append(buffer, n);
    if (static_cast<long>(contents.size()) > kMaxFileBytes) break;
  }
  const bool failed = std::ferror(file) != 0;
  const int read_errno = errno;
  std::fclose(file);
  if (failed) return FileError(flag, path, std::strerror(read_errno));
  if (static_cast<long>(contents.size()) > kMaxFileBytes) {
    return FileError(flag, path, "larger than 16 MiB");
  }
  return contents;
}

absl::StatusOr<std::optional<grpc::SslServerCredentialsOptions>> LoadServerTls(
    const TlsServerOptions& options) {
  const bool has_cert = !options.cert_file.empty();
  const bool has_key = !options.key_file.empty();
  if (has_cert != has_key) {
    return absl::InvalidArgumentError(
        has_cert ? absl::StrCat("--tls_cert_file=", options.cert_file,
                                " needs --tls_key_file (its private key)")
                 : absl::StrCat("--tls_key_file=", options.key_file,
                                " needs --tls_cert_file (its certificate chain)"));
  }
  if (!has_cert) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_client_ca_file=", options.client_ca_file,
          " needs TLS: set --tls_cert_file and --tls_key_file too"));
    }
    return std::nullopt;
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  MLA_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem("--tls_cert_file", options.cert_file,
                                                "CERTIFICATE-----", "a certificate"));
  MLA_ASSIGN_OR_RETURN(pair.private_key, ReadPem("--tls_key_file", options.key_file,
                                                 "PRIVATE KEY-----", "a private key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (options.client_ca_file.empty()) {
    ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  } else {
    MLA_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                         ReadPem("--tls_client_ca_file", options.client_ca_file,
                                 "CERTIFICATE-----", "a CA certificate"));
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return ssl;
}

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  absl::string_view host = address;
  if (const size_t colon = address.rfind(':'); colon != absl::string_view::npos) {
    host = address.substr(0, colon);
  }
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1") return true;
  // 127.0.0.0/8: every address with a first octet of 127.
  const std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  int first = 0;
  return octets.size() == 4 && absl::SimpleAtoi(octets[0], &first) && first == 127;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerOptions& options, absl::string_view listen_address) {
  MLA_ASSIGN_OR_RETURN(std::optional<grpc::SslServerCredentialsOptions> ssl,
                       LoadServerTls(options));
  if (ssl.has_value()) {
    LogInfo("tls: enabled",
            options.client_ca_file.empty() ? "" : ", client certificates required (mTLS)");
    return grpc::SslServerCredentials(*ssl);
  }
  if (!IsLoopbackAddress(listen_address)) {
    LogWarning("tls: disabled on non-loopback address ", listen_address,
               ": traffic is plaintext (set --tls_cert_file and --tls_key_file)");
  }
  return grpc::InsecureServerCredentials();
}

}  // namespace mla::security
