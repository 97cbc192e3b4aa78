#include "server/security/token_auth.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "server/security/tls.h"

namespace mla::security {
namespace {

constexpr char kHealthPrefix[] = "/grpc.health.v1.Health/";

// gRPC metadata values are visible ASCII; a token with anything else (a space, a stray
// carriage return, UTF-8) could never be sent, so it is a mistake in the file.
bool IsVisibleAscii(absl::string_view s) {
  for (const char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

std::optional<absl::string_view> Find(const grpc::AuthMetadataProcessor::InputMetadata& md,
                                      absl::string_view key) {
  const auto it = md.find(grpc::string_ref(key.data(), key.size()));
  if (it == md.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseTokens(absl::string_view contents) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    if (!IsVisibleAscii(line)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number, ": a token must be visible ASCII without spaces"));
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) return absl::InvalidArgumentError("no token in the file");
  return tokens;
}

absl::StatusOr<std::vector<std::string>> LoadTokensFile(const std::string& path) {
  MLA_ASSIGN_OR_RETURN(std::string contents, ReadFlagFile("--auth_tokens_file", path));
  absl::StatusOr<std::vector<std::string>> tokens = ParseTokens(contents);
  if (!tokens.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file=", path, ": ", tokens.status().message()));
  }
  return tokens;
}

bool TokenMatches(absl::string_view candidate, absl::Span<const std::string> tokens) {
  // `volatile` keeps the compiler from stopping at the first match.
  volatile uint8_t matched = 0;
  for (const std::string& token : tokens) {
    if (token.empty()) continue;  // ParseTokens never yields one; `%` below needs it.
    // A length mismatch is folded into `diff` instead of returning early, and the
    // token is read cyclically so that the loop always runs over the whole candidate.
    uint8_t diff = static_cast<uint8_t>(token.size() != candidate.size());
    for (size_t i = 0; i < candidate.size(); ++i) {
      diff |= static_cast<uint8_t>(candidate[i] ^ token[i % token.size()]);
    }
    matched = matched | static_cast<uint8_t>(diff == 0);
  }
  return matched != 0;
}

std::optional<absl::string_view> ParseBearer(absl::string_view value) {
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  const absl::string_view token = absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (token.empty()) return std::nullopt;
  return token;
}

grpc::Status TokenAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* /*context*/,
                                         OutputMetadata* consumed_auth_metadata,
                                         OutputMetadata* /*response_metadata*/) {
  // Load balancers and Kubernetes probe health without credentials.
  if (absl::StartsWith(Find(auth_metadata, ":path").value_or(""), kHealthPrefix)) {
    return grpc::Status::OK;
  }
  const std::optional<absl::string_view> header = Find(auth_metadata, "authorization");
  const std::optional<absl::string_view> token =
      header.has_value() ? ParseBearer(*header) : std::nullopt;
  if (!token.has_value()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing bearer token");
  }
  if (!TokenMatches(*token, tokens_)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token");
  }
  // Consumed: the token does not reach service code or its logs.
  consumed_auth_metadata->emplace("authorization", std::string(*header));
  return grpc::Status::OK;
}

}  // namespace mla::security
