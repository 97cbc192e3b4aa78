// The state one response shares between the thread that produces it (an HttpResponder's
// caller: a handler, the engine's thread) and the server's poll() loop that sends it.
// The producer formats bytes into `out` under a mutex and wakes the loop; the loop takes
// them and writes them at the pace the client reads. Internal to server/http.
#ifndef MLA_SERVER_HTTP_RESPONSE_CHANNEL_H_
#define MLA_SERVER_HTTP_RESPONSE_CHANNEL_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/http/http_request.h"
#include "server/http/http_server.h"

namespace mla::http::internal {

// Wakes the loop thread from other threads: an eventfd, closed with its last owner, so
// that a responder outliving the server never writes to a reused descriptor.
class Waker {
 public:
  static absl::StatusOr<std::shared_ptr<Waker>> Create();
  explicit Waker(int fd) : fd_(fd) {}
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  int fd() const { return fd_; }
  void Wake() const;
  void Drain() const;  // Loop thread: resets the eventfd after poll() reported it.

 private:
  const int fd_;
};

const char* ReasonPhrase(int status);

// Status line and headers up to the blank line. `content_length` < 0: a streamed body,
// chunked when `chunked`, else delimited by closing the connection.
std::string FormatHead(int status, absl::string_view content_type, const HttpHeaders& headers,
                       int64_t content_length, bool chunked, bool keep_alive);

struct ResponseChannel {
  ResponseChannel(std::shared_ptr<Waker> waker, const RequestHead& head, size_t max_unsent);

  enum class State { kWaiting, kStreaming, kDone };
  struct Taken {
    bool done = false;         // The whole response is in the bytes taken so far.
    bool gone = false;         // The producer overran max_unsent: close the connection.
    bool close_after = false;  // Close once the response is sent.
  };
  // Loop thread: appends the bytes produced since the last call to `into`.
  Taken TakeOutput(std::string& into);
  // Loop thread: the client is gone before the response completed. Runs the disconnect
  // callback once (outside the lock).
  void Disconnect();

  const std::shared_ptr<Waker> waker;
  const bool head_only;
  const bool http11;
  const bool keep_alive;
  const size_t max_unsent;
  // Bytes taken by the loop and not yet sent (updated by the loop after every write), so
  // that the producer sees the whole backlog of a slow reader.
  std::atomic<size_t> loop_unsent{0};

  absl::Mutex mu;
  State state ABSL_GUARDED_BY(mu) = State::kWaiting;
  std::string out ABSL_GUARDED_BY(mu);
  bool close_after ABSL_GUARDED_BY(mu) = false;
  bool gone ABSL_GUARDED_BY(mu) = false;
  std::function<void()> on_disconnect ABSL_GUARDED_BY(mu);
};

}  // namespace mla::http::internal

#endif  // MLA_SERVER_HTTP_RESPONSE_CHANNEL_H_
