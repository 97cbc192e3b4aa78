// Bearer-token authentication for every RPC but grpc.health.v1.Health.
//
// It is a grpc::AuthMetadataProcessor, so that a call without a valid token is refused
// in gRPC's auth filter before any service code (or reflection) runs. gRPC 1.51 (Debian
// 12) asserts when a processor is set on InsecureServerCredentials, so plaintext serving
// uses local credentials instead (see server/security/listener.cc); a server interceptor
// cannot finish a call with a status of its own choosing in this version.
#ifndef MLA_SERVER_SECURITY_TOKEN_AUTH_H_
#define MLA_SERVER_SECURITY_TOKEN_AUTH_H_

#include <grpcpp/security/auth_metadata_processor.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mla::security {

// Parses an --auth_tokens_file: one token per line; surrounding whitespace is trimmed,
// blank lines and lines starting with '#' are skipped. Errors name the line, never the
// token, and there must be at least one token.
absl::StatusOr<std::vector<std::string>> ParseTokens(absl::string_view contents);
absl::StatusOr<std::vector<std::string>> LoadTokensFile(const std::string& path);

// True when `candidate` equals one of `tokens`. Every token is compared over the whole
// candidate whatever the outcome, so the time taken depends only on the candidate's
// length and the number of tokens: not on where bytes differ, which token matches, nor
// on the configured tokens' lengths.
bool TokenMatches(absl::string_view candidate, absl::Span<const std::string> tokens);

// The token of an "authorization" value "Bearer <token>" (scheme case-insensitive);
// std::nullopt when the value has another form.
std::optional<absl::string_view> ParseBearer(absl::string_view value);

class TokenAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthProcessor(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

  // The check is a few hundred byte comparisons: run it inline on gRPC's thread.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const std::vector<std::string> tokens_;
};

}  // namespace mla::security

#endif  // MLA_SERVER_SECURITY_TOKEN_AUTH_H_
