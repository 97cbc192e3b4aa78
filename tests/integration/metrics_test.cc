// mla-server's HTTP exporter end to end: the server runs as a child process with
// --metrics_address=127.0.0.1:0; the test generates over gRPC and scrapes /metrics,
// /healthz and /readyz over a real socket.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "client/mla_client.h"
#include "tests/integration/server_process.h"
#include "tests/server/http/http_get.h"
#include "tests/server/metrics/exposition_parser.h"

namespace mla {
namespace {

using ::testing::HasSubstr;
using testing::ServerProcess;
using ::testing::StartsWith;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";

std::string NewTempDir() {
  static int counter = 0;
  const std::string dir = ::testing::TempDir() + "/mla-metrics-" + std::to_string(getpid()) + "-" +
                          std::to_string(++counter);
  std::filesystem::create_directories(dir);
  return dir;
}

class MetricsEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string port_file = NewTempDir() + "/metrics_port";
    auto server =
        ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", "--kv_cache_mib=16",
                              "--threads=2", "--metrics_address=127.0.0.1:0",
                              "--metrics_port_file=" + port_file, "--attention_probe_every=1"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    // The metrics port file is written before the gRPC one, which Start waited for.
    std::ifstream(port_file) >> metrics_port_;
    ASSERT_GT(metrics_port_, 0) << server_->Log();
    ClientOptions options;
    options.target = server_->target();
    client_ = std::make_unique<MlaClient>(options);
    for (int i = 0; i < 600; ++i) {
      auto ready = testing::HttpGet(metrics_port_, "/readyz");
      if (ready.ok() && ready->status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    }
  }
  testing::Exposition Scrape() {
    auto r = testing::HttpGet(metrics_port_, "/metrics");
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->status, 200);
    EXPECT_THAT(r->headers["content-type"], StartsWith("text/plain; version=0.0.4"));
    auto e = testing::ParseExposition(r->body);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : testing::Exposition();
  }
  v1::GenerateRequest Request(std::vector<int> prompt, int max_tokens) {
    v1::GenerateRequest r;
    for (int t : prompt) r.mutable_token_ids()->add_ids(t);
    r.mutable_sampling()->set_max_tokens(max_tokens);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
  int metrics_port_ = 0;
};

double At(const testing::Exposition& e, const std::string& series) {
  auto it = e.samples.find(series);
  EXPECT_NE(it, e.samples.end()) << series;
  return it == e.samples.end() ? -1 : it->second;
}

TEST_F(MetricsEndToEndTest, HealthReadinessAndGenerateCounters) {
  auto health = testing::HttpGet(metrics_port_, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(testing::HttpGet(metrics_port_, "/readyz")->status, 200);

  auto keep_going = [](const v1::GenerateResponse&) { return true; };
  ASSERT_TRUE(client_->Generate(Request({5, 6, 7, 8}, 8), keep_going).ok());
  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  // The engine publishes its load (the running gauges) at the end of the step whose
  // callback sent the last token, so a scrape right after the call may see the step
  // before: wait for it, bounded.
  testing::Exposition e;
  for (int i = 0; i < 200; ++i) {
    e = Scrape();
    if (e.samples["vllm:num_requests_running"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(At(e, "mla_prompt_tokens_total"), 4);
  EXPECT_EQ(At(e, "mla_generation_tokens_total"), 8);
  EXPECT_EQ(At(e, "mla_requests_finished_total{finished_reason=\"length\",api=\"grpc\"}"), 1);
  EXPECT_EQ(At(e, "mla_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(At(e, "mla_inter_token_latency_seconds_count"), 7);
  EXPECT_EQ(At(e,
               "mla_rpcs_handled_total{service=\"mla.v1.Inference\",method=\"Generate\","
               "code=\"OK\"}"),
            1);
  EXPECT_EQ(At(e, "mla_kv_cache_capacity_blocks"), info->kv_num_blocks());
  EXPECT_EQ(At(e, "mla_kv_cache_blocks{state=\"used\"}"), 0);
  EXPECT_EQ(At(e, "mla_kv_cache_capacity_bytes"),
            At(e, "mla_memory_bytes{kind=\"kv_cache\",device=\"cpu\"}"));
  // The forward pass ran, so its activation buffers are held and reported.
  EXPECT_GT(At(e, "mla_memory_bytes{kind=\"workspace\",device=\"cpu\"}"), 0);
  EXPECT_EQ(At(e, "mla_kv_cache_bytes_per_token"), info->kv_bytes_per_token());
  EXPECT_EQ(At(e, "mla_kv_cache_mha_equivalent_bytes_per_token"), info->mha_bytes_per_token());
  EXPECT_EQ(At(e, "mla_prefix_cache_query_tokens_total"), 4);
  EXPECT_EQ(At(e, "vllm:num_requests_running"), 0);
  EXPECT_EQ(At(e, "vllm:num_requests_waiting"), 0);
  EXPECT_EQ(At(e, "vllm:kv_cache_usage_perc"), 0);
  EXPECT_EQ(e.types.at("vllm:kv_cache_usage_perc"), "gauge");
}

// Mid-stream the gauges show the running request and its blocks; a cancelled stream is
// counted as an abort and as a CANCELLED call.
TEST_F(MetricsEndToEndTest, GaugesWhileRunningAndCancelledCall) {
  testing::Exposition during;
  int seen = 0;
  absl::Status s = client_->Generate(Request({1, 2, 3}, 20000), [&](const v1::GenerateResponse&) {
    if (++seen == 3) during = Scrape();
    return seen < 3;
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(At(during, "mla_requests_running"), 1);
  EXPECT_EQ(At(during, "vllm:num_requests_running"), 1);
  EXPECT_GT(At(during, "mla_kv_cache_blocks{state=\"used\"}"), 0);
  EXPECT_GT(At(during, "mla_kv_cache_used_bytes"), 0);
  EXPECT_GT(At(during, "vllm:kv_cache_usage_perc"), 0);
  EXPECT_EQ(At(during, "vllm:kv_cache_usage_perc"), At(during, "mla_kv_cache_usage_ratio"));

  // The engine counts the abort when it drops the request; the call is counted when gRPC
  // ends it, which can come later (a write in flight delays the reactor's Finish): wait
  // for both.
  const std::string cancelled_call =
      "mla_rpcs_handled_total{service=\"mla.v1.Inference\",method=\"Generate\","
      "code=\"CANCELLED\"}";
  testing::Exposition after;
  for (int i = 0; i < 200; ++i) {
    after = Scrape();
    if (after.samples["mla_requests_finished_total{finished_reason=\"abort\",api=\"grpc\"}"] == 1 &&
        after.samples[cancelled_call] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(At(after, "mla_requests_finished_total{finished_reason=\"abort\",api=\"grpc\"}"), 1);
  EXPECT_EQ(At(after, cancelled_call), 1);
  EXPECT_EQ(At(after, "mla_kv_cache_blocks{state=\"used\"}"), 0);
}

// Attention telemetry: probed rows land in the histograms by layer and context bucket,
// and a request that asks gets its own tokens' values over gRPC.
TEST_F(MetricsEndToEndTest, AttentionSharpnessHistogramsAndPerRequestStats) {
  v1::GenerateRequest request = Request({1, 2, 3, 4, 5}, 4);
  request.set_attention_stats(true);
  v1::Finished finished;
  ASSERT_TRUE(client_
                  ->Generate(request,
                             [&](const v1::GenerateResponse& m) {
                               if (m.has_finished()) finished = m.finished();
                               return true;
                             })
                  .ok());
  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  const int layers = info->num_hidden_layers();
  ASSERT_EQ(finished.attention_stats_size(), 4 * layers);
  for (int i = 0; i < finished.attention_stats_size(); ++i) {
    const v1::AttentionStat& s = finished.attention_stats(i);
    EXPECT_EQ(s.layer(), i % layers);
    EXPECT_EQ(s.context_tokens(), 5 + i / layers);
    EXPECT_GT(s.max_weight(), 0.0f);
    EXPECT_LE(s.max_weight(), 1.0f + 1e-6f);
  }
  const testing::Exposition e = Scrape();
  // --attention_probe_every=1: every token of this request was probed in every layer.
  EXPECT_EQ(At(e, "mla_attention_entropy_nats_count{layer=\"0\",context=\"256\"}"), 4);
  EXPECT_EQ(At(e, "mla_attention_max_weight_count{layer=\"0\",context=\"256\"}"), 4);
}

TEST(MetricsAddressTest, EmptyAddressDisablesAndTakenPortFails) {
  const std::string dir = NewTempDir();
  auto disabled =
      ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu",
                            "--metrics_address=", "--metrics_port_file=" + dir + "/disabled"});
  ASSERT_TRUE(disabled.ok()) << disabled.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/disabled"));
  EXPECT_THAT((*disabled)->Log(), HasSubstr("metrics: disabled"));

  auto first = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu",
                                     "--metrics_address=127.0.0.1:0",
                                     "--metrics_port_file=" + dir + "/first"});
  ASSERT_TRUE(first.ok()) << first.status();
  int port = 0;
  std::ifstream(dir + "/first") >> port;
  ASSERT_GT(port, 0);
  // The same port again: the server refuses to start rather than run unobserved.
  auto second = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu",
                                      "--metrics_address=127.0.0.1:" + std::to_string(port)});
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("--metrics_address"));
  EXPECT_EQ((*disabled)->Stop(SIGTERM, 20), 0);
  EXPECT_EQ((*first)->Stop(SIGTERM, 20), 0);
}

}  // namespace
}  // namespace mla
