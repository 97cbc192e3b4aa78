#include "server/http/http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/http/http_request.h"
#include "server/http/response_channel.h"

namespace mla::http {
namespace {

using Clock = std::chrono::steady_clock;

// How long a half-closed connection may take to read its answer before it is closed;
// closing at once with unread input would reset it and could lose the answer.
constexpr auto kLinger = std::chrono::seconds(1);

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

// The poll() loop: owns the listening socket, the connections and (shared with the
// responders) the wake-up eventfd.
class HttpServer::Loop {
 public:
  Loop(int listen_fd, std::shared_ptr<internal::Waker> waker, std::vector<HttpRoute> routes,
       const HttpServerOptions& options)
      : listen_fd_(listen_fd),
        waker_(std::move(waker)),
        routes_(std::move(routes)),
        options_(options) {}
  ~Loop();

  void Run();
  void RequestStop() {
    stop_.store(true);
    waker_->Wake();
  }

 private:
  struct Connection {
    int fd = -1;
    std::string in;   // Bytes read and not yet parsed.
    std::string out;  // Response bytes taken from the channel, not yet sent.
    size_t sent = 0;
    bool writing = false;    // `out` holds unsent bytes.
    bool lingering = false;  // Answered and half-closed: unread input is discarded.
    // A head whose body is still arriving, and the route it goes to.
    std::optional<RequestHead> body_head;
    const HttpRoute* route = nullptr;
    // The response in progress (from dispatch until its last byte is sent).
    std::shared_ptr<internal::ResponseChannel> channel;
    Clock::time_point deadline;  // For the request, a stalled write, or the linger.
  };

  void Accept();
  void MakeRoom();
  short Events(const Connection& c) const;
  // Each returns false when the connection is to be closed.
  bool OnEvents(Connection& c, short revents);
  bool Read(Connection& c);
  // Parses and dispatches the complete requests in `c.in`, one at a time, until one is
  // answered later or a write would block.
  bool Serve(Connection& c);
  // Starts the response to `head`; `route` null answers `error` instead of dispatching.
  bool Dispatch(Connection& c, const RequestHead& head, const HttpRoute* route, std::string body,
                const HttpResponse& error);
  // Moves the channel's new bytes into `c.out` and writes; ends the response when done.
  bool Pump(Connection& c);
  bool Flush(Connection& c);
  // The route for (method, path), or null with the error answer in `*error`.
  const HttpRoute* Route(const RequestHead& head, HttpResponse* error) const;
  // The server's own answer: options_.error_response, or `message` as plain text.
  HttpResponse Error(int status, absl::string_view message) const;
  int PollTimeoutMs() const;

  const int listen_fd_;
  const std::shared_ptr<internal::Waker> waker_;
  const std::vector<HttpRoute> routes_;
  const HttpServerOptions options_;
  std::atomic<bool> stop_{false};
  std::vector<Connection> connections_;  // Loop thread only.
};

HttpServer::Loop::~Loop() {
  for (Connection& c : connections_) {
    if (c.channel) c.channel->Disconnect();
    close(c.fd);
  }
  close(listen_fd_);
}

int HttpServer::Loop::PollTimeoutMs() const {
  if (connections_.empty()) return -1;
  Clock::time_point next = Clock::time_point::max();
  for (const Connection& c : connections_) next = std::min(next, c.deadline);
  if (next == Clock::time_point::max()) return -1;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

short HttpServer::Loop::Events(const Connection& c) const {
  if (c.lingering) return POLLIN;
  if (!c.channel) return c.writing ? POLLOUT : POLLIN;
  // While a response is pending the input is watched for the client hanging up, which
  // aborts the work behind the response; pipelined input is buffered up to a bound.
  short events = POLLRDHUP;
  if (c.in.size() <= kMaxRequestHeadBytes) events |= POLLIN;
  if (c.writing) events |= POLLOUT;
  return events;
}

void HttpServer::Loop::Run() {
  std::vector<pollfd> fds;
  while (!stop_.load()) {
    fds.clear();
    fds.push_back({waker_->fd(), POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const Connection& c : connections_) fds.push_back({c.fd, Events(c), 0});
    if (poll(fds.data(), fds.size(), PollTimeoutMs()) < 0 && errno != EINTR) break;
    if (stop_.load()) break;
    if (fds[0].revents & POLLIN) waker_->Drain();
    // fds[i + 2] belongs to connections_[i]; accepted connections are appended after.
    std::vector<Connection> kept;
    kept.reserve(connections_.size());
    for (size_t i = 0; i < connections_.size(); ++i) {
      Connection& c = connections_[i];
      bool open = OnEvents(c, fds[i + 2].revents);
      if (open && c.deadline <= Clock::now()) open = false;  // Too slow, or done lingering.
      if (open) {
        kept.push_back(std::move(c));
        continue;
      }
      if (c.channel) c.channel->Disconnect();
      close(c.fd);
    }
    connections_ = std::move(kept);
    if (fds[1].revents & POLLIN) Accept();
  }
}

bool HttpServer::Loop::OnEvents(Connection& c, short ev) {
  if (ev & (POLLERR | POLLNVAL)) return false;
  if (c.channel && (ev & (POLLRDHUP | POLLHUP))) return false;  // Gone mid-response.
  if ((ev & (POLLIN | POLLHUP)) && !Read(c)) return false;
  if (c.lingering) return true;
  if ((ev & POLLOUT) && c.writing && !Flush(c)) return false;
  // Every connection with a response in progress is pumped on every wake-up: that is
  // how bytes produced on other threads reach the socket.
  if (c.channel && !Pump(c)) return false;
  return c.channel || c.writing || Serve(c);
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
    // Streamed events are small writes: without TCP_NODELAY each would wait for the
    // client's (delayed) ACK of the previous one, up to 40 ms per token on Linux.
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Connection c;
    c.fd = fd;
    c.deadline = Clock::now() + options_.header_timeout;
    connections_.push_back(std::move(c));
  }
}

// Closes the connection that has waited longest for its request: a slow or idle client
// gives way to a new one, so that holding connections open cannot lock out probes.
void HttpServer::Loop::MakeRoom() {
  auto oldest = connections_.end();
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (!it->writing && !it->channel &&
        (oldest == connections_.end() || it->deadline < oldest->deadline)) {
      oldest = it;
    }
  }
  if (oldest == connections_.end()) return;
  close(oldest->fd);
  connections_.erase(oldest);
}

bool HttpServer::Loop::Read(Connection& c) {
  // Enough for one maximal request and the start of a pipelined next one.
  const size_t limit = 2 * kMaxRequestHeadBytes + options_.max_body_bytes;
  char buffer[16384];
  while (c.lingering || c.in.size() <= limit) {
    const ssize_t n = recv(c.fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      if (!c.lingering) c.in.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;  // The client closed.
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return false;
  }
  return true;
}

bool HttpServer::Loop::Serve(Connection& c) {
  while (!c.writing && !c.lingering && !c.channel) {
    if (!c.body_head) {
      const size_t end = FindHeadEnd(c.in);
      if (end == absl::string_view::npos || end > kMaxRequestHeadBytes) {
        if (c.in.size() <= kMaxRequestHeadBytes) return true;  // Wait for the rest.
        return Dispatch(c, RequestHead(), nullptr, "", Error(431, "request head too large"));
      }
      absl::StatusOr<RequestHead> head = ParseRequestHead(absl::string_view(c.in).substr(0, end));
      c.in.erase(0, end);
      if (!head.ok()) {
        return Dispatch(c, RequestHead(), nullptr, "", Error(400, head.status().message()));
      }
      HttpResponse error;
      const HttpRoute* route = Route(*head, &error);
      if (route == nullptr) {
        // The body (if any) is never read: answering and closing keeps the stream in sync.
        if (!Dispatch(c, *head, nullptr, "", error)) return false;
        continue;
      }
      if (head->chunked) {
        return Dispatch(c, *head, nullptr, "",
                        Error(411,
                              "chunked request bodies are not accepted: send "
                              "Content-Length\n"));
      }
      if (static_cast<uint64_t>(head->content_length) > options_.max_body_bytes) {
        return Dispatch(c, *head, nullptr, "",
                        Error(413, absl::StrCat("the request body is larger than ",
                                                options_.max_body_bytes, " bytes")));
      }
      c.body_head = std::move(*head);
      c.route = route;
    }
    const size_t length = static_cast<size_t>(c.body_head->content_length);
    if (c.in.size() < length) return true;  // The body is still arriving.
    std::string body = c.in.substr(0, length);
    c.in.erase(0, length);
    const RequestHead head = std::move(*c.body_head);
    c.body_head.reset();
    if (!Dispatch(c, head, c.route, std::move(body), HttpResponse())) return false;
  }
  return true;
}

bool HttpServer::Loop::Dispatch(Connection& c, const RequestHead& head, const HttpRoute* route,
                                std::string body, const HttpResponse& error) {
  RequestHead effective = head;
  // Errors found before a route ran leave the stream in an unknown state: close.
  if (route == nullptr && (head.has_body || head.method.empty())) effective.keep_alive = false;
  c.channel =
      std::make_shared<internal::ResponseChannel>(waker_, effective, options_.max_unsent_bytes);
  HttpResponder responder(c.channel);
  if (route == nullptr) {
    responder.Respond(error);
  } else {
    route->handler(HttpRequest{head, std::move(body)}, responder);
  }
  // No deadline while the handler's answer is pending: generation may take minutes.
  c.deadline = Clock::time_point::max();
  return Pump(c);
}

HttpResponse HttpServer::Loop::Error(int status, absl::string_view message) const {
  if (options_.error_response) return options_.error_response(status, message);
  return HttpResponse{status, "text/plain; charset=utf-8", absl::StrCat(message, "\n"), {}};
}

const HttpRoute* HttpServer::Loop::Route(const RequestHead& head, HttpResponse* error) const {
  std::string allowed;
  for (const HttpRoute& r : routes_) {
    if (r.path != head.path) continue;
    if (r.method == head.method || (r.method == "GET" && head.method == "HEAD")) return &r;
    absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", r.method,
                    r.method == "GET" ? ", HEAD" : "");
  }
  if (allowed.empty()) {
    *error = Error(404, "not found");
  } else {
    *error = Error(405, "method not allowed");
    error->headers.emplace_back("Allow", allowed);
  }
  return nullptr;
}

bool HttpServer::Loop::Pump(Connection& c) {
  const bool had_output = c.writing;
  const internal::ResponseChannel::Taken taken = c.channel->TakeOutput(c.out);
  if (taken.gone) return false;
  if (c.out.size() > c.sent) {
    if (!had_output) c.deadline = Clock::now() + options_.write_timeout;
    c.writing = true;
    if (!Flush(c)) return false;
  }
  c.channel->loop_unsent.store(c.out.size() - c.sent);
  if (!taken.done || c.writing) return true;
  // The response is complete and sent: wait for the next request, or half-close and
  // linger (closing at once with unread input would reset it and could lose the answer).
  c.channel.reset();
  if (taken.close_after) {
    shutdown(c.fd, SHUT_WR);
    c.lingering = true;
    c.in.clear();
    c.deadline = Clock::now() + kLinger;
  } else {
    c.deadline = Clock::now() + options_.header_timeout;
  }
  return true;
}

// Writes what the socket takes; a write that makes progress moves the deadline.
bool HttpServer::Loop::Flush(Connection& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
      c.deadline = Clock::now() + options_.write_timeout;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  c.writing = false;
  c.out.clear();
  c.sent = 0;
  if (c.channel) c.deadline = Clock::time_point::max();
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

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(absl::string_view address,
                                                              std::vector<HttpRoute> routes,
                                                              const HttpServerOptions& options) {
  absl::StatusOr<std::pair<std::string, int>> host_port = ParseHostPort(address);
  if (!host_port.ok()) return host_port.status();
  absl::StatusOr<std::shared_ptr<internal::Waker>> waker = internal::Waker::Create();
  if (!waker.ok()) return waker.status();
  absl::StatusOr<int> listen_fd = Listen(host_port->first, host_port->second);
  if (!listen_fd.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on HTTP address '", address,
                                               "': ", listen_fd.status().message()));
  }
  const int port = BoundPort(*listen_fd);
  auto loop = std::make_unique<Loop>(*listen_fd, std::move(*waker), std::move(routes), options);
  std::unique_ptr<HttpServer> http(new HttpServer(std::move(loop), port));
  http->thread_ = std::thread([loop = http->loop_.get()] { loop->Run(); });
  return http;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    absl::string_view address, std::map<std::string, HttpHandler> handlers,
    const HttpServerOptions& options) {
  std::vector<HttpRoute> routes;
  for (auto& [path, handler] : handlers) {
    routes.push_back({"GET", path, [handler = std::move(handler)](HttpRequest, HttpResponder r) {
                        r.Respond(handler());
                      }});
  }
  return Start(address, std::move(routes), options);
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
