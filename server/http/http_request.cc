#include "server/http/http_request.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mla::http {
namespace {

// A token character of RFC 9110 (methods and header names).
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed request: ", what));
}

// Applies one "Name: value" line to `head`.
absl::Status ApplyHeader(absl::string_view line, bool http11, RequestHead& head) {
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
    return Malformed("header line without a valid name");
  }
  const absl::string_view name = line.substr(0, colon);
  const absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  head.headers.emplace_back(absl::AsciiStrToLower(name), std::string(value));
  if (absl::EqualsIgnoreCase(name, "connection")) {
    for (absl::string_view option : absl::StrSplit(value, ',')) {
      option = absl::StripAsciiWhitespace(option);
      if (absl::EqualsIgnoreCase(option, "close")) head.keep_alive = false;
      if (absl::EqualsIgnoreCase(option, "keep-alive") && !http11) head.keep_alive = true;
    }
  } else if (absl::EqualsIgnoreCase(name, "content-length")) {
    int64_t length = 0;
    if (!absl::SimpleAtoi(value, &length) || length < 0) {
      return Malformed("Content-Length is not a number");
    }
    // Two different lengths would let a proxy and this server split the stream apart
    // (request smuggling): refused.
    if (head.content_length > 0 && length != head.content_length) {
      return Malformed("conflicting Content-Length headers");
    }
    head.content_length = length;
    if (length > 0) head.has_body = true;
  } else if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
    head.has_body = true;
    head.chunked = true;
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RequestHead::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

size_t FindHeadEnd(absl::string_view buffer) {
  for (size_t i = 0; i < buffer.size(); ++i) {
    if (buffer[i] != '\n') continue;
    if (i + 1 < buffer.size() && buffer[i + 1] == '\n') return i + 2;
    if (i + 2 < buffer.size() && buffer[i + 1] == '\r' && buffer[i + 2] == '\n') return i + 3;
  }
  return absl::string_view::npos;
}

absl::StatusOr<RequestHead> ParseRequestHead(absl::string_view head) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, '\n');
  // Drop the blank line(s) that end the head; a leading blank line (RFC 9112 allows one
  // between requests) is skipped too.
  while (!lines.empty() && absl::StripTrailingAsciiWhitespace(lines.back()).empty()) {
    lines.pop_back();
  }
  size_t first = 0;
  while (first < lines.size() && absl::StripTrailingAsciiWhitespace(lines[first]).empty()) {
    ++first;
  }
  if (first >= lines.size()) return Malformed("empty request");
  const absl::string_view request_line = absl::StripTrailingAsciiWhitespace(lines[first]);
  std::vector<absl::string_view> parts = absl::StrSplit(request_line, ' ');
  if (parts.size() != 3 || !IsToken(parts[0]) || parts[1].empty() ||
      !absl::StartsWith(parts[2], "HTTP/1.")) {
    return Malformed("the request line is not METHOD TARGET HTTP/1.x");
  }
  const bool http11 = parts[2] != "HTTP/1.0";
  absl::string_view target = parts[1];
  // Absolute form (RFC 9112 3.2.2), which servers must accept: keep the path part.
  for (absl::string_view scheme : {"http://", "https://"}) {
    if (absl::StartsWithIgnoreCase(target, scheme)) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == absl::string_view::npos ? "/" : target.substr(slash);
    }
  }
  if (target != "*" && target.front() != '/') {
    return Malformed("the request target must start with '/'");
  }
  RequestHead out;
  out.method = std::string(parts[0]);
  out.path = std::string(target.substr(0, target.find('?')));
  out.keep_alive = http11;
  out.http11 = http11;
  for (size_t i = first + 1; i < lines.size(); ++i) {
    const absl::string_view line = absl::StripTrailingAsciiWhitespace(lines[i]);
    if (line.empty()) return Malformed("blank line inside the head");
    if (absl::Status s = ApplyHeader(line, http11, out); !s.ok()) return s;
  }
  return out;
}

}  // namespace mla::http
