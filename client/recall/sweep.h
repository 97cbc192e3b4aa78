// The sweep: lengths x depths x kinds x samples, run with a fixed number of trials in
// flight, each result appended to results.jsonl as it finishes.
#ifndef MLA_CLIENT_RECALL_SWEEP_H_
#define MLA_CLIENT_RECALL_SWEEP_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/bench/runner.h"
#include "client/recall/backend.h"
#include "client/recall/haystack.h"
#include "client/recall/needle.h"
#include "client/recall/results.h"

namespace mla::recall {

struct SweepOptions {
  std::vector<int> lengths;
  std::vector<double> depths;
  std::vector<NeedleKind> kinds;
  int samples = 1;
  uint64_t seed = 0;
};

// "256,512,1K,4k" -> lengths (a K suffix multiplies by 1024); each must be > 0.
absl::StatusOr<std::vector<int>> ParseLengths(absl::string_view list);
// "0,0.25,1" -> depths, each in [0, 1].
absl::StatusOr<std::vector<double>> ParseDepths(absl::string_view list);
// n evenly spaced depths from 0 to 1 (n >= 2), or {0.5} for n = 1.
std::vector<double> EvenDepths(int n);
absl::StatusOr<std::vector<NeedleKind>> ParseKinds(absl::string_view list);

// Every trial, shortest contexts first (so early results cover the cheap cells), then by
// kind, sample and depth.
std::vector<TrialKey> PlanTrials(const SweepOptions& options);
// The trials of `plan` whose keys are not in `done`.
std::vector<TrialKey> PendingTrials(const std::vector<TrialKey>& plan,
                                    const std::set<std::string>& done);

struct TrialOptions {
  int answer_slack = 4;  // max_tokens = answer tokens + this.
  std::string model;     // Recorded in each result.
};

// Builds the prompt, generates greedily and scores. Failures land in result.error.
TrialResult RunTrial(const TrialKey& key, const Corpus& corpus, RecallBackend& backend,
                     const TrialOptions& options);

struct RunOptions {
  int concurrency = 1;
  TrialOptions trial;
  // Stop when this many trials in a row failed (the endpoint is likely down); 0 = never.
  int max_consecutive_failures = 20;
};

// Runs `trials` on `concurrency` threads, appending each result to `writer` and
// updating `live` (completed / failed / in flight / generated tokens) when not null.
// An error when appending fails or too many trials failed in a row.
absl::Status RunTrials(const std::vector<TrialKey>& trials, const Corpus& corpus,
                       RecallBackend& backend, const RunOptions& options, ResultsWriter& writer,
                       bench::LiveCounters* live);

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_SWEEP_H_
