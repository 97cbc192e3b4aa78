// The service's own metrics (prefix mla_), recorded as the engine and the gRPC service
// report events. Every metric is documented in docs/OPERATIONS.md; keep the two in step.
//
// ServingMetrics is the engine's observer: the engine calls it on its loop thread after
// every step, for every token after a sequence's first, and when a request finishes.
// Every series those calls touch is resolved here at construction, so recording is a
// handful of relaxed atomic adds and never takes a lock.
#ifndef MLA_SERVER_METRICS_SERVING_METRICS_H_
#define MLA_SERVER_METRICS_SERVING_METRICS_H_

#include <array>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/engine_observer.h"
#include "server/metrics/attention_metrics.h"
#include "server/metrics/metrics.h"

namespace mla::metrics {

// Bucket bounds, in seconds or tokens. Latencies reach 2560 s because a 128K-token prefill
// on a CPU takes that long; inter-token latency starts at 1 ms, since decode steps of a
// small model are a few milliseconds and coarser buckets would hide them.
std::vector<double> TimeToFirstTokenBuckets();
std::vector<double> InterTokenLatencyBuckets();
std::vector<double> RequestLatencyBuckets();  // End-to-end, queue, prefill and decode time.
std::vector<double> StepTimeBuckets();
std::vector<double> TokenCountBuckets();  // Prompt and output lengths, up to 1M tokens.
std::vector<double> StepTokenBuckets();   // Tokens per engine step.

// The finished_reason label of a finished request: stop, length, stop_sequence, abort,
// or error when the engine failed it.
absl::string_view FinishedReasonLabel(FinishReason reason, bool failed);

class ServingMetrics final : public EngineObserver {
 public:
  // Registers the families in `registry`, which must outlive this object.
  explicit ServingMetrics(MetricsRegistry& registry);

  void OnStep(const StepStats& step) override;
  void OnInterTokenLatency(double seconds) override;
  void OnRequestFinished(const RequestStats& request) override;
  void OnAttentionProbe(const AttentionSharpness& probe) override { attention_.Record(probe); }
  void OnDiskTierLoad(int64_t tokens, double seconds) override;

  // One finished gRPC call, by service ("mla.v1.Inference"), method ("Generate") and
  // status code. Takes the RPC family's lock to find the series (once per call, never per
  // token).
  void RecordRpc(absl::string_view service, absl::string_view method, absl::StatusCode code);
  // One answered request of the HTTP API, by path and HTTP status (once per request).
  void RecordHttp(absl::string_view path, int status);

 private:
  static constexpr int kNumReasons = 5;
  static constexpr int kNumApis = 2;  // The front ends: grpc, openai.

  void RegisterHistograms(MetricsRegistry& registry);

  Counter* prompt_tokens_;
  Counter* generation_tokens_;
  Counter* cached_prompt_tokens_;
  // [api][reason]: see ApiIndex and ReasonIndex in the .cc.
  std::array<std::array<Counter*, kNumReasons>, kNumApis> finished_;
  Counter* prefill_tokens_;
  Counter* decode_tokens_;
  Family<Counter>* rpcs_;
  Family<Counter>* http_requests_;
  Histogram* ttft_;
  Histogram* itl_;
  Histogram* e2e_;
  Histogram* queue_;
  Histogram* prefill_;
  Histogram* decode_;
  Histogram* prompt_len_;
  Histogram* output_len_;
  Histogram* step_time_;
  Histogram* disk_load_;
  Histogram* step_tokens_;
  Histogram* step_sequences_;
  AttentionMetrics attention_;
};

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_SERVING_METRICS_H_
