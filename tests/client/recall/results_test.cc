#include "client/recall/results.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_split.h"

namespace mla::recall {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TrialResult Result(int length, double depth, int sample, bool match, double logprob) {
  TrialResult r;
  r.key = {length, depth, NeedleKind::kKv, sample, 7};
  r.model = "m";
  r.prompt_tokens = length;
  r.needle_depths = {depth};
  r.asked_depth = depth;
  r.expected = "4821";
  r.generated = match ? " 4821." : " 1111.";
  r.exact_match = match;
  r.answer_logprob = logprob;
  return r;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

TEST(ResultsTest, JsonLineRoundTrips) {
  TrialResult r = Result(1024, 0.25, 3, true, -0.5);
  r.generated = "bad \xff byte";  // Invalid UTF-8 still makes a line.
  const std::string line = ToJsonLine(r);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const absl::StatusOr<TrialResult> back = FromJsonLine(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key.ToString(), r.key.ToString());
  EXPECT_EQ(back->expected, "4821");
  EXPECT_TRUE(back->exact_match);
  EXPECT_DOUBLE_EQ(*back->answer_logprob, -0.5);
  EXPECT_TRUE(back->ok());

  TrialResult failed = Result(1024, 0.25, 3, false, 0);
  failed.answer_logprob.reset();
  failed.error = "UNAVAILABLE: down";
  const TrialResult f = *FromJsonLine(ToJsonLine(failed));
  EXPECT_FALSE(f.ok());
  EXPECT_FALSE(f.answer_logprob.has_value());
}

TEST(ResultsTest, ResumeSkipsFinishedTrialsAndRetriesFailedOnes) {
  const std::string path = TempPath("resume_results.jsonl");
  {
    auto writer = *ResultsWriter::Open(path, /*fresh=*/true);
    ASSERT_TRUE(writer->Append(Result(512, 0.0, 0, true, -1)).ok());
    TrialResult failed = Result(512, 0.5, 0, false, 0);
    failed.error = "DEADLINE_EXCEEDED";
    ASSERT_TRUE(writer->Append(failed).ok());
  }
  {  // A crash mid-write leaves a torn last line.
    std::ofstream torn(path, std::ios::app);
    torn << R"({"length":512,"depth":1.0,"ki)";
  }
  int skipped = 0;
  const std::vector<TrialResult> read = *ReadResults(path, &skipped);
  EXPECT_EQ(read.size(), 2u);
  EXPECT_EQ(skipped, 1);
  const std::set<std::string> done = DoneKeys(read);
  EXPECT_THAT(done, ElementsAre(Result(512, 0.0, 0, true, 0).key.ToString()));

  // Appending keeps what is there; fresh starts over.
  { ASSERT_TRUE((*ResultsWriter::Open(path, false))->Append(Result(512, 1.0, 0, true, 0)).ok()); }
  EXPECT_EQ(ReadResults(path)->size(), 3u);
  { auto fresh = *ResultsWriter::Open(path, /*fresh=*/true); }
  EXPECT_TRUE(ReadResults(path)->empty());
  EXPECT_TRUE(ReadResults(TempPath("missing.jsonl"))->empty());
}

TEST(ResultsTest, SummarizesCellsAndCountsEachTrialOnce) {
  std::vector<TrialResult> results = {
      Result(512, 0.0, 0, true, -1.0), Result(512, 0.0, 1, false, -3.0),
      Result(1024, 0.0, 0, true, -0.5), Result(512, 1.0, 0, false, -2.0)};
  TrialResult failed = Result(512, 1.0, 1, false, 0);
  failed.error = "UNAVAILABLE";
  results.push_back(failed);
  // A retry of a failed trial replaces it; a later failure does not undo a success.
  TrialResult retry_failed = Result(512, 0.0, 1, false, 0);
  retry_failed.error = "UNAVAILABLE";
  results.push_back(retry_failed);

  const std::vector<CellSummary> cells = Summarize(results);
  ASSERT_EQ(cells.size(), 3u);
  EXPECT_EQ(cells[0].length, 512);
  EXPECT_EQ(cells[0].depth, 0.0);
  EXPECT_EQ(cells[0].n, 2);
  EXPECT_DOUBLE_EQ(cells[0].exact_match_rate, 0.5);
  EXPECT_DOUBLE_EQ(*cells[0].mean_answer_logprob, -2.0);
  EXPECT_EQ(cells[1].depth, 1.0);
  EXPECT_EQ(cells[1].n, 1);
  EXPECT_EQ(cells[1].errors, 1);
  EXPECT_EQ(cells[2].length, 1024);

  const std::vector<std::string> csv = absl::StrSplit(SummaryCsv(cells), '\n');
  EXPECT_EQ(csv[0],
            "length,depth,kind,n,exact_match_rate,mean_answer_logprob,errors,mean_indexer_recall");
  EXPECT_EQ(csv[1], "512,0.0000,kv,2,0.5000,-2.0000,0,");
  EXPECT_EQ(csv[2], "512,1.0000,kv,1,0.0000,-2.0000,1,");

  SummaryInfo info;
  info.model = "demo";
  info.note = "exact match only";
  const std::string json = SummaryJson(cells, info);
  EXPECT_THAT(json, HasSubstr("\"model\": \"demo\""));
  EXPECT_THAT(json, HasSubstr("\"note\": \"exact match only\""));
}

TEST(ResultsTest, IndexerRecallRoundTripsAndAveragesPerCell) {
  TrialResult a = Result(512, 0.0, 0, true, -1.0), b = Result(512, 0.0, 1, true, -1.0);
  a.indexer_recall = 0.25;
  b.indexer_recall = 0.75;
  const TrialResult c = Result(1024, 0.0, 0, true, -1.0);  // A dense server: none.
  auto back = FromJsonLine(ToJsonLine(a));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_DOUBLE_EQ(*back->indexer_recall, 0.25);
  EXPECT_FALSE(FromJsonLine(ToJsonLine(c))->indexer_recall.has_value());
  const std::vector<CellSummary> cells = Summarize({a, b, c});
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_DOUBLE_EQ(*cells[0].mean_indexer_recall, 0.5);
  EXPECT_FALSE(cells[1].mean_indexer_recall.has_value());
  const std::vector<std::string> csv = absl::StrSplit(SummaryCsv(cells), '\n');
  EXPECT_EQ(csv[1], "512,0.0000,kv,2,1.0000,-1.0000,0,0.5000");
  EXPECT_THAT(SummaryJson(cells, {}), HasSubstr("\"mean_indexer_recall\": 0.5"));
}

}  // namespace
}  // namespace mla::recall
