// mla-bench results: aggregation of request records and their text and JSON forms.
#ifndef MLA_CLIENT_BENCH_REPORT_H_
#define MLA_CLIENT_BENCH_REPORT_H_

#include <cstdint>
#include <map>
#include <string>

#include "client/bench/runner.h"
#include "client/bench/stats.h"
#include "client/bench/workload.h"

namespace mla::bench {

// The run's settings, echoed in the report so that a JSON file stands on its own.
struct BenchConfig {
  std::string target;
  std::string model;
  RunnerOptions runner;
  WorkloadOptions workload;
};

struct BenchReport {
  BenchConfig config;
  int64_t completed = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> failed_by_code;  // e.g. "DEADLINE_EXCEEDED" -> 3.
  // Completed requests whose output length differs from max_tokens.
  int64_t output_len_mismatches = 0;
  int64_t late_dispatches = 0;
  int64_t warmup_completed = 0;
  int64_t warmup_failed = 0;
  double duration_s = 0;
  // Token totals over completed requests.
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  int64_t output_tokens = 0;
  double request_throughput = 0;       // Completed requests per second.
  double output_token_throughput = 0;  // Output tokens per second.
  double total_token_throughput = 0;   // (Prompt + output tokens) per second.
  // Latencies in milliseconds, over completed requests.
  Summary ttft_ms;  // Time to first token.
  Summary itl_ms;   // Inter-token latency, per token (see RequestRecord::itl_s).
  Summary tpot_ms;  // Time per output token, (e2e - ttft) / (n - 1), requests with n > 1.
  Summary e2e_ms;   // End-to-end latency.
};

BenchReport BuildReport(const BenchConfig& config, const RunResult& result);

// A human-readable table.
std::string FormatText(const BenchReport& report);
// The same figures as one JSON object (pretty-printed).
std::string FormatJson(const BenchReport& report);

}  // namespace mla::bench

#endif  // MLA_CLIENT_BENCH_REPORT_H_
