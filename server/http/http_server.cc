#include "server/http/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mla::http {
namespace {

// Idle keep-alive connections hold a worker thread; keep them short so that a scraper
// and a few probes never wait on each other.
constexpr time_t kKeepAliveSeconds = 2;
constexpr auto kStartTimeout = std::chrono::seconds(5);

}  // namespace

struct HttpServer::Impl {
  httplib::Server server;
  std::map<std::string, HttpHandler> handlers;
};

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", address, "' must be host:port (port 0 picks a free port)"));
  }
  absl::string_view host = address.substr(0, colon);
  int port = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", address, "': the port must be a number in [0, 65535]"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host.empty() ? std::string("0.0.0.0") : std::string(host), port);
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    absl::string_view address, std::map<std::string, HttpHandler> handlers, int threads) {
  absl::StatusOr<std::pair<std::string, int>> host_port = ParseHostPort(address);
  if (!host_port.ok()) return host_port.status();
  auto impl = std::make_unique<Impl>();
  impl->handlers = std::move(handlers);
  httplib::Server& server = impl->server;
  const int workers = threads > 0 ? threads : 1;
  server.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  server.set_keep_alive_timeout(kKeepAliveSeconds);
  // httplib's default sets SO_REUSEPORT, which lets a second process bind the same port
  // and receive half of the scrapes. SO_REUSEADDR alone still allows a quick restart.
  server.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Every request is answered here, before httplib's own (regex) routing.
  const std::map<std::string, HttpHandler>* routes = &impl->handlers;
  server.set_pre_routing_handler([routes](const httplib::Request& req, httplib::Response& res) {
    if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
      res.set_content("method not allowed\n", "text/plain; charset=utf-8");
    } else if (auto it = routes->find(req.path); it == routes->end()) {
      res.status = 404;
      res.set_content("not found\n", "text/plain; charset=utf-8");
    } else {
      HttpResponse r = it->second();
      res.status = r.status;
      res.set_content(r.body, r.content_type.c_str());
    }
    return httplib::Server::HandlerResponse::Handled;
  });
  const auto& [host, requested_port] = *host_port;
  const int port = requested_port == 0
                       ? server.bind_to_any_port(host)
                       : (server.bind_to_port(host, requested_port) ? requested_port : -1);
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on HTTP address '", address, "'"));
  }
  std::unique_ptr<HttpServer> http(new HttpServer(std::move(impl), port));
  http->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // Stop() only works once the accept loop runs; wait for it so that Stop never hangs.
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!server.is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server.is_running()) return absl::InternalError("the HTTP server did not start");
  return http;
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  impl_->server.stop();
  thread_.join();
}

}  // namespace mla::http
