#include "client/bench/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client/bench/progress.h"
#include "nlohmann/json.hpp"

namespace mla::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

RequestRecord Ok(int prompt, int tokens, double ttft_s, double e2e_s) {
  RequestRecord r;
  r.prompt_len = prompt;
  r.expected_output_len = tokens;
  r.output_tokens = tokens;
  r.ttft_s = ttft_s;
  r.e2e_s = e2e_s;
  r.itl_s.assign(tokens - 1, (e2e_s - ttft_s) / (tokens - 1));
  return r;
}

RequestRecord Failed(absl::StatusCode code) {
  RequestRecord r;
  r.code = code;
  r.prompt_len = 100;
  r.e2e_s = 0.5;
  return r;
}

RunResult SampleRun() {
  RunResult run;
  run.duration_s = 2.0;
  run.records.push_back(Ok(10, 5, 0.1, 0.5));  // tpot = 0.4 / 4 = 100 ms
  run.records.push_back(Ok(20, 3, 0.2, 0.6));  // tpot = 0.4 / 2 = 200 ms
  run.records.push_back(Ok(30, 1, 0.3, 0.3));  // one token: no tpot, no itl
  run.records.back().cached_prompt_tokens = 16;
  run.records.push_back(Failed(absl::StatusCode::kDeadlineExceeded));
  run.records.push_back(Failed(absl::StatusCode::kDeadlineExceeded));
  run.records.push_back(Failed(absl::StatusCode::kUnavailable));
  return run;
}

BenchConfig SampleConfig() {
  BenchConfig c;
  c.target = "127.0.0.1:1";
  c.model = "tiny";
  c.runner.concurrency = 3;
  c.runner.num_requests = 6;
  c.workload.prompt_len = {LengthDistribution::Kind::kUniform, 0, 10, 30};
  c.workload.vocab_size = 512;
  return c;
}

TEST(ReportTest, CountsThroughputAndLatencies) {
  const BenchReport r = BuildReport(SampleConfig(), SampleRun());
  EXPECT_EQ(r.completed, 3);
  EXPECT_EQ(r.failed, 3);
  EXPECT_EQ(r.failed_by_code.at("DEADLINE_EXCEEDED"), 2);
  EXPECT_EQ(r.failed_by_code.at("UNAVAILABLE"), 1);
  // Token totals count completed requests only.
  EXPECT_EQ(r.prompt_tokens, 60);
  EXPECT_EQ(r.cached_prompt_tokens, 16);
  EXPECT_EQ(r.output_tokens, 9);
  EXPECT_EQ(r.output_len_mismatches, 0);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(r.output_token_throughput, 4.5);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 34.5);
  EXPECT_EQ(r.ttft_ms.count, 3);
  EXPECT_NEAR(r.ttft_ms.mean, 200, 1e-9);
  EXPECT_NEAR(r.ttft_ms.p50, 200, 1e-9);
  EXPECT_EQ(r.tpot_ms.count, 2);
  EXPECT_NEAR(r.tpot_ms.min, 100, 1e-9);
  EXPECT_NEAR(r.tpot_ms.max, 200, 1e-9);
  EXPECT_EQ(r.itl_ms.count, 6);  // 4 + 2 tokens after a first.
  EXPECT_NEAR(r.e2e_ms.max, 600, 1e-9);
}

TEST(ReportTest, CountsOutputLengthMismatches) {
  RunResult run = SampleRun();
  run.records[0].output_tokens = 4;  // Server stopped early.
  EXPECT_EQ(BuildReport(SampleConfig(), run).output_len_mismatches, 1);
}

TEST(ReportTest, TextHasEveryFigure) {
  const std::string text = FormatText(BuildReport(SampleConfig(), SampleRun()));
  EXPECT_THAT(text, HasSubstr("closed loop, concurrency 3"));
  EXPECT_THAT(text, HasSubstr("uniform [10, 30]"));
  EXPECT_THAT(text, HasSubstr("Completed requests           3"));
  EXPECT_THAT(text, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(text, HasSubstr("Request throughput (req/s)   1.500"));
  EXPECT_THAT(text, HasSubstr("Time to first token"));
  EXPECT_THAT(text, HasSubstr("Inter-token latency"));
  EXPECT_THAT(text, HasSubstr("Time per output token"));
  EXPECT_THAT(text, HasSubstr("End-to-end latency"));
}

TEST(ReportTest, JsonRoundTrips) {
  const BenchReport r = BuildReport(SampleConfig(), SampleRun());
  const nlohmann::json j = nlohmann::json::parse(FormatJson(r));
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["failed"], 3);
  EXPECT_EQ(j["failed_by_code"]["DEADLINE_EXCEEDED"], 2);
  EXPECT_EQ(j["output_tokens"], 9);
  EXPECT_DOUBLE_EQ(j["request_throughput"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["tpot_ms"]["max"].get<double>(), r.tpot_ms.max);
  EXPECT_DOUBLE_EQ(j["ttft_ms"]["p90"].get<double>(), r.ttft_ms.p90);
  EXPECT_EQ(j["config"]["mode"], "closed_loop");
  EXPECT_EQ(j["config"]["prompt_len"]["kind"], "uniform");
  EXPECT_EQ(j["config"]["prompt_len"]["max"], 30);
}

TEST(ProgressLineTest, BarOnTerminalPlainLineOtherwise) {
  LiveCounters live;
  live.completed = 5;
  live.failed = 1;
  live.in_flight = 2;
  live.output_tokens = 100;
  ProgressOptions o;
  o.total_requests = 12;
  o.terminal = true;
  const std::string bar = ProgressLine(o, live, 2.0);
  EXPECT_THAT(bar, StartsWith("[###############..............."));
  EXPECT_THAT(bar, HasSubstr(" 50% 6/12 done, 1 failed, 2 in flight"));
  EXPECT_THAT(bar, HasSubstr("50.0 output tok/s"));
  o.terminal = false;
  EXPECT_THAT(ProgressLine(o, live, 2.0), StartsWith("progress:  50% 6/12 done"));
}

TEST(ProgressLineTest, DurationBoundRunsShowTimeFraction) {
  LiveCounters live;
  ProgressOptions o;
  o.duration_s = 10;
  EXPECT_THAT(ProgressLine(o, live, 2.5), HasSubstr(" 25% 0 done"));
}

}  // namespace
}  // namespace mla::bench
