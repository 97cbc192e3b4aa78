// mla-recall: a needle-in-a-haystack recall sweep against a deployment.
//   mla-recall --target=HOST:PORT --lengths=1K,2K,4K --num_depths=11 --samples=4 --out=DIR
//   mla-recall --openai_url=http://HOST:PORT --model=NAME --lengths=4K,8K --out=DIR
// Writes DIR/results.jsonl (one line per trial; a rerun resumes), summary.csv,
// summary.json and heatmap.svg; see docs/LONG_CONTEXT.md.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/bench/progress.h"
#include "client/mla_client.h"
#include "client/wait_for_server.h"
#include "client/recall/grpc_backend.h"
#include "client/recall/heatmap.h"
#include "client/recall/openai_backend.h"
#include "client/recall/results.h"
#include "client/recall/sweep.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "mla-server address host:port");
ABSL_FLAG(std::string, token, "", "Bearer token (mla-server auth, or the OpenAI API key)");
ABSL_FLAG(int, timeout_s, 600, "Per-call deadline in seconds (0 = none)");
ABSL_FLAG(int, wait_for_server_s, 600,
          "Seconds to wait for a server that is not listening yet or still loading its model");
ABSL_FLAG(std::string, mode, "text",
          "text: send prompt text (the server tokenizes); ids: tokenize first, send ids");
ABSL_FLAG(std::string, tokenizer, "server",
          "server: the server's Tokenize RPC; bytes: one id per byte (needs --mode=ids and a "
          "vocab of at least 256; for servers without a tokenizer)");
ABSL_FLAG(int, bos_id, -1, "--tokenizer=bytes: BOS id to prepend (-1 = none)");
ABSL_FLAG(std::string, openai_url, "",
          "Drive an OpenAI-compatible /v1/completions endpoint (http://host:port) instead");
ABSL_FLAG(std::string, model, "", "OpenAI API model name (default: the first of /v1/models)");
ABSL_FLAG(double, chars_per_token, 4.0,
          "OpenAI endpoints without /tokenize: token counts are estimated as bytes / this");
ABSL_FLAG(std::string, lengths, "256,512,1K,2K,4K", "Context lengths in tokens (K = 1024)");
ABSL_FLAG(std::string, depths, "", "Needle depths in [0, 1]; default: --num_depths even steps");
ABSL_FLAG(int, num_depths, 11, "Evenly spaced depths from 0 to 1 when --depths is empty");
ABSL_FLAG(std::string, kinds, "passkey,kv,multi", "Needle kinds: passkey, kv, multi");
ABSL_FLAG(int, samples, 1, "Trials per (length, depth, kind) cell");
ABSL_FLAG(uint64_t, seed, 0, "Seed of needles, questions and haystack windows");
ABSL_FLAG(std::string, corpus, "data/haystack/haystack.txt", "Haystack text file");
ABSL_FLAG(std::string, out, "recall_out", "Output directory");
ABSL_FLAG(bool, fresh, false, "Discard DIR/results.jsonl instead of resuming");
ABSL_FLAG(int, concurrency, 4, "Trials in flight");
ABSL_FLAG(int, answer_slack, 4, "max_tokens = answer tokens + this");
ABSL_FLAG(bool, score_logprobs, true, "Also score the answer's log-probability");
ABSL_FLAG(bool, progress, true, "Show progress on stderr");
ABSL_FLAG(double, progress_interval_s, 5, "Seconds between progress lines when not a tty");

namespace mla::recall {
namespace {

WaitOptions WaitFromFlags() {
  WaitOptions w;
  w.budget = absl::Seconds(absl::GetFlag(FLAGS_wait_for_server_s));
  w.note = StderrWaitNote("mla-recall");
  return w;
}

struct Endpoint {
  std::unique_ptr<MlaClient> client;  // For mla-server only.
  std::unique_ptr<RecallBackend> backend;
  std::string model;
  int max_context = 0;  // 0 = unknown.
};

absl::StatusOr<SweepOptions> SweepFromFlags() {
  SweepOptions s;
  MLA_ASSIGN_OR_RETURN(s.lengths, ParseLengths(absl::GetFlag(FLAGS_lengths)));
  if (absl::GetFlag(FLAGS_depths).empty()) {
    s.depths = EvenDepths(absl::GetFlag(FLAGS_num_depths));
  } else {
    MLA_ASSIGN_OR_RETURN(s.depths, ParseDepths(absl::GetFlag(FLAGS_depths)));
  }
  MLA_ASSIGN_OR_RETURN(s.kinds, ParseKinds(absl::GetFlag(FLAGS_kinds)));
  s.samples = absl::GetFlag(FLAGS_samples);
  if (s.samples < 1) return absl::InvalidArgumentError("--samples must be >= 1");
  s.seed = absl::GetFlag(FLAGS_seed);
  return s;
}

absl::StatusOr<Endpoint> OpenAiEndpoint() {
  OpenAiOptions o;
  o.url = absl::GetFlag(FLAGS_openai_url);
  o.model = absl::GetFlag(FLAGS_model);
  o.api_key = absl::GetFlag(FLAGS_token);
  o.chars_per_token = absl::GetFlag(FLAGS_chars_per_token);
  o.timeout_s = absl::GetFlag(FLAGS_timeout_s);
  o.score_logprobs = absl::GetFlag(FLAGS_score_logprobs);
  std::unique_ptr<OpenAiBackend> backend;
  MLA_RETURN_IF_ERROR(RetryWhileUnavailable(
      [&]() -> absl::Status {
        MLA_ASSIGN_OR_RETURN(backend, OpenAiBackend::Create(o));
        return absl::OkStatus();
      },
      WaitFromFlags()));
  Endpoint e;
  e.model = backend->model();
  e.backend = std::move(backend);
  return e;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromFlags(const v1::ModelInfo& info,
                                                              PromptMode mode, MlaClient* client) {
  const std::string name = absl::GetFlag(FLAGS_tokenizer);
  if (name == "bytes") {
    if (mode != PromptMode::kIds) {
      return absl::InvalidArgumentError("--tokenizer=bytes needs --mode=ids");
    }
    if (info.vocab_size() < 256) {
      return absl::FailedPreconditionError("--tokenizer=bytes needs a vocab of at least 256");
    }
    return std::make_unique<BytesTokenizer>(absl::GetFlag(FLAGS_bos_id));
  }
  if (name != "server") return absl::InvalidArgumentError("--tokenizer must be server or bytes");
  auto tokenizer = std::make_unique<ServerTokenizer>(client);
  const absl::Status probe = tokenizer->Encode("probe", true).status();
  if (!probe.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server cannot tokenize (", probe.message(),
                     "); for a model without a tokenizer use --mode=ids --tokenizer=bytes"));
  }
  return tokenizer;
}

absl::StatusOr<Endpoint> GrpcEndpoint() {
  ClientOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.bearer_token = absl::GetFlag(FLAGS_token);
  o.timeout = std::chrono::seconds(absl::GetFlag(FLAGS_timeout_s));
  Endpoint e;
  e.client = std::make_unique<MlaClient>(o);
  v1::ModelInfo info;
  MLA_RETURN_IF_ERROR(RetryWhileUnavailable(
      [&]() -> absl::Status {
        MLA_ASSIGN_OR_RETURN(info, e.client->GetModelInfo());
        return absl::OkStatus();
      },
      WaitFromFlags()));
  e.model = info.model_name();
  e.max_context = info.max_context();
  MLA_ASSIGN_OR_RETURN(const PromptMode mode, ParsePromptMode(absl::GetFlag(FLAGS_mode)));
  MLA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                       TokenizerFromFlags(info, mode, e.client.get()));
  const std::string description =
      absl::StrCat("mla-server ", o.target, ", mode ", absl::GetFlag(FLAGS_mode), ", tokenizer ",
                   absl::GetFlag(FLAGS_tokenizer));
  e.backend = std::make_unique<GrpcBackend>(e.client.get(), std::move(tokenizer), mode,
                                            absl::GetFlag(FLAGS_score_logprobs), description);
  return e;
}

// Lengths the server would refuse (prompt + answer past its context) are dropped.
void DropTooLong(int max_context, SweepOptions& sweep) {
  if (max_context <= 0) return;
  const int limit = max_context - absl::GetFlag(FLAGS_answer_slack) - 16;
  std::vector<int> kept;
  for (const int length : sweep.lengths) {
    if (length <= limit) {
      kept.push_back(length);
    } else {
      std::fprintf(stderr, "mla-recall: skipping length %d: the server's context is %d\n", length,
                   max_context);
    }
  }
  sweep.lengths = std::move(kept);
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

absl::Status RunPending(const std::vector<TrialKey>& pending, const Corpus& corpus,
                        const Endpoint& endpoint, ResultsWriter& writer) {
  RunOptions run;
  run.concurrency = absl::GetFlag(FLAGS_concurrency);
  run.trial.answer_slack = absl::GetFlag(FLAGS_answer_slack);
  run.trial.model = endpoint.model;
  bench::LiveCounters live;
  bench::ProgressOptions p;
  p.terminal = isatty(fileno(stderr)) != 0;
  p.line_interval_s = absl::GetFlag(FLAGS_progress_interval_s);
  p.total_requests = static_cast<int64_t>(pending.size());
  bench::ProgressPrinter progress(stderr, p, &live);
  if (absl::GetFlag(FLAGS_progress)) progress.Start();
  const absl::Status status = RunTrials(pending, corpus, *endpoint.backend, run, writer, &live);
  progress.Stop();
  return status;
}

// Per-kind totals on stdout.
void PrintTotals(const std::vector<CellSummary>& cells) {
  std::map<NeedleKind, std::pair<double, int>> totals;  // (matches, n)
  for (const CellSummary& c : cells) {
    totals[c.kind].first += c.exact_match_rate * c.n;
    totals[c.kind].second += c.n;
  }
  for (const auto& [kind, t] : totals) {
    std::printf("%-8s exact match %5.1f%% over %d trials\n", NeedleKindName(kind),
                t.second > 0 ? 100.0 * t.first / t.second : 0.0, t.second);
  }
}

absl::Status WriteSummaries(const std::filesystem::path& dir, const Endpoint& endpoint) {
  int skipped = 0;
  MLA_ASSIGN_OR_RETURN(const std::vector<TrialResult> results,
                       ReadResults((dir / "results.jsonl").string(), &skipped));
  if (skipped > 0) std::fprintf(stderr, "mla-recall: %d unreadable result lines\n", skipped);
  const std::vector<CellSummary> cells = Summarize(results);
  SummaryInfo info;
  info.model = endpoint.model;
  info.backend = endpoint.backend->Describe();
  info.logprob_scoring = endpoint.backend->can_score();
  info.note = endpoint.backend->note();
  MLA_RETURN_IF_ERROR(WriteFile(dir / "summary.csv", SummaryCsv(cells)));
  MLA_RETURN_IF_ERROR(WriteFile(dir / "summary.json", SummaryJson(cells, info)));
  MLA_RETURN_IF_ERROR(WriteFile(dir / "heatmap.svg", RenderHeatmap(cells, endpoint.model)));
  // A sparse-attention (DeepSeek-V3.2) server also says whether its indexer kept the needle.
  const bool has_indexer_recall = std::any_of(cells.begin(), cells.end(), [](const CellSummary& c) {
    return c.mean_indexer_recall.has_value();
  });
  if (has_indexer_recall) {
    MLA_RETURN_IF_ERROR(
        WriteFile(dir / "indexer_recall.svg", RenderIndexerRecallHeatmap(cells, endpoint.model)));
  }
  PrintTotals(cells);
  std::printf("wrote %s/{results.jsonl,summary.csv,summary.json,heatmap.svg%s}\n",
              dir.string().c_str(), has_indexer_recall ? ",indexer_recall.svg" : "");
  return absl::OkStatus();
}

absl::Status Run() {
  MLA_ASSIGN_OR_RETURN(SweepOptions sweep, SweepFromFlags());
  MLA_ASSIGN_OR_RETURN(const Corpus corpus, Corpus::Load(absl::GetFlag(FLAGS_corpus)));
  MLA_ASSIGN_OR_RETURN(const Endpoint endpoint,
                       absl::GetFlag(FLAGS_openai_url).empty() ? GrpcEndpoint() : OpenAiEndpoint());
  DropTooLong(endpoint.max_context, sweep);
  if (!endpoint.backend->note().empty()) {
    std::fprintf(stderr, "mla-recall: %s\n", endpoint.backend->note().c_str());
  }
  const std::filesystem::path dir(absl::GetFlag(FLAGS_out));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir.string()));
  const std::string results_path = (dir / "results.jsonl").string();
  const bool fresh = absl::GetFlag(FLAGS_fresh);
  std::vector<TrialResult> previous;
  if (!fresh) {
    MLA_ASSIGN_OR_RETURN(previous, ReadResults(results_path));
  }
  const std::vector<TrialKey> plan = PlanTrials(sweep);
  const std::vector<TrialKey> pending = PendingTrials(plan, DoneKeys(previous));
  std::fprintf(stderr, "mla-recall: %s; model %s; %zu trials, %zu already done\n",
               endpoint.backend->Describe().c_str(), endpoint.model.c_str(), plan.size(),
               plan.size() - pending.size());
  MLA_ASSIGN_OR_RETURN(const std::unique_ptr<ResultsWriter> writer,
                       ResultsWriter::Open(results_path, fresh));
  const absl::Status run = RunPending(pending, corpus, endpoint, *writer);
  // Summaries cover what finished, even when the run stopped early.
  MLA_RETURN_IF_ERROR(WriteSummaries(dir, endpoint));
  return run;
}

}  // namespace
}  // namespace mla::recall

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mla-recall [--target=HOST:PORT | --openai_url=URL] --lengths=... --out=DIR (see --help)");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = mla::recall::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "mla-recall: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
