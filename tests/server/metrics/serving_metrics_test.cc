// The service's metrics as the engine's observer and the RPC counter: what each hook
// records, in the exposition as a scraper reads it.
#include "server/metrics/serving_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "server/metrics/text_exposition.h"
#include "tests/server/metrics/exposition_parser.h"

namespace mla::metrics {
namespace {

class ServingMetricsTest : public ::testing::Test {
 protected:
  testing::Exposition Scrape() {
    auto e = testing::ParseExposition(TextEncoder().Encode(registry_.Collect()));
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : testing::Exposition();
  }
  double Sample(const std::string& series) {
    testing::Exposition e = Scrape();
    auto it = e.samples.find(series);
    EXPECT_NE(it, e.samples.end()) << series;
    return it == e.samples.end() ? -1 : it->second;
  }

  MetricsRegistry registry_;
  ServingMetrics metrics_{registry_};
};

RequestStats Finished(FinishReason reason, int prompt, int completion) {
  RequestStats r;
  r.reason = reason;
  r.prompt_tokens = prompt;
  r.cached_prompt_tokens = 64;
  r.completion_tokens = completion;
  r.queue_seconds = 0.002;
  r.prefill_seconds = 0.05;
  r.ttft_seconds = 0.052;
  r.decode_seconds = 1.0;
  r.e2e_seconds = 1.052;
  return r;
}

TEST_F(ServingMetricsTest, FinishedRequestRecordsTokensReasonAndLatencies) {
  metrics_.OnRequestFinished(Finished(FinishReason::kLength, 100, 16));
  metrics_.OnRequestFinished(Finished(FinishReason::kStop, 20, 4));
  EXPECT_EQ(Sample("mla_prompt_tokens_total"), 120);
  EXPECT_EQ(Sample("mla_generation_tokens_total"), 20);
  EXPECT_EQ(Sample("mla_prompt_cached_tokens_total"), 128);
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"length\",api=\"grpc\"}"), 1);
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"stop\",api=\"grpc\"}"), 1);
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"abort\",api=\"grpc\"}"), 0);
  EXPECT_EQ(Sample("mla_time_to_first_token_seconds_count"), 2);
  EXPECT_EQ(Sample("mla_time_to_first_token_seconds_bucket{le=\"0.04\"}"), 0);
  EXPECT_EQ(Sample("mla_time_to_first_token_seconds_bucket{le=\"0.06\"}"), 2);
  EXPECT_EQ(Sample("mla_request_queue_time_seconds_bucket{le=\"0.001\"}"), 0);
  EXPECT_EQ(Sample("mla_request_queue_time_seconds_bucket{le=\"0.005\"}"), 2);
  EXPECT_EQ(Sample("mla_request_decode_time_seconds_bucket{le=\"1\"}"), 2);  // On the bound.
  EXPECT_EQ(Sample("mla_request_prefill_time_seconds_count"), 2);
  EXPECT_EQ(Sample("mla_e2e_request_latency_seconds_bucket{le=\"1\"}"), 0);
  EXPECT_EQ(Sample("mla_e2e_request_latency_seconds_bucket{le=\"2.5\"}"), 2);
  EXPECT_EQ(Sample("mla_request_prompt_tokens_bucket{le=\"20\"}"), 1);
  EXPECT_EQ(Sample("mla_request_prompt_tokens_bucket{le=\"100\"}"), 2);
  EXPECT_EQ(Sample("mla_request_generation_tokens_sum"), 20);
}

TEST_F(ServingMetricsTest, FrontEndsAreCountedApartAndHttpByPathAndCode) {
  RequestStats http = Finished(FinishReason::kStopSequence, 10, 2);
  http.api = "openai";
  metrics_.OnRequestFinished(http);
  metrics_.OnRequestFinished(Finished(FinishReason::kStopSequence, 10, 2));
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"stop_sequence\",api=\"openai\"}"),
            1);
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"stop_sequence\",api=\"grpc\"}"),
            1);
  metrics_.RecordHttp("/v1/completions", 200);
  metrics_.RecordHttp("/v1/completions", 200);
  metrics_.RecordHttp("/v1/chat/completions", 429);
  EXPECT_EQ(Sample("mla_http_requests_total{path=\"/v1/completions\",code=\"200\"}"), 2);
  EXPECT_EQ(Sample("mla_http_requests_total{path=\"/v1/chat/completions\",code=\"429\"}"), 1);
}

TEST_F(ServingMetricsTest, RequestWithoutTokensSkipsPhaseHistograms) {
  RequestStats aborted = Finished(FinishReason::kAbort, 10, 0);
  aborted.ttft_seconds = 0;
  metrics_.OnRequestFinished(aborted);
  RequestStats failed = Finished(FinishReason::kAbort, 10, 3);
  failed.failed = true;
  metrics_.OnRequestFinished(failed);
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"abort\",api=\"grpc\"}"), 1);
  EXPECT_EQ(Sample("mla_requests_finished_total{finished_reason=\"error\",api=\"grpc\"}"), 1);
  EXPECT_EQ(Sample("mla_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(Sample("mla_request_queue_time_seconds_count"), 1);
  EXPECT_EQ(Sample("mla_e2e_request_latency_seconds_count"), 2);
  EXPECT_EQ(Sample("mla_request_generation_tokens_bucket{le=\"1\"}"), 1);
}

TEST_F(ServingMetricsTest, StepsAndInterTokenLatency) {
  metrics_.OnStep({/*prefill_tokens=*/500, /*decode_tokens=*/12, /*num_sequences=*/13, 0.25});
  metrics_.OnStep({0, 3, 3, 0.004});
  metrics_.OnInterTokenLatency(0.001);  // On the first bound: 1 ms resolution.
  metrics_.OnInterTokenLatency(0.0015);
  metrics_.OnInterTokenLatency(0.5);
  EXPECT_EQ(Sample("mla_engine_tokens_total{phase=\"prefill\"}"), 500);
  EXPECT_EQ(Sample("mla_engine_tokens_total{phase=\"decode\"}"), 15);
  EXPECT_EQ(Sample("mla_engine_step_duration_seconds_bucket{le=\"0.004\"}"), 1);
  EXPECT_EQ(Sample("mla_engine_step_duration_seconds_count"), 2);
  EXPECT_EQ(Sample("mla_engine_step_tokens_bucket{le=\"4\"}"), 1);
  EXPECT_EQ(Sample("mla_engine_step_tokens_bucket{le=\"256\"}"), 1);
  EXPECT_EQ(Sample("mla_engine_step_tokens_bucket{le=\"512\"}"), 2);  // 512 is on the bound.
  EXPECT_EQ(Sample("mla_engine_step_sequences_bucket{le=\"16\"}"), 2);
  EXPECT_EQ(Sample("mla_inter_token_latency_seconds_bucket{le=\"0.001\"}"), 1);
  EXPECT_EQ(Sample("mla_inter_token_latency_seconds_bucket{le=\"0.002\"}"), 2);
  EXPECT_EQ(Sample("mla_inter_token_latency_seconds_count"), 3);
}

TEST_F(ServingMetricsTest, RpcsByMethodAndCode) {
  metrics_.RecordRpc("mla.v1.Inference", "Generate", absl::StatusCode::kOk);
  metrics_.RecordRpc("mla.v1.Inference", "Generate", absl::StatusCode::kOk);
  metrics_.RecordRpc("mla.v1.Inference", "Generate", absl::StatusCode::kInvalidArgument);
  metrics_.RecordRpc("mla.v1.Inference", "Abort", absl::StatusCode::kNotFound);
  const std::string prefix = "mla_rpcs_handled_total{service=\"mla.v1.Inference\",method=";
  EXPECT_EQ(Sample(prefix + "\"Generate\",code=\"OK\"}"), 2);
  EXPECT_EQ(Sample(prefix + "\"Generate\",code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(Sample(prefix + "\"Abort\",code=\"NOT_FOUND\"}"), 1);
}

TEST_F(ServingMetricsTest, BuildInfoAndNames) {
  testing::Exposition e = Scrape();
  bool build_info = false;
  for (const auto& [series, value] : e.samples) {
    if (series.rfind("mla_build_info{version=\"", 0) == 0) build_info = value == 1;
  }
  EXPECT_TRUE(build_info);
  for (const auto& [name, type] : e.types) {
    EXPECT_EQ(name.rfind("mla_", 0), 0u) << name;
    if (type == "counter") {
      EXPECT_THAT(name, ::testing::EndsWith("_total"));
    }
    EXPECT_FALSE(e.helps.at(name).empty()) << name;
  }
  EXPECT_EQ(e.types.at("mla_time_to_first_token_seconds"), "histogram");
}

TEST(FinishedReasonLabelTest, Mapping) {
  EXPECT_EQ(FinishedReasonLabel(FinishReason::kStop, false), "stop");
  EXPECT_EQ(FinishedReasonLabel(FinishReason::kLength, false), "length");
  EXPECT_EQ(FinishedReasonLabel(FinishReason::kStopSequence, false), "stop_sequence");
  EXPECT_EQ(FinishedReasonLabel(FinishReason::kAbort, false), "abort");
  EXPECT_EQ(FinishedReasonLabel(FinishReason::kAbort, true), "error");
}

TEST(BucketsTest, InterTokenLatencyStartsAtOneMillisecondAndAllAreIncreasing) {
  EXPECT_EQ(InterTokenLatencyBuckets().front(), 0.001);
  EXPECT_EQ(TimeToFirstTokenBuckets().back(), 2560);
  for (const auto& b :
       {TimeToFirstTokenBuckets(), InterTokenLatencyBuckets(), RequestLatencyBuckets(),
        StepTimeBuckets(), TokenCountBuckets(), StepTokenBuckets()}) {
    EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
    EXPECT_EQ(std::set<double>(b.begin(), b.end()).size(), b.size());
  }
}

}  // namespace
}  // namespace mla::metrics
