#include "server/http/http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/http/http_request.h"

namespace mla::http {
namespace {

using Clock = std::chrono::steady_clock;

// How long a half-closed connection may take to read its answer before it is closed;
// closing at once with unread input would reset it and could lose the answer.
constexpr auto kLinger = std::chrono::seconds(1);

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

std::string FormatResponse(const HttpResponse& r, bool head_only, bool keep_alive,
                           absl::string_view extra_headers = "") {
  std::string out = absl::StrCat("HTTP/1.1 ", r.status, " ", ReasonPhrase(r.status),
                                 "\r\nContent-Type: ", r.content_type,
                                 "\r\nContent-Length: ", r.body.size(), "\r\nConnection: ",
                                 keep_alive ? "keep-alive" : "close", "\r\n", extra_headers,
                                 "\r\n");
  if (!head_only) out += r.body;
  return out;
}

HttpResponse Plain(int status, absl::string_view text) {
  return HttpResponse{status, "text/plain; charset=utf-8", std::string(text)};
}

// A listening, non-blocking socket on host:port, or UNAVAILABLE.
absl::StatusOr<int> Listen(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  std::string error = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    // SO_REUSEADDR allows a quick restart; SO_REUSEPORT is left off so that a second
    // process cannot bind the same port and receive half of the scrapes.
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
      error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(error);
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return -1;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

}  // namespace

// The poll() loop: owns the listening socket, a wake-up eventfd and the connections.
class HttpServer::Loop {
 public:
  Loop(int listen_fd, int wake_fd, std::map<std::string, HttpHandler> handlers,
       const HttpServerOptions& options)
      : listen_fd_(listen_fd),
        wake_fd_(wake_fd),
        handlers_(std::move(handlers)),
        options_(options) {}
  ~Loop();

  void Run();
  void RequestStop() {
    stop_.store(true);
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }

 private:
  struct Connection {
    int fd = -1;
    std::string in;   // Bytes read and not yet parsed.
    std::string out;  // The response being written.
    size_t sent = 0;
    bool writing = false;
    bool close_after = false;  // Connection: close, or an error answer.
    bool lingering = false;    // Answered and half-closed: unread input is discarded.
    Clock::time_point deadline;  // For the request head, the response, or the linger.
  };

  void Accept();
  void MakeRoom();
  // Each returns false when the connection is to be closed.
  bool OnReadable(Connection& c);
  bool OnWritable(Connection& c);
  // Answers the complete requests in `c.in`, one at a time, until a write would block.
  bool Serve(Connection& c);
  bool Flush(Connection& c);
  HttpResponse Route(const RequestHead& head, std::string* extra_headers) const;
  int PollTimeoutMs() const;

  const int listen_fd_;
  const int wake_fd_;
  const std::map<std::string, HttpHandler> handlers_;
  const HttpServerOptions options_;
  std::atomic<bool> stop_{false};
  std::vector<Connection> connections_;  // Loop thread only.
};

HttpServer::Loop::~Loop() {
  for (Connection& c : connections_) close(c.fd);
  close(listen_fd_);
  close(wake_fd_);
}

int HttpServer::Loop::PollTimeoutMs() const {
  if (connections_.empty()) return -1;
  Clock::time_point next = Clock::time_point::max();
  for (const Connection& c : connections_) next = std::min(next, c.deadline);
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void HttpServer::Loop::Run() {
  std::vector<pollfd> fds;
  while (!stop_.load()) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const Connection& c : connections_) {
      fds.push_back({c.fd, static_cast<short>(c.writing ? POLLOUT : POLLIN), 0});
    }
    if (poll(fds.data(), fds.size(), PollTimeoutMs()) < 0 && errno != EINTR) break;
    if (stop_.load()) break;
    // fds[i + 2] belongs to connections_[i]; accepted connections are appended after.
    std::vector<Connection> kept;
    kept.reserve(connections_.size());
    for (size_t i = 0; i < connections_.size(); ++i) {
      Connection& c = connections_[i];
      const short ev = fds[i + 2].revents;
      bool open = true;
      if (ev & (POLLERR | POLLNVAL)) {
        open = false;
      } else if (c.writing && (ev & (POLLOUT | POLLHUP))) {
        open = OnWritable(c);
      } else if (!c.writing && (ev & (POLLIN | POLLHUP))) {
        open = OnReadable(c);
      }
      if (open && c.deadline <= Clock::now()) open = false;  // Too slow, or done lingering.
      if (open) {
        kept.push_back(std::move(c));
      } else {
        close(c.fd);
      }
    }
    connections_ = std::move(kept);
    if (fds[1].revents & POLLIN) Accept();
  }
}

void HttpServer::Loop::Accept() {
  const int max_connections = std::max(1, options_.max_connections);
  while (true) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: none waiting; other errors: retried on the next poll.
    if (static_cast<int>(connections_.size()) >= max_connections) MakeRoom();
    if (static_cast<int>(connections_.size()) >= max_connections) {
      close(fd);  // Every connection is being answered: this one is refused.
      continue;
    }
    Connection c;
    c.fd = fd;
    c.deadline = Clock::now() + options_.header_timeout;
    connections_.push_back(std::move(c));
  }
}

// Closes the connection that has waited longest for its request head: a slow or idle
// client gives way to a new one, so that holding connections open cannot lock out probes.
void HttpServer::Loop::MakeRoom() {
  auto oldest = connections_.end();
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (!it->writing && (oldest == connections_.end() || it->deadline < oldest->deadline)) {
      oldest = it;
    }
  }
  if (oldest == connections_.end()) return;
  close(oldest->fd);
  connections_.erase(oldest);
}

bool HttpServer::Loop::OnReadable(Connection& c) {
  char buffer[4096];
  while (true) {
    const ssize_t n = recv(c.fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      if (c.lingering) continue;
      c.in.append(buffer, static_cast<size_t>(n));
      // Enough for one maximal head and the start of a pipelined next one.
      if (c.in.size() > 2 * kMaxRequestHeadBytes) break;
      continue;
    }
    if (n == 0) return false;  // The client closed.
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return false;
  }
  return c.lingering || Serve(c);
}

bool HttpServer::Loop::OnWritable(Connection& c) {
  if (!Flush(c)) return false;
  return c.writing || Serve(c);
}

bool HttpServer::Loop::Serve(Connection& c) {
  while (!c.writing && !c.lingering) {
    const size_t end = FindHeadEnd(c.in);
    HttpResponse r;
    std::string extra;
    bool keep_alive = false, head_only = false;
    if (end == absl::string_view::npos || end > kMaxRequestHeadBytes) {
      if (c.in.size() <= kMaxRequestHeadBytes) return true;  // Wait for the rest.
      r = Plain(431, "request head too large\n");
    } else {
      absl::StatusOr<RequestHead> head = ParseRequestHead(absl::string_view(c.in).substr(0, end));
      c.in.erase(0, end);
      if (!head.ok()) {
        r = Plain(400, absl::StrCat(head.status().message(), "\n"));
      } else {
        r = Route(*head, &extra);
        // A request body is never read: answering and closing keeps the stream in sync.
        keep_alive = head->keep_alive && !head->has_body;
        head_only = head->method == "HEAD";
      }
    }
    c.out = FormatResponse(r, head_only, keep_alive, extra);
    c.sent = 0;
    c.writing = true;
    c.close_after = !keep_alive;
    c.deadline = Clock::now() + options_.write_timeout;
    if (!Flush(c)) return false;
  }
  return true;
}

HttpResponse HttpServer::Loop::Route(const RequestHead& head, std::string* extra_headers) const {
  if (head.method != "GET" && head.method != "HEAD") {
    *extra_headers = "Allow: GET, HEAD\r\n";
    return Plain(405, "method not allowed\n");
  }
  auto it = handlers_.find(head.path);
  if (it == handlers_.end()) return Plain(404, "not found\n");
  return it->second();
}

// Writes what the socket takes. When the response is complete the connection waits for
// its next request, or (close_after) is half-closed and lingers.
bool HttpServer::Loop::Flush(Connection& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  c.writing = false;
  c.out.clear();
  if (c.close_after) {
    shutdown(c.fd, SHUT_WR);
    c.lingering = true;
    c.in.clear();
    c.deadline = Clock::now() + kLinger;
  } else {
    c.deadline = Clock::now() + options_.header_timeout;
  }
  return true;
}

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
    absl::string_view address, std::map<std::string, HttpHandler> handlers,
    const HttpServerOptions& options) {
  absl::StatusOr<std::pair<std::string, int>> host_port = ParseHostPort(address);
  if (!host_port.ok()) return host_port.status();
  absl::StatusOr<int> listen_fd = Listen(host_port->first, host_port->second);
  if (!listen_fd.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on HTTP address '", address,
                                               "': ", listen_fd.status().message()));
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    close(*listen_fd);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  const int port = BoundPort(*listen_fd);
  auto loop = std::make_unique<Loop>(*listen_fd, wake_fd, std::move(handlers), options);
  std::unique_ptr<HttpServer> http(new HttpServer(std::move(loop), port));
  http->thread_ = std::thread([loop = http->loop_.get()] { loop->Run(); });
  return http;
}

HttpServer::HttpServer(std::unique_ptr<Loop> loop, int port)
    : loop_(std::move(loop)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  loop_->RequestStop();
  thread_.join();
  loop_.reset();  // Closes the port and the connections.
}

}  // namespace mla::http
