// Routes with bodies and streamed answers: POST bodies and their bound (413), chunked
// request bodies (411), method routing (405 with Allow), streamed responses (chunked for
// HTTP/1.1, close-delimited for HTTP/1.0) produced from another thread, a client that
// disconnects mid-stream (the disconnect callback runs at once), a reader that stops
// reading (the producer is told to stop), and a stop with a response pending.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "server/http/http_server.h"
#include "tests/server/http/http_get.h"
#include "tests/server/http/socket_helpers.h"

namespace mla::http {
namespace {

using testing::ConnectOrDie;
using ::testing::HasSubstr;
using testing::ReadToClose;
using testing::ReadUntil;
using testing::Send;
using ::testing::StartsWith;

std::string Post(absl::string_view path, absl::string_view body, absl::string_view extra = "") {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nContent-Length: ", body.size(),
                      "\r\n", extra, "\r\n", body);
}

// A route whose handler keeps its responder for the test to drive from another thread.
struct Pending {
  absl::Mutex mu;
  std::vector<HttpResponder> responders ABSL_GUARDED_BY(mu);
  std::atomic<int> disconnects{0};

  HttpRoute Route(const char* method, const char* path) {
    return {method, path, [this](HttpRequest, HttpResponder r) {
              r.OnDisconnect([this] { disconnects.fetch_add(1); });
              absl::MutexLock lock(&mu);
              responders.push_back(r);
            }};
  }
  // Waits for the n-th request to arrive.
  HttpResponder Get(size_t n) {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](std::pair<Pending*, size_t>* a)
             ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->first->responders.size() > a->second; },
        new std::pair<Pending*, size_t>(this, n)));  // Leaked: a test helper.
    return responders[n];
  }
};

bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 500 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

std::vector<HttpRoute> EchoRoutes() {
  return {{"POST", "/echo", [](HttpRequest r, HttpResponder w) {
             w.Respond({200, "text/plain", absl::StrCat(r.head.method, " ", r.body), {}});
           }}};
}

TEST(HttpRoutesTest, PostBodiesAreReadAndConnectionsKeptAlive) {
  auto server = HttpServer::Start("127.0.0.1:0", EchoRoutes());
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = ConnectOrDie((*server)->port());
  // Two pipelined requests, the second body split from its head.
  Send(fd, Post("/echo", "first") + Post("/echo", "second", "Connection: close\r\n"));
  const std::string raw = ReadToClose(fd);
  close(fd);
  EXPECT_THAT(raw, HasSubstr("Content-Length: 10\r\nConnection: keep-alive\r\n\r\nPOST first"));
  EXPECT_THAT(raw, HasSubstr("Content-Length: 11\r\nConnection: close\r\n\r\nPOST second"));
}

TEST(HttpRoutesTest, OversizedChunkedAndWrongMethodRequestsAreRefused) {
  HttpServerOptions options;
  options.max_body_bytes = 16;
  auto server = HttpServer::Start("127.0.0.1:0", EchoRoutes(), options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  struct Case {
    std::string request;
    std::string expected;
  };
  const Case cases[] = {
      {Post("/echo", std::string(17, 'x')), "HTTP/1.1 413 "},
      {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
       "HTTP/1.1 411 "},
      {"GET /echo HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
      {Post("/nope", "x"), "HTTP/1.1 404 "},
      {"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
       "HTTP/1.1 400 "},
  };
  for (const Case& c : cases) {
    const int fd = ConnectOrDie(port);
    Send(fd, c.request + "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
    const std::string raw = ReadToClose(fd);
    close(fd);
    EXPECT_THAT(raw, StartsWith(c.expected)) << c.request;
    if (c.expected == "HTTP/1.1 405 ") {
      EXPECT_THAT(raw, HasSubstr("Allow: POST\r\n"));
    } else {
      // The body was not read: the connection is closed after the answer.
      EXPECT_THAT(raw, HasSubstr("Connection: close\r\n")) << c.request;
      EXPECT_EQ(raw.find("HTTP/1.1", 1), std::string::npos) << raw;
    }
  }
  // Exactly at the bound is fine.
  const int fd = ConnectOrDie(port);
  Send(fd, Post("/echo", std::string(16, 'y'), "Connection: close\r\n"));
  EXPECT_THAT(ReadToClose(fd), HasSubstr("200 OK"));
  close(fd);
}

TEST(HttpRoutesTest, StreamFromAnotherThreadIsChunkedAndOtherClientsAreServed) {
  Pending pending;
  std::vector<HttpRoute> routes = {pending.Route("POST", "/stream"),
                                   {"GET", "/healthz", [](HttpRequest, HttpResponder w) {
                                      w.Respond({200, "text/plain", "ok\n", {}});
                                    }}};
  auto server = HttpServer::Start("127.0.0.1:0", std::move(routes));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const int fd = ConnectOrDie(port);
  Send(fd, Post("/stream", "{}"));
  HttpResponder r = pending.Get(0);
  r.StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
  EXPECT_TRUE(r.Send("data: one\n\n"));
  EXPECT_THAT(ReadUntil(fd, "one"), HasSubstr("Transfer-Encoding: chunked\r\n"));
  // While the stream is open, another client is answered at once.
  absl::StatusOr<testing::HttpResult> health = testing::HttpGet(port, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  std::thread producer([r] {
    EXPECT_TRUE(r.Send("data: two\n\n"));
    r.End();
  });
  producer.join();
  const std::string rest = ReadUntil(fd, "0\r\n\r\n");
  EXPECT_THAT(rest, HasSubstr("b\r\ndata: two\n\n\r\n0\r\n\r\n"));
  EXPECT_FALSE(r.Send("late"));  // The response is complete.
  close(fd);
  EXPECT_EQ(pending.disconnects.load(), 0);  // Closing after the end is no disconnect.
}

TEST(HttpRoutesTest, Http10StreamIsDelimitedByClose) {
  Pending pending;
  auto server = HttpServer::Start("127.0.0.1:0", {pending.Route("POST", "/stream")});
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = ConnectOrDie((*server)->port());
  Send(fd, "POST /stream HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
  HttpResponder r = pending.Get(0);
  r.StartStream(200, "text/event-stream");
  r.Send("data: a\n\n");
  r.End();
  const std::string raw = ReadToClose(fd);
  close(fd);
  EXPECT_THAT(raw, HasSubstr("Connection: close\r\n\r\ndata: a\n\n"));
  EXPECT_EQ(raw.find("Transfer-Encoding"), std::string::npos);
}

TEST(HttpRoutesTest, ClientDisconnectMidStreamRunsTheCallbackAndStopsSends) {
  Pending pending;
  auto server = HttpServer::Start("127.0.0.1:0", {pending.Route("POST", "/stream")});
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = ConnectOrDie((*server)->port());
  Send(fd, Post("/stream", "{}"));
  HttpResponder r = pending.Get(0);
  r.StartStream(200, "text/event-stream");
  ASSERT_TRUE(r.Send("data: x\n\n"));
  ReadUntil(fd, "data: x");
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return pending.disconnects.load() == 1; }));
  EXPECT_FALSE(r.Send("data: y\n\n"));
  // A callback registered after the disconnect runs at once.
  std::atomic<bool> late{false};
  r.OnDisconnect([&] { late = true; });
  EXPECT_TRUE(late.load());
  EXPECT_EQ(pending.disconnects.load(), 1);
}

TEST(HttpRoutesTest, DisconnectBeforeAnyAnswerIsSeen) {
  Pending pending;
  auto server = HttpServer::Start("127.0.0.1:0", {pending.Route("POST", "/wait")});
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = ConnectOrDie((*server)->port());
  Send(fd, Post("/wait", "{}"));
  pending.Get(0);
  shutdown(fd, SHUT_RDWR);
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return pending.disconnects.load() == 1; }));
}

TEST(HttpRoutesTest, ReaderThatStopsReadingIsCutOffAtTheUnsentBound) {
  Pending pending;
  HttpServerOptions options;
  options.max_unsent_bytes = 256 << 10;
  auto server = HttpServer::Start("127.0.0.1:0", {pending.Route("POST", "/stream")}, options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = ConnectOrDie((*server)->port());
  const int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  Send(fd, Post("/stream", "{}"));
  HttpResponder r = pending.Get(0);
  r.StartStream(200, "text/event-stream");
  // The client reads nothing: the socket buffers fill, then the unsent bound trips. The
  // producer is never blocked; it is told to stop.
  const std::string piece(8192, 'z');
  int sent = 0;
  while (r.Send(piece) && sent < 100000) ++sent;
  EXPECT_LT(sent, 100000);
  EXPECT_GT(sent, 0);
  EXPECT_FALSE(r.Send(piece));
  close(fd);
}

TEST(HttpRoutesTest, StopWithAPendingResponseRunsItsCallback) {
  Pending pending;
  auto server = HttpServer::Start("127.0.0.1:0", {pending.Route("POST", "/wait")});
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = ConnectOrDie((*server)->port());
  Send(fd, Post("/wait", "{}"));
  HttpResponder r = pending.Get(0);
  (*server)->Stop();
  EXPECT_EQ(pending.disconnects.load(), 1);
  // The responder outlives the server harmlessly.
  r.Respond({200, "text/plain", "late", {}});
  EXPECT_FALSE(r.Send("x"));
  close(fd);
}

}  // namespace
}  // namespace mla::http
