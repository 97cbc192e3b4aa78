// mla-bench against a real mla-server (tiny model, port 0): the library in a closed loop
// and the mla-bench binary in an open loop with a JSON report.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/bench/report.h"
#include "client/bench/runner.h"
#include "client/bench/workload.h"
#include "client/mla_client.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace mla::bench {
namespace {

using Kind = LengthDistribution::Kind;
using ::mla::testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";

// Positive, ordered percentiles.
void ExpectSane(const Summary& s, const char* name) {
  EXPECT_GT(s.count, 0) << name;
  EXPECT_GT(s.min, 0.0) << name;
  EXPECT_LE(s.min, s.p50) << name;
  EXPECT_LE(s.p50, s.p90) << name;
  EXPECT_LE(s.p90, s.p99) << name;
  EXPECT_LE(s.p99, s.max) << name;
  EXPECT_GE(s.mean, s.min) << name;
  EXPECT_LE(s.mean, s.max) << name;
}

class BenchIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = ServerProcess::Start(
        {"--model_dir=" + kModel, "--device=cpu", "--threads=2", "--kv_cache_mib=16"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    ClientOptions options;
    options.target = server_->target();
    MlaClient client(options);
    for (int i = 0; i < 600; ++i) {  // The model loads after the port opens.
      auto health = client.Health();
      if (health.ok() && *health == grpc::health::v1::HealthCheckResponse::SERVING) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "server never became SERVING: " << server_->Log();
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static ServerProcess* server_;
};

ServerProcess* BenchIntegrationTest::server_ = nullptr;

TEST_F(BenchIntegrationTest, ClosedLoopTwelveRequestsAtConcurrencyThree) {
  ClientOptions client_options;
  client_options.target = server_->target();
  auto client = std::make_unique<MlaClient>(client_options);
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();

  BenchConfig config;
  config.target = server_->target();
  config.model = info->model_name();
  config.workload.prompt_len = {Kind::kUniform, 0, 24, 80};
  config.workload.output_len = {Kind::kUniform, 0, 4, 12};
  config.workload.shared_prefix_len = 16;
  config.workload.vocab_size = info->vocab_size();
  config.workload.max_context = info->max_context();
  config.workload.seed = 5;
  config.runner.concurrency = 3;
  config.runner.num_requests = 12;
  config.runner.warmup_requests = 2;
  auto workload = WorkloadGenerator::Create(config.workload);
  ASSERT_TRUE(workload.ok()) << workload.status();
  GenerateFn generate = [&client](const v1::GenerateRequest& request,
                                  const std::function<bool(const v1::GenerateResponse&)>& f) {
    return client->Generate(request, f);
  };
  LiveCounters live;
  auto run = RunBenchmark(config.runner, *workload, generate, &live);
  ASSERT_TRUE(run.ok()) << run.status();
  client.reset();  // An open channel would hold the server's shutdown grace period.

  const BenchReport report = BuildReport(config, *run);
  EXPECT_EQ(report.completed, 12) << FormatText(report) << server_->Log();
  EXPECT_EQ(report.failed, 0) << FormatText(report);
  EXPECT_EQ(report.warmup_completed, 2);
  EXPECT_EQ(report.output_len_mismatches, 0);
  int64_t expected_output = 0;
  int64_t expected_prompt = 0;
  for (uint64_t i = 0; i < 12; ++i) {
    expected_output += workload->Make(i).output_len;
    expected_prompt += static_cast<int64_t>(workload->Make(i).prompt.size());
  }
  EXPECT_EQ(report.output_tokens, expected_output);
  EXPECT_EQ(report.prompt_tokens, expected_prompt);
  for (const RequestRecord& r : run->records) {
    EXPECT_EQ(r.output_tokens, workload->Make(r.index).output_len) << r.index;
  }
  EXPECT_GT(report.duration_s, 0.0);
  EXPECT_GT(report.request_throughput, 0.0);
  EXPECT_GT(report.output_token_throughput, 0.0);
  EXPECT_GT(report.total_token_throughput, report.output_token_throughput);
  ExpectSane(report.ttft_ms, "ttft");
  ExpectSane(report.itl_ms, "itl");
  ExpectSane(report.tpot_ms, "tpot");
  ExpectSane(report.e2e_ms, "e2e");
  EXPECT_LE(report.ttft_ms.max, report.e2e_ms.max);
  EXPECT_EQ(report.tpot_ms.count, 12);  // Every request has at least 4 tokens.
}

TEST_F(BenchIntegrationTest, BinaryRunsOpenLoopAndWritesJson) {
  const std::string dir = ::testing::TempDir();
  const std::string json_path = dir + "/bench.json";
  const std::string out_path = dir + "/bench.out";
  std::remove(json_path.c_str());
  const std::string command =
      std::string(MLA_BENCH_BINARY) + " --target=" + server_->target() +
      " --request_rate=50 --num_requests=6 --prompt_dist=long_context --prompt_len_min=8"
      " --prompt_len_max=256 --output_len=5 --seed=3 --json=" +
      json_path + " > " + out_path + " 2>&1";
  const int rc = std::system(command.c_str());
  std::stringstream out;
  out << std::ifstream(out_path).rdbuf();
  ASSERT_EQ(rc, 0) << out.str();
  EXPECT_NE(out.str().find("Completed requests           6"), std::string::npos) << out.str();
  // Not a terminal: progress comes as plain lines, never a redrawn bar.
  EXPECT_NE(out.str().find("progress: 100% 6/6 done"), std::string::npos) << out.str();
  EXPECT_EQ(out.str().find('\r'), std::string::npos);

  std::ifstream json_file(json_path);
  ASSERT_TRUE(json_file.good());
  const nlohmann::json j = nlohmann::json::parse(json_file);
  EXPECT_EQ(j["completed"], 6);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["output_tokens"], 30);
  EXPECT_EQ(j["config"]["mode"], "open_loop");
  EXPECT_EQ(j["config"]["prompt_len"]["kind"], "long_context");
  EXPECT_GT(j["e2e_ms"]["p50"].get<double>(), 0.0);
}

}  // namespace
}  // namespace mla::bench
