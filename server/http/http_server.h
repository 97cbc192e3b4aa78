// A small embedded HTTP/1.1 server: the operational endpoints (metrics, health) and the
// OpenAI-compatible API. Routes are (method, exact path) pairs; a route's handler gets the
// request with its whole body and an HttpResponder, through which it answers at once or
// later from any thread, as one response or as a stream of chunks (Server-Sent Events).
//
// One thread runs a poll() loop over non-blocking sockets, so a client that sends its
// request a byte at a time, or connects and sends nothing, or reads its stream slowly,
// holds only its own buffers: a probe or a scrape never waits on another client, and a
// responder never blocks its caller (an engine thread writing tokens). Every connection
// has a deadline (the whole request head and body within `header_timeout`, progress on a
// pending write within `write_timeout`), the number of connections is bounded (at the
// bound the connection that has waited longest for its request is closed to make room),
// a body is bounded (413), and so is a response that its reader leaves unread.
#ifndef MLA_SERVER_HTTP_HTTP_SERVER_H_
#define MLA_SERVER_HTTP_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/http/http_request.h"

namespace mla::http {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  HttpHeaders headers;  // Extra headers, e.g. Retry-After.
};

// A GET (and HEAD) handler that answers at once: the operational endpoints.
using HttpHandler = std::function<HttpResponse()>;

namespace internal {
struct ResponseChannel;
}  // namespace internal

// The answer to one request. Copies share the response; every method may be called from
// any thread and never blocks on the client.
class HttpResponder {
 public:
  explicit HttpResponder(std::shared_ptr<internal::ResponseChannel> channel)
      : channel_(std::move(channel)) {}

  // A whole response. Only the first Respond or StartStream of a request counts.
  void Respond(HttpResponse response) const;
  // Starts a streamed response: the body follows in Send calls (chunked transfer for
  // HTTP/1.1 clients, close-delimited for HTTP/1.0) until End.
  void StartStream(int status, absl::string_view content_type, HttpHeaders headers = {}) const;
  // Queues a piece of the streamed body. False when no stream is open (not started, or
  // ended), or once the client is gone or has left more than
  // HttpServerOptions::max_unsent_bytes unread (its connection is then closed): the
  // caller should stop producing.
  bool Send(absl::string_view data) const;
  void End() const;
  // `fn` runs once, on the server's thread, when the client disconnects (or the server
  // stops) before the response is complete; at once, on the caller's thread, when that
  // has happened already. Never after a complete response.
  void OnDisconnect(std::function<void()> fn) const;

 private:
  std::shared_ptr<internal::ResponseChannel> channel_;
};

struct HttpRequest {
  RequestHead head;
  std::string body;
};

using HttpRouteHandler = std::function<void(HttpRequest request, HttpResponder responder)>;

struct HttpRoute {
  std::string method;  // "GET" routes answer HEAD too.
  std::string path;    // Exact, without the query string.
  HttpRouteHandler handler;
};

struct HttpServerOptions {
  // Open connections at most; a new one beyond it closes the longest-waiting idle one.
  int max_connections = 128;
  // From accept (or the end of the previous response) to a complete request head and
  // body; idle keep-alive connections are closed after it too.
  std::chrono::milliseconds header_timeout{5000};
  // A pending response write that makes no progress for this long drops the reader.
  std::chrono::milliseconds write_timeout{10000};
  // Largest request body (Content-Length) accepted; larger ones are answered 413.
  size_t max_body_bytes = 1 << 20;
  // Bytes of a response its reader may leave unread before the connection is closed
  // (and the responder's Send returns false).
  size_t max_unsent_bytes = 8 << 20;
  // The body of the answers the server gives itself (400, 404, 405, 411, 413, 431), from
  // the status and a message; plain text when unset. An API sets its own error shape.
  std::function<HttpResponse(int status, absl::string_view message)> error_response;
};

// "host:port", "[v6addr]:port" or ":port" (all interfaces). Port 0 asks for a free port.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(absl::string_view address);

class HttpServer {
 public:
  // Binds `address` and serves `routes` on one loop thread. Other paths answer 404,
  // other methods of a known path 405. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      absl::string_view address, std::vector<HttpRoute> routes,
      const HttpServerOptions& options = HttpServerOptions());
  // Serves GET (and HEAD) `handlers` by exact path.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      absl::string_view address, std::map<std::string, HttpHandler> handlers,
      const HttpServerOptions& options = HttpServerOptions());
  ~HttpServer();  // Stops.

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Closes the port and every connection (responses still pending see their disconnect
  // callbacks) and joins the loop thread. Idempotent.
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
