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

absl::StatusOr<HttpResult> HttpRequest(int port, const std::string& method,
                                       const std::string& path);
inline absl::StatusOr<HttpResult> HttpGet(int port, const std::string& path) {
  return HttpRequest(port, "GET", path);
}

}  // namespace mla::testing

#endif  // MLA_TESTS_SERVER_HTTP_HTTP_GET_H_
