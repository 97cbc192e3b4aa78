// The request side of HTTP/1.x for the embedded server: finding the end of a request
// head and parsing it. Pure functions of bytes, so that the server's loop stays small and
// a fuzzer can drive the parser directly.
#ifndef MLA_SERVER_HTTP_HTTP_REQUEST_H_
#define MLA_SERVER_HTTP_HTTP_REQUEST_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::http {

// The largest request head accepted (request line and headers); a longer one is refused
// with 431 and the connection closed.
inline constexpr size_t kMaxRequestHeadBytes = 8 * 1024;

struct RequestHead {
  std::string method;
  std::string path;  // The target without its query string.
  bool keep_alive = false;
  bool http11 = false;    // HTTP/1.1 or later: chunked responses are understood.
  bool has_body = false;  // Content-Length > 0 or Transfer-Encoding.
  int64_t content_length = 0;
  bool chunked = false;  // Transfer-Encoding: the body's length is not known up front.
  // Every header as sent, names in lower case (for the handlers: authorization, ...).
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header named `name` (lower case); empty when absent.
  absl::string_view Header(absl::string_view name) const;
};

// The length of the head in `buffer` including its blank line ("\r\n\r\n", or "\n\n"
// from lenient clients), or npos while it is incomplete.
size_t FindHeadEnd(absl::string_view buffer);

// Parses a complete head (as delimited by FindHeadEnd). INVALID_ARGUMENT names what is
// malformed; the server answers it with 400.
absl::StatusOr<RequestHead> ParseRequestHead(absl::string_view head);

}  // namespace mla::http

#endif  // MLA_SERVER_HTTP_HTTP_REQUEST_H_
