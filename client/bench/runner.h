// The mla-bench runner: drives Generate calls in a closed loop (fixed concurrency) or an
// open loop (Poisson arrivals) and records per-request timings measured on the client.
#ifndef MLA_CLIENT_BENCH_RUNNER_H_
#define MLA_CLIENT_BENCH_RUNNER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/bench/workload.h"
#include "mla/v1/inference.pb.h"

namespace mla::bench {

// One streaming Generate call, as MlaClient::Generate makes it. Called from many threads
// at once, so it must be thread-safe.
using GenerateFn = std::function<absl::Status(
    const v1::GenerateRequest&, const std::function<bool(const v1::GenerateResponse&)>&)>;

struct RunnerOptions {
  // Closed loop: this many workers, each sending its next request when the previous one
  // finishes. Used when request_rate <= 0.
  int concurrency = 1;
  // Open loop when > 0: requests arrive as a Poisson process with this many per second,
  // whether or not earlier ones have finished ...
  double request_rate = 0;
  // ... up to this many in flight; an arrival that finds the cap reached is sent when a
  // request finishes (and counted in RunResult::late_dispatches).
  int max_in_flight = 256;
  // Stop after this many measured requests (0 = no count limit) ...
  int64_t num_requests = 100;
  // ... or when this many seconds have passed since the first request (0 = no time limit);
  // requests in flight then finish and count. At least one limit must be set.
  double duration_s = 0;
  // Requests sent (closed loop, same concurrency) before the measured run; not recorded.
  int64_t warmup_requests = 0;
  uint64_t seed = 0;  // Seeds the arrival process.
};

// Counters the runner updates as it goes, for progress display from another thread.
struct LiveCounters {
  std::atomic<int64_t> dispatched{0};
  std::atomic<int64_t> completed{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> output_tokens{0};
};

// What the client saw of one request. Times are seconds.
struct RequestRecord {
  uint64_t index = 0;
  int prompt_len = 0;
  int expected_output_len = 0;  // max_tokens (ignore_eos is set, so this is exact).
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string error;
  int output_tokens = 0;         // Token ids received.
  int cached_prompt_tokens = 0;  // From the final message's usage.
  double start_s = 0;            // Send time, from the start of the measured run.
  double ttft_s = -1;            // Send to the first message carrying tokens; -1 if none.
  double e2e_s = 0;              // Send to the end of the stream.
  // Inter-token latencies: for each message carrying tokens after the first such
  // message, the gap since the previous one divided by its token count, once per token
  // in it. Tokens that share the first message have no gap to measure and no entry.
  std::vector<double> itl_s;

  bool ok() const { return code == absl::StatusCode::kOk; }
};

struct RunResult {
  std::vector<RequestRecord> records;  // Measured requests, in completion order.
  double duration_s = 0;               // First send to last completion.
  int64_t late_dispatches = 0;         // Open loop: arrivals held back by max_in_flight.
  int64_t warmup_completed = 0;
  int64_t warmup_failed = 0;
};

// Builds the Generate request for one workload request: token-id prompt, greedy,
// max_tokens = output_len with ignore_eos so that the output length is exact.
v1::GenerateRequest ToGenerateRequest(const WorkloadRequest& request);

// Sends one request through `generate` and times it; start_s is measured from
// `run_start`.
RequestRecord RunOne(const WorkloadRequest& request, const GenerateFn& generate,
                     std::chrono::steady_clock::time_point run_start);

// Runs the warmup (if any) and then the measured requests. `live`, when not null, is
// updated during the measured run; `on_measured_start`, when set, is called between the
// two (e.g. to start a progress display).
absl::StatusOr<RunResult> RunBenchmark(const RunnerOptions& options,
                                       const WorkloadGenerator& workload,
                                       const GenerateFn& generate, LiveCounters* live,
                                       const std::function<void()>& on_measured_start = {});

}  // namespace mla::bench

#endif  // MLA_CLIENT_BENCH_RUNNER_H_
