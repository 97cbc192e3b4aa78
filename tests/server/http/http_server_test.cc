// The embedded HTTP exporter on port 0 over a real socket: /metrics with the 0.0.4
// content type, /healthz, /readyz following the readiness function, 404/405, address
// parsing and a port that is already taken.
#include "server/http/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "server/http/admin_endpoints.h"
#include "server/metrics/text_exposition.h"
#include "tests/server/http/http_get.h"

namespace mla::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("demo_hits_total", "Hits").Get().Increment(5);
    auto server = HttpServer::Start(
        "127.0.0.1:0", AdminHandlers(&registry_, &encoder_, [this] { return ready_.load(); }));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }

  metrics::MetricsRegistry registry_;
  metrics::TextEncoder encoder_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(AdminServerTest, MetricsInTextFormat) {
  auto r = testing::HttpGet(server_->port(), "/metrics");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->headers["content-type"], StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(r->body, HasSubstr("# TYPE demo_hits_total counter\ndemo_hits_total 5\n"));
  // Every scrape reads the current values.
  registry_.AddGauge("demo_late", "Added after start").Get().Set(2);
  r = testing::HttpGet(server_->port(), "/metrics");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->body, HasSubstr("demo_late 2\n"));
}

TEST_F(AdminServerTest, HealthAndReadiness) {
  auto health = testing::HttpGet(server_->port(), "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  auto ready = testing::HttpGet(server_->port(), "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 503);
  ready_ = true;
  ready = testing::HttpGet(server_->port(), "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ready\n");
  ready_ = false;  // Draining.
  EXPECT_EQ(testing::HttpGet(server_->port(), "/readyz")->status, 503);
}

TEST_F(AdminServerTest, UnknownPathAndMethod) {
  EXPECT_EQ(testing::HttpGet(server_->port(), "/nope")->status, 404);
  auto post = testing::HttpRequest(server_->port(), "POST", "/metrics");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->status, 405);
  auto head = testing::HttpRequest(server_->port(), "HEAD", "/healthz");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->body, "");
}

TEST_F(AdminServerTest, StopClosesThePortAndIsIdempotent) {
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  EXPECT_FALSE(testing::HttpGet(port, "/healthz").ok());
}

TEST(HttpServerTest, PortInUseIsUnavailable) {
  auto first = HttpServer::Start("127.0.0.1:0", std::vector<HttpRoute>{});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second =
      HttpServer::Start("127.0.0.1:" + std::to_string((*first)->port()), std::vector<HttpRoute>{});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ParseHostPortTest, Forms) {
  EXPECT_EQ(*ParseHostPort("127.0.0.1:9090"), std::make_pair(std::string("127.0.0.1"), 9090));
  EXPECT_EQ(*ParseHostPort("0.0.0.0:0"), std::make_pair(std::string("0.0.0.0"), 0));
  EXPECT_EQ(*ParseHostPort(":8080"), std::make_pair(std::string("0.0.0.0"), 8080));
  EXPECT_EQ(*ParseHostPort("[::1]:9"), std::make_pair(std::string("::1"), 9));
  EXPECT_EQ(*ParseHostPort("localhost:1"), std::make_pair(std::string("localhost"), 1));
  EXPECT_FALSE(ParseHostPort("9090").ok());
  EXPECT_FALSE(ParseHostPort("host:").ok());
  EXPECT_FALSE(ParseHostPort("host:65536").ok());
  EXPECT_FALSE(ParseHostPort("host:-1").ok());
  EXPECT_FALSE(ParseHostPort("host:http").ok());
}

}  // namespace
}  // namespace mla::http
