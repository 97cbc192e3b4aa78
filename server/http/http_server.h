// A small embedded HTTP/1.1 server for operational endpoints (metrics, health). Handlers
// are plain functions of the path's GET (and HEAD).
//
// One thread runs a poll() loop over non-blocking sockets, so a client that sends its
// request a byte at a time, or connects and sends nothing, holds only its own buffer:
// a probe or a scrape never waits on another client. Every connection has a deadline (the
// whole request head within `header_timeout`, the whole response within `write_timeout`)
// and the number of connections is bounded; at the bound the connection that has waited
// longest for its request is closed to make room for the new one.
#ifndef MLA_SERVER_HTTP_HTTP_SERVER_H_
#define MLA_SERVER_HTTP_HTTP_SERVER_H_

#include <chrono>
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

struct HttpServerOptions {
  // Open connections at most; a new one beyond it closes the longest-waiting idle one.
  int max_connections = 128;
  // From accept (or the end of the previous response) to a complete request head;
  // idle keep-alive connections are closed after it too.
  std::chrono::milliseconds header_timeout{5000};
  // For writing one whole response; a reader slower than that is dropped.
  std::chrono::milliseconds write_timeout{10000};
};

// "host:port", "[v6addr]:port" or ":port" (all interfaces). Port 0 asks for a free port.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(absl::string_view address);

class HttpServer {
 public:
  // Binds `address` and serves `handlers` (exact paths) on one loop thread.
  // Other paths answer 404, other methods 405. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      absl::string_view address, std::map<std::string, HttpHandler> handlers,
      const HttpServerOptions& options = HttpServerOptions());
  ~HttpServer();  // Stops.

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Closes the port and every connection and joins the loop thread. Idempotent.
  void Stop();

 private:
  class Loop;
  HttpServer(std::unique_ptr<Loop> loop, int port);

  std::unique_ptr<Loop> loop_;
  int port_;
  std::thread thread_;
};

}  // namespace mla::http

#endif  // MLA_SERVER_HTTP_HTTP_SERVER_H_
