#include "client/recall/sweep.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <regex>

#include "absl/strings/str_cat.h"
#include "tests/client/recall/fake_counter.h"

namespace mla::recall {
namespace {

using ::testing::ElementsAre;

// A "model" that finds the asked-about needle only in the first half of the prompt and
// answers with a wrong value otherwise.
class FakeBackend : public RecallBackend {
 public:
  explicit FakeBackend(bool fail = false) : fail_(fail) {}
  TokenCounter& counter() override { return counter_; }

  absl::StatusOr<GenerateResult> Generate(const std::string& prompt, int max_tokens) override {
    ++generate_calls;
    if (fail_) return absl::UnavailableError("down");
    EXPECT_GT(max_tokens, 4);
    const std::string value = Recall(prompt);
    GenerateResult r;
    r.text = absl::StrCat(" ", value.empty() ? "0000000" : value, ".");
    r.tokens = 3;
    return r;
  }
  // As a sparse-attention server would: the watch must be exactly the asked needle, and
  // the fake "indexer" keeps it when it sits in the first half.
  absl::StatusOr<GenerateResult> GenerateWatching(const std::string& prompt, int max_tokens,
                                                  TextSpan watch) override {
    EXPECT_LT(watch.begin, watch.end);
    EXPECT_TRUE(std::regex_search(prompt.substr(watch.begin, watch.end - watch.begin),
                                  std::regex("^" + AskedPattern(prompt) + ".*$")))
        << prompt.substr(watch.begin, watch.end - watch.begin);
    absl::StatusOr<GenerateResult> r = Generate(prompt, max_tokens);
    if (r.ok()) r->indexer_recall = Recall(prompt).empty() ? 0.0 : 1.0;
    return r;
  }
  bool can_score() const override { return true; }
  absl::StatusOr<double> ScoreAnswer(const std::string& prompt,
                                     const std::string& answer) override {
    return Recall(prompt) == answer ? -0.1 : -5.0;
  }
  std::string Describe() const override { return "fake"; }

  std::atomic<int> generate_calls{0};

 private:
  // The pattern of the needle the prompt's question asks about.
  static std::string AskedPattern(const std::string& prompt) {
    std::smatch m;
    const std::string question = prompt.substr(prompt.rfind('\n'));
    if (std::regex_search(question, m, std::regex("value of key ([A-Z]{4})\\?"))) {
      return "The value of key " + m[1].str() + " is ([0-9]+)\\.";
    }
    return "The pass key is ([0-9]+)\\.";
  }
  static std::string Recall(const std::string& prompt) {
    std::smatch m;
    if (!std::regex_search(prompt, m, std::regex(AskedPattern(prompt)))) return "";
    const double at = static_cast<double>(m.position(0)) / prompt.size();
    return at < 0.5 ? m[1].str() : "";
  }

  const bool fail_;
  ByteCounter counter_;
};

Corpus TestCorpus() {
  std::string text;
  for (int i = 0; i < 100; ++i) absl::StrAppend(&text, "Filler sentence ", i, " is here. ");
  return *Corpus::FromText(text);
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

TEST(SweepFlagsTest, ParsesLists) {
  EXPECT_THAT(*ParseLengths("256, 1K,4k"), ElementsAre(256, 1024, 4096));
  EXPECT_FALSE(ParseLengths("0").ok());
  EXPECT_FALSE(ParseLengths("12x").ok());
  EXPECT_THAT(*ParseDepths("0,0.5,1"), ElementsAre(0.0, 0.5, 1.0));
  EXPECT_FALSE(ParseDepths("1.5").ok());
  EXPECT_THAT(EvenDepths(5), ElementsAre(0.0, 0.25, 0.5, 0.75, 1.0));
  EXPECT_EQ(EvenDepths(11).size(), 11u);
  EXPECT_THAT(*ParseKinds("kv,multi"), ElementsAre(NeedleKind::kKv, NeedleKind::kMulti));
  EXPECT_FALSE(ParseKinds("kv,needle").ok());
}

TEST(SweepTest, PlansEveryTrialShortestFirst) {
  const SweepOptions o{{1024, 256}, {0.0, 1.0}, {NeedleKind::kKv, NeedleKind::kPasskey}, 3, 9};
  const std::vector<TrialKey> plan = PlanTrials(o);
  ASSERT_EQ(plan.size(), 2u * 2 * 2 * 3);
  EXPECT_EQ(plan.front().length, 256);
  EXPECT_EQ(plan.back().length, 1024);
  EXPECT_EQ(plan.front().seed, 9u);
}

TEST(SweepTest, RunsTrialsAndScoresThem) {
  const Corpus corpus = TestCorpus();
  FakeBackend backend;
  const SweepOptions o{
      {600, 1200}, {0.0, 0.25, 1.0}, {NeedleKind::kPasskey, NeedleKind::kMulti}, 2, 5};
  const std::string path = TempPath("sweep_results.jsonl");
  auto writer = *ResultsWriter::Open(path, /*fresh=*/true);
  RunOptions run;
  run.concurrency = 3;
  run.trial.model = "fake-model";
  bench::LiveCounters live;
  ASSERT_TRUE(RunTrials(PlanTrials(o), corpus, backend, run, *writer, &live).ok());
  EXPECT_EQ(live.completed.load(), 24);
  EXPECT_EQ(live.failed.load(), 0);
  EXPECT_EQ(live.output_tokens.load(), 24 * 3);

  const std::vector<TrialResult> results = *ReadResults(path);
  ASSERT_EQ(results.size(), 24u);
  for (const TrialResult& r : results) {
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.model, "fake-model");
    EXPECT_NEAR(r.prompt_tokens, r.key.length, 8);
    // The fake recalls what sits in the first half of the prompt.
    const bool early = r.asked_depth < 0.5;
    EXPECT_EQ(r.exact_match, early) << r.key.ToString() << " " << r.asked_depth;
    EXPECT_DOUBLE_EQ(*r.answer_logprob, early ? -0.1 : -5.0);
    EXPECT_DOUBLE_EQ(*r.indexer_recall, early ? 1.0 : 0.0);
  }
  for (const CellSummary& c : Summarize(results)) {
    if (c.kind != NeedleKind::kPasskey) continue;
    EXPECT_EQ(c.n, 2);
    EXPECT_DOUBLE_EQ(c.exact_match_rate, c.depth < 0.5 ? 1.0 : 0.0);
    EXPECT_DOUBLE_EQ(*c.mean_indexer_recall, c.depth < 0.5 ? 1.0 : 0.0);
  }
}

TEST(SweepTest, ResumeRunsOnlyWhatIsMissing) {
  const Corpus corpus = TestCorpus();
  const SweepOptions o{{600}, {0.0, 0.5, 1.0}, {NeedleKind::kKv}, 2, 1};
  const std::vector<TrialKey> plan = PlanTrials(o);
  const std::string path = TempPath("resume_sweep.jsonl");
  FakeBackend backend;
  {
    auto writer = *ResultsWriter::Open(path, true);
    const std::vector<TrialKey> first(plan.begin(), plan.begin() + 4);
    ASSERT_TRUE(RunTrials(first, corpus, backend, RunOptions{}, *writer, nullptr).ok());
  }
  EXPECT_EQ(backend.generate_calls.load(), 4);
  const std::vector<TrialKey> pending = PendingTrials(plan, DoneKeys(*ReadResults(path)));
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].ToString(), plan[4].ToString());
  {
    auto writer = *ResultsWriter::Open(path, false);
    ASSERT_TRUE(RunTrials(pending, corpus, backend, RunOptions{}, *writer, nullptr).ok());
  }
  EXPECT_EQ(backend.generate_calls.load(), 6);
  EXPECT_TRUE(PendingTrials(plan, DoneKeys(*ReadResults(path))).empty());
  // A different seed is a different sweep: nothing of it is done.
  SweepOptions other = o;
  other.seed = 2;
  EXPECT_EQ(PendingTrials(PlanTrials(other), DoneKeys(*ReadResults(path))).size(), 6u);
}

TEST(SweepTest, StopsWhenTheEndpointKeepsFailing) {
  const Corpus corpus = TestCorpus();
  FakeBackend backend(/*fail=*/true);
  const SweepOptions o{{600}, EvenDepths(11), {NeedleKind::kKv}, 4, 1};
  auto writer = *ResultsWriter::Open(TempPath("failing.jsonl"), true);
  RunOptions run;
  run.max_consecutive_failures = 5;
  const absl::Status s = RunTrials(PlanTrials(o), corpus, backend, run, *writer, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(backend.generate_calls.load(), 5);
  const std::vector<TrialResult> results = *ReadResults(TempPath("failing.jsonl"));
  ASSERT_EQ(results.size(), 5u);
  EXPECT_THAT(results[0].error, ::testing::HasSubstr("down"));
  EXPECT_TRUE(DoneKeys(results).empty());  // Failed trials are retried on resume.
}

}  // namespace
}  // namespace mla::recall
