// mla-bench: a load generator for mla-server.
//   mla-bench --target=HOST:PORT --num_requests=200 --concurrency=8 --prompt_len=512
//   mla-bench --request_rate=4 --duration_s=60 --prompt_dist=long_context
//             --prompt_len_min=64 --prompt_len_max=32768 --output_len=128 --json=run.json
//   mla-bench --target=HOST:PORT --http_target=HOST:8000 --logprobs=1 ...  (the same load
//             over the OpenAI-compatible API; the model's geometry still comes from --target)
// Prints a text report on stdout; progress goes to stderr.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "client/bench/openai_generate.h"
#include "client/bench/progress.h"
#include "client/bench/report.h"
#include "client/bench/runner.h"
#include "client/bench/workload.h"
#include "client/mla_client.h"
#include "client/wait_for_server.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "Server address host:port");
ABSL_FLAG(std::string, token, "", "Bearer token for servers started with auth");
ABSL_FLAG(std::string, http_target, "",
          "When set (host:port), requests go to the OpenAI-compatible API there (streamed "
          "POST /v1/completions) instead of gRPC Generate; --target still answers "
          "GetModelInfo");
ABSL_FLAG(int, logprobs, 0,
          "Logprob alternatives per generated token (0 = none). Over --http_target the "
          "token's own logprob always comes (it counts the tokens): compare such a run "
          "with a gRPC run at --logprobs=1");
ABSL_FLAG(int, timeout_ms, 0, "Per-request deadline in milliseconds (0 = none)");
ABSL_FLAG(int, wait_for_server_s, 600,
          "Seconds to wait for a server that is not listening yet or still loading its model");
ABSL_FLAG(int64_t, num_requests, 100, "Measured requests (0 = until --duration_s)");
ABSL_FLAG(double, duration_s, 0, "Stop sending after this many seconds (0 = no limit)");
ABSL_FLAG(int, concurrency, 4, "Closed loop: requests in flight");
ABSL_FLAG(double, request_rate, 0, "Open loop when > 0: Poisson arrivals per second");
ABSL_FLAG(int, max_in_flight, 256, "Open loop: cap on requests in flight");
ABSL_FLAG(int64_t, warmup_requests, 0, "Unmeasured requests sent first (closed loop)");
ABSL_FLAG(std::string, prompt_dist, "fixed", "Prompt lengths: fixed, uniform or long_context");
ABSL_FLAG(int, prompt_len, 128, "Prompt tokens (fixed)");
ABSL_FLAG(int, prompt_len_min, 0, "Shortest prompt (uniform, long_context)");
ABSL_FLAG(int, prompt_len_max, 0, "Longest prompt (uniform, long_context)");
ABSL_FLAG(std::string, output_dist, "fixed", "Output lengths: fixed, uniform or long_context");
ABSL_FLAG(int, output_len, 64, "Output tokens (fixed); sent as max_tokens with ignore_eos");
ABSL_FLAG(int, output_len_min, 0, "Shortest output (uniform, long_context)");
ABSL_FLAG(int, output_len_max, 0, "Longest output (uniform, long_context)");
ABSL_FLAG(double, long_fraction, 0.25,
          "long_context: share of requests drawn from the long band [max/2, max]; the rest "
          "come from the short band [min, max/8]");
ABSL_FLAG(int, shared_prefix_len, 0, "Tokens every prompt starts with (prefix caching)");
ABSL_FLAG(uint64_t, seed, 0, "Seed of prompts, lengths and arrivals");
ABSL_FLAG(std::string, json, "", "Also write the report as JSON to this file");
ABSL_FLAG(bool, progress, true, "Show progress on stderr");
ABSL_FLAG(double, progress_interval_s, 5, "Seconds between progress lines when not a tty");

namespace mla::bench {
namespace {

absl::StatusOr<LengthDistribution> LengthFromFlags(const std::string& what, const std::string& kind,
                                                   int fixed, int min, int max) {
  LengthDistribution d;
  MLA_ASSIGN_OR_RETURN(d.kind, ParseLengthKind(kind));
  d.fixed = fixed;
  d.min = min;
  d.max = max;
  d.long_fraction = absl::GetFlag(FLAGS_long_fraction);
  if (d.kind == LengthDistribution::Kind::kFixed && (min != 0 || max != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", what, "_len_min/max need --", what, "_dist=uniform or long_context"));
  }
  return d;
}

absl::StatusOr<BenchConfig> ConfigFromFlags(const v1::ModelInfo& info) {
  BenchConfig c;
  c.target = absl::GetFlag(FLAGS_target);
  c.model = info.model_name();
  c.runner.concurrency = absl::GetFlag(FLAGS_concurrency);
  c.runner.request_rate = absl::GetFlag(FLAGS_request_rate);
  c.runner.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  c.runner.num_requests = absl::GetFlag(FLAGS_num_requests);
  c.runner.duration_s = absl::GetFlag(FLAGS_duration_s);
  c.runner.warmup_requests = absl::GetFlag(FLAGS_warmup_requests);
  c.runner.seed = absl::GetFlag(FLAGS_seed);
  MLA_ASSIGN_OR_RETURN(
      c.workload.prompt_len,
      LengthFromFlags("prompt", absl::GetFlag(FLAGS_prompt_dist), absl::GetFlag(FLAGS_prompt_len),
                      absl::GetFlag(FLAGS_prompt_len_min), absl::GetFlag(FLAGS_prompt_len_max)));
  MLA_ASSIGN_OR_RETURN(
      c.workload.output_len,
      LengthFromFlags("output", absl::GetFlag(FLAGS_output_dist), absl::GetFlag(FLAGS_output_len),
                      absl::GetFlag(FLAGS_output_len_min), absl::GetFlag(FLAGS_output_len_max)));
  c.workload.shared_prefix_len = absl::GetFlag(FLAGS_shared_prefix_len);
  c.workload.vocab_size = info.vocab_size();
  c.workload.max_context = info.max_context();
  c.workload.seed = absl::GetFlag(FLAGS_seed);
  return c;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status Run() {
  ClientOptions client_options;
  client_options.target = absl::GetFlag(FLAGS_target);
  client_options.bearer_token = absl::GetFlag(FLAGS_token);
  client_options.timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  MlaClient client(client_options);
  v1::ModelInfo info;
  WaitOptions wait;
  wait.budget = absl::Seconds(absl::GetFlag(FLAGS_wait_for_server_s));
  wait.note = StderrWaitNote("mla-bench");
  MLA_RETURN_IF_ERROR(RetryWhileUnavailable(
      [&]() -> absl::Status {
        MLA_ASSIGN_OR_RETURN(info, client.GetModelInfo());
        return absl::OkStatus();
      },
      wait));
  MLA_ASSIGN_OR_RETURN(const BenchConfig config, ConfigFromFlags(info));
  MLA_ASSIGN_OR_RETURN(const WorkloadGenerator workload,
                       WorkloadGenerator::Create(config.workload));
  const int logprobs = absl::GetFlag(FLAGS_logprobs);
  GenerateFn generate = [&client, logprobs](
                            const v1::GenerateRequest& request,
                            const std::function<bool(const v1::GenerateResponse&)>& on_message) {
    if (logprobs == 0) return client.Generate(request, on_message);
    v1::GenerateRequest with_logprobs = request;
    with_logprobs.set_logprobs(logprobs);
    return client.Generate(with_logprobs, on_message);
  };
  if (const std::string http = absl::GetFlag(FLAGS_http_target); !http.empty()) {
    const GenerateFn over_http =
        OpenAiGenerateFn(OpenAiTarget{http, info.model_name(), absl::GetFlag(FLAGS_token), 600});
    generate = [over_http, logprobs](
                   const v1::GenerateRequest& request,
                   const std::function<bool(const v1::GenerateResponse&)>& on_message) {
      v1::GenerateRequest with_logprobs = request;
      with_logprobs.set_logprobs(logprobs);
      return over_http(with_logprobs, on_message);
    };
  }
  LiveCounters live;
  ProgressOptions progress_options;
  progress_options.terminal = isatty(fileno(stderr)) != 0;
  progress_options.line_interval_s = absl::GetFlag(FLAGS_progress_interval_s);
  progress_options.total_requests = config.runner.num_requests;
  progress_options.duration_s = config.runner.duration_s;
  ProgressPrinter progress(stderr, progress_options, &live);
  if (config.runner.warmup_requests > 0) {
    std::fprintf(stderr, "warming up with %lld requests\n",
                 static_cast<long long>(config.runner.warmup_requests));
  }
  auto start_progress = [&progress] {
    if (absl::GetFlag(FLAGS_progress)) progress.Start();
  };
  absl::StatusOr<RunResult> result =
      RunBenchmark(config.runner, workload, generate, &live, start_progress);
  progress.Stop();
  if (!result.ok()) return result.status();
  const BenchReport report = BuildReport(config, *result);
  std::fputs(FormatText(report).c_str(), stdout);
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) MLA_RETURN_IF_ERROR(WriteFile(json_path, FormatJson(report)));
  return absl::OkStatus();
}

}  // namespace
}  // namespace mla::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mla-bench [--target=HOST:PORT] [--concurrency=N | --request_rate=R] ... "
      "(see --help)");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = mla::bench::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "mla-bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
