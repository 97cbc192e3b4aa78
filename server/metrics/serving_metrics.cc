#include "server/metrics/serving_metrics.h"

#include <string>

#ifndef MLA_VERSION
#define MLA_VERSION "unknown"
#endif

namespace mla::metrics {
namespace {

constexpr absl::string_view kReasons[] = {"stop", "length", "stop_sequence", "abort", "error"};
constexpr absl::string_view kApis[] = {"grpc", "openai"};

// Requests from an unknown front end count as gRPC's, the default of GenerationRequest.
int ApiIndex(absl::string_view api) { return api == kApis[1] ? 1 : 0; }

int ReasonIndex(FinishReason reason, bool failed) {
  if (failed) return 4;
  switch (reason) {
    case FinishReason::kStop:
      return 0;
    case FinishReason::kLength:
      return 1;
    case FinishReason::kStopSequence:
      return 2;
    case FinishReason::kAbort:
    case FinishReason::kNone:
      break;
  }
  return 3;
}

}  // namespace

std::vector<double> TimeToFirstTokenBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
          2.5,   5.0,   7.5,  10,   20,   40,   80,   160, 320,  640, 1280, 2560};
}

std::vector<double> InterTokenLatencyBuckets() {
  return {0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04,
          0.05,  0.075, 0.1,   0.15,  0.2,    0.3,  0.4,   0.5,  0.75,  1.0,  2.5};
}

std::vector<double> RequestLatencyBuckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,    2.5,  5,
          10,    20,    30,   60,    120,  240, 480,  960, 1920, 3840, 7680};
}

std::vector<double> StepTimeBuckets() {
  return {0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
          0.128,  0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384};
}

std::vector<double> TokenCountBuckets() {
  return {1,    2,    5,     10,    20,    50,     100,    200,    500,    1000,
          2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1000000};
}

std::vector<double> StepTokenBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
}

absl::string_view FinishedReasonLabel(FinishReason reason, bool failed) {
  return kReasons[ReasonIndex(reason, failed)];
}

ServingMetrics::ServingMetrics(MetricsRegistry& r) : attention_(r) {
  r.AddGauge("mla_build_info", "Build of the server (value 1); labels: version", {"version"})
      .WithLabels({MLA_VERSION})
      .Set(1);
  prompt_tokens_ =
      &r.AddCounter("mla_prompt_tokens_total", "Prompt tokens of finished requests (tokens)").Get();
  generation_tokens_ =
      &r.AddCounter("mla_generation_tokens_total", "Generated tokens of finished requests (tokens)")
           .Get();
  cached_prompt_tokens_ =
      &r.AddCounter("mla_prompt_cached_tokens_total",
                    "Prompt tokens of finished requests served from the prefix cache (tokens)")
           .Get();
  Family<Counter>& finished =
      r.AddCounter("mla_requests_finished_total",
                   "Finished requests by finish reason and front end (api: grpc, openai)",
                   {"finished_reason", "api"});
  for (int a = 0; a < kNumApis; ++a) {
    for (int i = 0; i < kNumReasons; ++i) {
      finished_[a][i] = &finished.WithLabels({std::string(kReasons[i]), std::string(kApis[a])});
    }
  }
  Family<Counter>& computed = r.AddCounter(
      "mla_engine_tokens_total",
      "Tokens run through the model by engine steps, by phase (tokens; prefill includes "
      "recomputation after preemption)",
      {"phase"});
  prefill_tokens_ = &computed.WithLabels({"prefill"});
  decode_tokens_ = &computed.WithLabels({"decode"});
  rpcs_ = &r.AddCounter("mla_rpcs_handled_total",
                        "Finished gRPC calls by service, method and status code",
                        {"service", "method", "code"});
  http_requests_ = &r.AddCounter("mla_http_requests_total",
                                 "Answered requests of the OpenAI-compatible HTTP API by path "
                                 "and HTTP status code",
                                 {"path", "code"});
  RegisterHistograms(r);
}

void ServingMetrics::RegisterHistograms(MetricsRegistry& r) {
  struct Spec {
    Histogram** slot;
    const char* name;
    const char* help;
    std::vector<double> buckets;
  };
  const Spec specs[] = {
      {&ttft_, "mla_time_to_first_token_seconds", "Arrival to first generated token (seconds)",
       TimeToFirstTokenBuckets()},
      {&itl_, "mla_inter_token_latency_seconds",
       "Time between consecutive generated tokens of a request (seconds)",
       InterTokenLatencyBuckets()},
      {&e2e_, "mla_e2e_request_latency_seconds", "Arrival to finish (seconds)",
       RequestLatencyBuckets()},
      {&queue_, "mla_request_queue_time_seconds",
       "Arrival to first admission into a batch (seconds)", RequestLatencyBuckets()},
      {&prefill_, "mla_request_prefill_time_seconds",
       "First admission to first generated token (seconds)", RequestLatencyBuckets()},
      {&decode_, "mla_request_decode_time_seconds", "First generated token to finish (seconds)",
       RequestLatencyBuckets()},
      {&prompt_len_, "mla_request_prompt_tokens", "Prompt length of finished requests (tokens)",
       TokenCountBuckets()},
      {&output_len_, "mla_request_generation_tokens",
       "Generated tokens per finished request (tokens)", TokenCountBuckets()},
      {&disk_load_, "mla_kv_disk_tier_load_seconds",
       "Loading a prompt's prefix blocks from the disk tier into the cache (seconds)",
       StepTimeBuckets()},
      {&step_time_, "mla_engine_step_duration_seconds",
       "One engine step: scheduling, forward pass, sampling (seconds)", StepTimeBuckets()},
      {&step_tokens_, "mla_engine_step_tokens",
       "Tokens per engine step, prefill plus decode (tokens)", StepTokenBuckets()},
      {&step_sequences_, "mla_engine_step_sequences", "Sequences batched in one engine step",
       StepTokenBuckets()},
  };
  for (const Spec& spec : specs)
    *spec.slot = &r.AddHistogram(spec.name, spec.help, spec.buckets).Get();
}

void ServingMetrics::OnDiskTierLoad(int64_t, double seconds) { disk_load_->Observe(seconds); }

void ServingMetrics::OnStep(const StepStats& step) {
  prefill_tokens_->Increment(static_cast<double>(step.prefill_tokens));
  decode_tokens_->Increment(static_cast<double>(step.decode_tokens));
  step_time_->Observe(step.seconds);
  step_tokens_->Observe(static_cast<double>(step.prefill_tokens + step.decode_tokens));
  step_sequences_->Observe(step.num_sequences);
}

void ServingMetrics::OnInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void ServingMetrics::OnRequestFinished(const RequestStats& r) {
  finished_[ApiIndex(r.api)][ReasonIndex(r.reason, r.failed)]->Increment();
  prompt_tokens_->Increment(r.prompt_tokens);
  generation_tokens_->Increment(r.completion_tokens);
  cached_prompt_tokens_->Increment(r.cached_prompt_tokens);
  prompt_len_->Observe(r.prompt_tokens);
  output_len_->Observe(r.completion_tokens);
  e2e_->Observe(r.e2e_seconds);
  // A request aborted before it was scheduled or before its first token has no such
  // phase: observing a 0 would drag the percentiles down.
  if (r.completion_tokens > 0) {
    queue_->Observe(r.queue_seconds);
    prefill_->Observe(r.prefill_seconds);
    ttft_->Observe(r.ttft_seconds);
    decode_->Observe(r.decode_seconds);
  }
}

void ServingMetrics::RecordRpc(absl::string_view service, absl::string_view method,
                               absl::StatusCode code) {
  rpcs_->WithLabels({std::string(service), std::string(method), absl::StatusCodeToString(code)})
      .Increment();
}

void ServingMetrics::RecordHttp(absl::string_view path, int status) {
  http_requests_->WithLabels({std::string(path), std::to_string(status)}).Increment();
}

}  // namespace mla::metrics
