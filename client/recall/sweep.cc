#include "client/recall/sweep.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/recall/scoring.h"
#include "common/status_macros.h"

namespace mla::recall {
namespace {

std::vector<std::string> Items(absl::string_view list) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    items.emplace_back(absl::StripAsciiWhitespace(item));
  }
  return items;
}

}  // namespace

absl::StatusOr<std::vector<int>> ParseLengths(absl::string_view list) {
  std::vector<int> lengths;
  for (std::string item : Items(list)) {
    int scale = 1;
    if (!item.empty() && (item.back() == 'K' || item.back() == 'k')) {
      scale = 1024;
      item.pop_back();
    }
    int value = 0;
    if (!absl::SimpleAtoi(item, &value) || value <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad length '", item, "' in --lengths"));
    }
    lengths.push_back(value * scale);
  }
  if (lengths.empty()) return absl::InvalidArgumentError("--lengths is empty");
  return lengths;
}

absl::StatusOr<std::vector<double>> ParseDepths(absl::string_view list) {
  std::vector<double> depths;
  for (const std::string& item : Items(list)) {
    double value = 0;
    if (!absl::SimpleAtod(item, &value) || value < 0 || value > 1) {
      return absl::InvalidArgumentError(absl::StrCat("bad depth '", item, "' (in [0, 1])"));
    }
    depths.push_back(value);
  }
  if (depths.empty()) return absl::InvalidArgumentError("--depths is empty");
  return depths;
}

std::vector<double> EvenDepths(int n) {
  if (n <= 1) return {0.5};
  std::vector<double> depths;
  for (int i = 0; i < n; ++i) depths.push_back(static_cast<double>(i) / (n - 1));
  return depths;
}

absl::StatusOr<std::vector<NeedleKind>> ParseKinds(absl::string_view list) {
  std::vector<NeedleKind> kinds;
  for (const std::string& item : Items(list)) {
    MLA_ASSIGN_OR_RETURN(const NeedleKind kind, ParseNeedleKind(item));
    kinds.push_back(kind);
  }
  if (kinds.empty()) return absl::InvalidArgumentError("--kinds is empty");
  return kinds;
}

std::vector<TrialKey> PlanTrials(const SweepOptions& options) {
  std::vector<int> lengths = options.lengths;
  std::sort(lengths.begin(), lengths.end());
  std::vector<TrialKey> plan;
  for (const int length : lengths) {
    for (const NeedleKind kind : options.kinds) {
      for (int sample = 0; sample < options.samples; ++sample) {
        for (const double depth : options.depths) {
          plan.push_back({length, depth, kind, sample, options.seed});
        }
      }
    }
  }
  return plan;
}

std::vector<TrialKey> PendingTrials(const std::vector<TrialKey>& plan,
                                    const std::set<std::string>& done) {
  std::vector<TrialKey> pending;
  for (const TrialKey& key : plan) {
    if (!done.contains(key.ToString())) pending.push_back(key);
  }
  return pending;
}

TrialResult RunTrial(const TrialKey& key, const Corpus& corpus, RecallBackend& backend,
                     const TrialOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  TrialResult r;
  r.key = key;
  r.model = options.model;
  const NeedleTask task = MakeNeedleTask(key);
  r.expected = task.answer;
  const absl::Status status = [&]() -> absl::Status {
    MLA_ASSIGN_OR_RETURN(const BuiltPrompt prompt,
                         BuildPrompt(corpus, task, key.length, backend.counter()));
    r.prompt_tokens = prompt.tokens;
    r.needle_depths = prompt.needle_depths;
    r.asked_depth = prompt.needle_depths[task.asked];
    MLA_ASSIGN_OR_RETURN(const int answer_tokens, backend.counter().CountPiece(task.answer));
    // The asked needle's characters, for a sparse-attention server's indexer telemetry.
    const std::string& needle = task.needles[task.asked].sentence;
    const size_t at = prompt.text.find(needle);
    const TextSpan watch{at == std::string::npos ? 0 : at,
                         at == std::string::npos ? 0 : at + needle.size()};
    MLA_ASSIGN_OR_RETURN(
        const GenerateResult generated,
        backend.GenerateWatching(prompt.text, answer_tokens + options.answer_slack, watch));
    r.indexer_recall = generated.indexer_recall;
    r.generated = generated.text;
    r.generated_tokens = generated.tokens;
    if (generated.prompt_tokens > 0) r.prompt_tokens = generated.prompt_tokens;
    r.exact_match = ExactMatch(generated.text, task.answer);
    if (backend.can_score()) {
      MLA_ASSIGN_OR_RETURN(r.answer_logprob, backend.ScoreAnswer(prompt.text, task.answer));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) r.error = status.ToString();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

absl::Status RunTrials(const std::vector<TrialKey>& trials, const Corpus& corpus,
                       RecallBackend& backend, const RunOptions& options, ResultsWriter& writer,
                       bench::LiveCounters* live) {
  bench::LiveCounters unused;
  bench::LiveCounters& counters = live != nullptr ? *live : unused;
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;      // Guarded by mu.
  int consecutive_failures = 0;  // Guarded by mu.
  std::atomic<bool> stop{false};
  auto worker = [&] {
    for (size_t i = next++; i < trials.size() && !stop.load(); i = next++) {
      ++counters.dispatched;
      ++counters.in_flight;
      const TrialResult result = RunTrial(trials[i], corpus, backend, options.trial);
      --counters.in_flight;
      ++(result.ok() ? counters.completed : counters.failed);
      counters.output_tokens += result.generated_tokens;
      const absl::Status appended = writer.Append(result);
      absl::MutexLock lock(&mu);
      consecutive_failures = result.ok() ? 0 : consecutive_failures + 1;
      absl::Status error = appended;
      if (error.ok() && options.max_consecutive_failures > 0 &&
          consecutive_failures >= options.max_consecutive_failures) {
        error = absl::AbortedError(absl::StrCat(
            consecutive_failures, " trials in a row failed; the last: ", result.error));
      }
      if (!error.ok()) {
        if (first_error.ok()) first_error = error;
        stop = true;
      }
    }
  };
  std::vector<std::thread> threads;
  const int n = std::max(1, std::min<int>(options.concurrency, static_cast<int>(trials.size())));
  for (int t = 0; t < n; ++t) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&mu);
  return first_error;
}

}  // namespace mla::recall
