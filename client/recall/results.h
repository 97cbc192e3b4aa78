// Trial results: one JSON object per line in results.jsonl (appended as trials finish,
// read back to resume a sweep) and the per-cell summary written as CSV and JSON.
#ifndef MLA_CLIENT_RECALL_RESULTS_H_
#define MLA_CLIENT_RECALL_RESULTS_H_

#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "client/recall/needle.h"

namespace mla::recall {

struct TrialResult {
  TrialKey key;
  std::string model;
  int prompt_tokens = 0;              // The prompt's actual length.
  std::vector<double> needle_depths;  // Actual depths, in NeedleTask order.
  double asked_depth = 0;             // Actual depth of the needle asked about.
  std::string expected;
  std::string generated;
  int generated_tokens = 0;
  bool exact_match = false;
  std::optional<double> answer_logprob;  // Absent when the backend cannot score.
  // DeepSeek-V3.2 servers: the share of the asked needle's tokens the lightning indexer
  // selected for the answer's first token, averaged over layers. Absent otherwise.
  std::optional<double> indexer_recall;
  std::string error;                     // Non-empty: the trial failed; scores are void.
  double seconds = 0;

  bool ok() const { return error.empty(); }
};

std::string ToJsonLine(const TrialResult& result);  // One line, no '\n'.
absl::StatusOr<TrialResult> FromJsonLine(absl::string_view line);

// Reads results.jsonl. A missing file is empty; lines that do not parse (a line torn by
// a crash mid-write) are skipped and counted in `skipped` when given.
absl::StatusOr<std::vector<TrialResult>> ReadResults(const std::string& path,
                                                     int* skipped = nullptr);

// Keys (TrialKey::ToString) of the trials that finished without error: a resumed sweep
// skips them and retries the failed ones.
std::set<std::string> DoneKeys(const std::vector<TrialResult>& results);

// Appends result lines to a file, flushing each so a crash loses at most one trial.
class ResultsWriter {
 public:
  // Opens `path` for appending (ending a torn last line first), or truncates it first
  // when `fresh`.
  static absl::StatusOr<std::unique_ptr<ResultsWriter>> Open(const std::string& path, bool fresh);
  ~ResultsWriter();

  absl::Status Append(const TrialResult& result);  // Thread-safe.

 private:
  explicit ResultsWriter(std::FILE* file) : file_(file) {}
  absl::Mutex mu_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_);
};

struct CellSummary {
  int length = 0;
  double depth = 0;
  NeedleKind kind = NeedleKind::kPasskey;
  int n = 0;       // Trials that finished.
  int errors = 0;  // Trials whose latest attempt failed.
  double exact_match_rate = 0;
  std::optional<double> mean_answer_logprob;  // Over the trials that have one.
  std::optional<double> mean_indexer_recall;  // Over the trials that have one.
};

// One entry per (length, depth, kind), sorted by kind, length, depth. A trial that
// appears more than once counts once: its last successful attempt wins.
std::vector<CellSummary> Summarize(const std::vector<TrialResult>& results);

// "length,depth,kind,n,exact_match_rate,mean_answer_logprob,errors,mean_indexer_recall" and
// one row per cell; the logprob and recall fields are empty when no trial of the cell has one.
std::string SummaryCsv(const std::vector<CellSummary>& cells);

// The cells plus run information (model, backend, whether logprobs were scored).
struct SummaryInfo {
  std::string model;
  std::string backend;
  bool logprob_scoring = false;
  std::string note;  // Why logprobs are missing, when they are.
};
std::string SummaryJson(const std::vector<CellSummary>& cells, const SummaryInfo& info);

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_RESULTS_H_
