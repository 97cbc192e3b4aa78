#include "client/bench/report.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace mla::bench {
namespace {

constexpr double kMs = 1000.0;

std::string DistributionText(const LengthDistribution& d) {
  switch (d.kind) {
    case LengthDistribution::Kind::kFixed:
      return absl::StrCat("fixed ", d.fixed);
    case LengthDistribution::Kind::kUniform:
      return absl::StrCat("uniform [", d.min, ", ", d.max, "]");
    case LengthDistribution::Kind::kLongContext:
      return absl::StrFormat("long_context [%d, %d], long fraction %.2f", d.min, d.max,
                             d.long_fraction);
  }
  return "";
}

std::string ModeText(const RunnerOptions& r) {
  if (r.request_rate > 0) {
    return absl::StrFormat("open loop, Poisson %.3g req/s, at most %d in flight", r.request_rate,
                           r.max_in_flight);
  }
  return absl::StrCat("closed loop, concurrency ", r.concurrency);
}

void AddLatencies(const RequestRecord& r, std::vector<double>* ttft, std::vector<double>* itl,
                  std::vector<double>* tpot, std::vector<double>* e2e) {
  e2e->push_back(r.e2e_s * kMs);
  if (r.ttft_s >= 0) ttft->push_back(r.ttft_s * kMs);
  for (double s : r.itl_s) itl->push_back(s * kMs);
  if (r.output_tokens > 1 && r.ttft_s >= 0) {
    tpot->push_back((r.e2e_s - r.ttft_s) / (r.output_tokens - 1) * kMs);
  }
}

nlohmann::json SummaryJson(const Summary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"min", s.min}, {"p50", s.p50},
          {"p90", s.p90},     {"p99", s.p99},   {"max", s.max}};
}

nlohmann::json DistributionJson(const LengthDistribution& d) {
  nlohmann::json j = {{"kind", LengthKindName(d.kind)}};
  if (d.kind == LengthDistribution::Kind::kFixed) {
    j["value"] = d.fixed;
  } else {
    j["min"] = d.min;
    j["max"] = d.max;
  }
  if (d.kind == LengthDistribution::Kind::kLongContext) j["long_fraction"] = d.long_fraction;
  return j;
}

nlohmann::json ConfigJson(const BenchConfig& c) {
  return {{"target", c.target},
          {"model", c.model},
          {"mode", c.runner.request_rate > 0 ? "open_loop" : "closed_loop"},
          {"concurrency", c.runner.concurrency},
          {"request_rate", c.runner.request_rate},
          {"max_in_flight", c.runner.max_in_flight},
          {"num_requests", c.runner.num_requests},
          {"duration_s", c.runner.duration_s},
          {"warmup_requests", c.runner.warmup_requests},
          {"seed", c.workload.seed},
          {"prompt_len", DistributionJson(c.workload.prompt_len)},
          {"output_len", DistributionJson(c.workload.output_len)},
          {"shared_prefix_len", c.workload.shared_prefix_len},
          {"vocab_size", c.workload.vocab_size}};
}

std::string SummaryRow(const char* name, const Summary& s) {
  return absl::StrFormat("%-28s %10.2f %10.2f %10.2f %10.2f %10.2f %8d\n", name, s.mean, s.p50,
                         s.p90, s.p99, s.max, s.count);
}

}  // namespace

BenchReport BuildReport(const BenchConfig& config, const RunResult& result) {
  BenchReport report;
  report.config = config;
  report.duration_s = result.duration_s;
  report.late_dispatches = result.late_dispatches;
  report.warmup_completed = result.warmup_completed;
  report.warmup_failed = result.warmup_failed;
  std::vector<double> ttft, itl, tpot, e2e;
  for (const RequestRecord& r : result.records) {
    if (!r.ok()) {
      ++report.failed;
      ++report.failed_by_code[absl::StatusCodeToString(r.code)];
      continue;
    }
    ++report.completed;
    report.prompt_tokens += r.prompt_len;
    report.cached_prompt_tokens += r.cached_prompt_tokens;
    report.output_tokens += r.output_tokens;
    if (r.output_tokens != r.expected_output_len) ++report.output_len_mismatches;
    AddLatencies(r, &ttft, &itl, &tpot, &e2e);
  }
  if (report.duration_s > 0) {
    report.request_throughput = static_cast<double>(report.completed) / report.duration_s;
    report.output_token_throughput = static_cast<double>(report.output_tokens) / report.duration_s;
    report.total_token_throughput =
        static_cast<double>(report.prompt_tokens + report.output_tokens) / report.duration_s;
  }
  report.ttft_ms = Summarize(std::move(ttft));
  report.itl_ms = Summarize(std::move(itl));
  report.tpot_ms = Summarize(std::move(tpot));
  report.e2e_ms = Summarize(std::move(e2e));
  return report;
}

std::string FormatText(const BenchReport& r) {
  const BenchConfig& c = r.config;
  std::string out = "============ mla-bench ============\n";
  absl::StrAppendFormat(&out, "%-28s %s\n", "Target", c.target);
  if (!c.model.empty()) absl::StrAppendFormat(&out, "%-28s %s\n", "Model", c.model);
  absl::StrAppendFormat(&out, "%-28s %s\n", "Mode", ModeText(c.runner));
  absl::StrAppendFormat(&out, "%-28s %s\n", "Prompt length",
                        DistributionText(c.workload.prompt_len));
  absl::StrAppendFormat(&out, "%-28s %s\n", "Output length",
                        DistributionText(c.workload.output_len));
  absl::StrAppendFormat(&out, "%-28s %d\n", "Shared prefix (tokens)", c.workload.shared_prefix_len);
  absl::StrAppendFormat(&out, "%-28s %d\n", "Seed", c.workload.seed);
  if (r.warmup_completed + r.warmup_failed > 0) {
    absl::StrAppendFormat(&out, "%-28s %d completed, %d failed\n", "Warmup requests",
                          r.warmup_completed, r.warmup_failed);
  }
  out += "----------------------------------\n";
  absl::StrAppendFormat(&out, "%-28s %d\n", "Completed requests", r.completed);
  absl::StrAppendFormat(&out, "%-28s %d\n", "Failed requests", r.failed);
  for (const auto& [code, count] : r.failed_by_code) {
    absl::StrAppendFormat(&out, "  %-26s %d\n", code, count);
  }
  if (r.output_len_mismatches > 0) {
    absl::StrAppendFormat(&out, "%-28s %d\n", "Output length != max_tokens",
                          r.output_len_mismatches);
  }
  if (c.runner.request_rate > 0) {
    absl::StrAppendFormat(&out, "%-28s %d\n", "Held back by in-flight cap", r.late_dispatches);
  }
  absl::StrAppendFormat(&out, "%-28s %.3f\n", "Duration (s)", r.duration_s);
  absl::StrAppendFormat(&out, "%-28s %d (%d from prefix cache)\n", "Prompt tokens", r.prompt_tokens,
                        r.cached_prompt_tokens);
  absl::StrAppendFormat(&out, "%-28s %d\n", "Output tokens", r.output_tokens);
  absl::StrAppendFormat(&out, "%-28s %.3f\n", "Request throughput (req/s)", r.request_throughput);
  absl::StrAppendFormat(&out, "%-28s %.2f\n", "Output tokens/s", r.output_token_throughput);
  absl::StrAppendFormat(&out, "%-28s %.2f\n", "Total tokens/s", r.total_token_throughput);
  absl::StrAppendFormat(&out, "%-28s %10s %10s %10s %10s %10s %8s\n", "Latency (ms)", "mean", "p50",
                        "p90", "p99", "max", "n");
  out += SummaryRow("Time to first token", r.ttft_ms);
  out += SummaryRow("Inter-token latency", r.itl_ms);
  out += SummaryRow("Time per output token", r.tpot_ms);
  out += SummaryRow("End-to-end latency", r.e2e_ms);
  out += "==================================\n";
  return out;
}

std::string FormatJson(const BenchReport& r) {
  nlohmann::json failed_by_code = nlohmann::json::object();
  for (const auto& [code, count] : r.failed_by_code) failed_by_code[code] = count;
  const nlohmann::json j = {
      {"config", ConfigJson(r.config)},
      {"completed", r.completed},
      {"failed", r.failed},
      {"failed_by_code", failed_by_code},
      {"output_len_mismatches", r.output_len_mismatches},
      {"late_dispatches", r.late_dispatches},
      {"warmup_completed", r.warmup_completed},
      {"warmup_failed", r.warmup_failed},
      {"duration_s", r.duration_s},
      {"prompt_tokens", r.prompt_tokens},
      {"cached_prompt_tokens", r.cached_prompt_tokens},
      {"output_tokens", r.output_tokens},
      {"request_throughput", r.request_throughput},
      {"output_token_throughput", r.output_token_throughput},
      {"total_token_throughput", r.total_token_throughput},
      {"percentile_method", "linear interpolation between closest ranks (NumPy default)"},
      {"ttft_ms", SummaryJson(r.ttft_ms)},
      {"itl_ms", SummaryJson(r.itl_ms)},
      {"tpot_ms", SummaryJson(r.tpot_ms)},
      {"e2e_ms", SummaryJson(r.e2e_ms)}};
  return j.dump(2) + "\n";
}

}  // namespace mla::bench
