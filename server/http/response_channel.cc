#include "server/http/response_channel.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mla::http {
namespace internal {

absl::StatusOr<std::shared_ptr<Waker>> Waker::Create() {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  return std::make_shared<Waker>(fd);
}

Waker::~Waker() { close(fd_); }

void Waker::Wake() const {
  const uint64_t one = 1;
  (void)!write(fd_, &one, sizeof(one));
}

void Waker::Drain() const {
  uint64_t count = 0;
  (void)!read(fd_, &count, sizeof(count));
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
  }
  return "Unknown";
}

std::string FormatHead(int status, absl::string_view content_type, const HttpHeaders& headers,
                       int64_t content_length, bool chunked, bool keep_alive) {
  std::string out = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                                 "\r\nContent-Type: ", content_type, "\r\n");
  if (content_length >= 0) {
    absl::StrAppend(&out, "Content-Length: ", content_length, "\r\n");
  } else if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  absl::StrAppend(&out, "Connection: ", keep_alive ? "keep-alive" : "close", "\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
  out += "\r\n";
  return out;
}

ResponseChannel::ResponseChannel(std::shared_ptr<Waker> w, const RequestHead& head,
                                 size_t max_unsent_bytes)
    : waker(std::move(w)),
      head_only(head.method == "HEAD"),
      http11(head.http11),
      keep_alive(head.keep_alive),
      max_unsent(max_unsent_bytes) {}

ResponseChannel::Taken ResponseChannel::TakeOutput(std::string& into) {
  absl::MutexLock lock(&mu);
  into += out;
  out.clear();
  return Taken{state == State::kDone, gone, close_after};
}

void ResponseChannel::Disconnect() {
  std::function<void()> fn;
  {
    absl::MutexLock lock(&mu);
    gone = true;
    if (state != State::kDone) fn = std::move(on_disconnect);
    on_disconnect = nullptr;
  }
  if (fn) fn();
}

}  // namespace internal

using internal::ResponseChannel;

void HttpResponder::Respond(HttpResponse response) const {
  ResponseChannel& c = *channel_;
  {
    absl::MutexLock lock(&c.mu);
    if (c.state != ResponseChannel::State::kWaiting || c.gone) return;
    c.close_after = !c.keep_alive;
    c.out = internal::FormatHead(response.status, response.content_type, response.headers,
                                 static_cast<int64_t>(response.body.size()),
                                 /*chunked=*/false, !c.close_after);
    if (!c.head_only) c.out += response.body;
    c.state = ResponseChannel::State::kDone;
    c.on_disconnect = nullptr;
  }
  c.waker->Wake();
}

void HttpResponder::StartStream(int status, absl::string_view content_type,
                                HttpHeaders headers) const {
  ResponseChannel& c = *channel_;
  {
    absl::MutexLock lock(&c.mu);
    if (c.state != ResponseChannel::State::kWaiting || c.gone) return;
    // An HTTP/1.0 client knows no chunks: the end of the body is the end of the connection.
    c.close_after = !c.keep_alive || !c.http11;
    c.out = internal::FormatHead(status, content_type, headers, -1, c.http11, !c.close_after);
    c.state = ResponseChannel::State::kStreaming;
  }
  c.waker->Wake();
}

bool HttpResponder::Send(absl::string_view data) const {
  ResponseChannel& c = *channel_;
  {
    absl::MutexLock lock(&c.mu);
    if (c.gone || c.state != ResponseChannel::State::kStreaming) return false;
    if (data.empty() || c.head_only) return true;  // An empty chunk would end the body.
    if (c.out.size() + c.loop_unsent.load() + data.size() > c.max_unsent) {
      // A reader this far behind is treated as gone: the loop closes its connection,
      // and the producer stops instead of buffering without bound.
      c.gone = true;
      c.on_disconnect = nullptr;
    } else if (c.http11) {
      absl::StrAppend(&c.out, absl::Hex(data.size()), "\r\n", data, "\r\n");
    } else {
      c.out.append(data.data(), data.size());
    }
  }
  c.waker->Wake();
  absl::MutexLock lock(&c.mu);
  return !c.gone;
}

void HttpResponder::End() const {
  ResponseChannel& c = *channel_;
  {
    absl::MutexLock lock(&c.mu);
    if (c.gone || c.state != ResponseChannel::State::kStreaming) return;
    if (c.http11 && !c.head_only) c.out += "0\r\n\r\n";
    c.state = ResponseChannel::State::kDone;
    c.on_disconnect = nullptr;
  }
  c.waker->Wake();
}

void HttpResponder::OnDisconnect(std::function<void()> fn) const {
  ResponseChannel& c = *channel_;
  {
    absl::MutexLock lock(&c.mu);
    if (c.state == ResponseChannel::State::kDone) return;
    if (!c.gone) {
      c.on_disconnect = std::move(fn);
      return;
    }
  }
  fn();
}

}  // namespace mla::http
