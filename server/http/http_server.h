// A small embedded HTTP/1.1 server for operational endpoints (metrics, health), on top of
// Debian's cpp-httplib. Handlers are plain functions of the path's GET (and HEAD); nothing
// of the HTTP library shows in this header, so it can be swapped.
#ifndef MLA_SERVER_HTTP_HTTP_SERVER_H_
#define MLA_SERVER_HTTP_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::http {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse()>;

// "host:port", "[v6addr]:port" or ":port" (all interfaces). Port 0 asks for a free port.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(absl::string_view address);

class HttpServer {
 public:
  // Binds `address` and serves `handlers` (exact paths) on `threads` worker threads.
  // Other paths answer 404, other methods 405. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      absl::string_view address, std::map<std::string, HttpHandler> handlers, int threads = 2);
  ~HttpServer();  // Stops.

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Stops accepting, finishes the requests in progress and joins the threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  HttpServer(std::unique_ptr<Impl> impl, int port);

  std::unique_ptr<Impl> impl_;
  int port_;
  std::thread thread_;
};

}  // namespace mla::http

#endif  // MLA_SERVER_HTTP_HTTP_SERVER_H_
