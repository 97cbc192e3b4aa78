// A tiny blocking HTTP/1.0 client over a raw socket, for tests: one request per connection
// (Connection: close), the whole response read until the server closes.
#ifndef MLA_TESTS_SERVER_HTTP_HTTP_GET_H_
#define MLA_TESTS_SERVER_HTTP_HTTP_GET_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace mla::testing {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // Names in lower case.
  std::string body;
};

// A blocking TCP connection to 127.0.0.1:port whose reads time out after 10 s.
absl::StatusOr<int> Connect(int port);
// Parses one whole response (status line, headers, body up to the end of `raw`).
absl::StatusOr<HttpResult> ParseResponse(const std::string& raw);

absl::StatusOr<HttpResult> HttpRequest(int port, const std::string& method,
                                       const std::string& path);
inline absl::StatusOr<HttpResult> HttpGet(int port, const std::string& path) {
  return HttpRequest(port, "GET", path);
}

}  // namespace mla::testing

#endif  // MLA_TESTS_SERVER_HTTP_HTTP_GET_H_
