#include "client/recall/needle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace mla::recall {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;

TEST(NeedleTest, ParsesKindNames) {
  for (const NeedleKind kind : {NeedleKind::kPasskey, NeedleKind::kKv, NeedleKind::kMulti}) {
    EXPECT_EQ(*ParseNeedleKind(NeedleKindName(kind)), kind);
  }
  EXPECT_FALSE(ParseNeedleKind("needle").ok());
}

TEST(NeedleTest, PasskeyFollowsTheSharedFormat) {
  const NeedleTask t = MakeNeedleTask({1024, 0.3, NeedleKind::kPasskey, 0, 7});
  ASSERT_EQ(t.needles.size(), 1u);
  EXPECT_TRUE(std::regex_match(t.answer, std::regex("[1-9][0-9]{4}")));
  EXPECT_EQ(t.needles[0].sentence,
            "The pass key is " + t.answer + ". Remember it. " + t.answer + " is the pass key.");
  EXPECT_EQ(t.needles[0].depth, 0.3);
  EXPECT_EQ(t.question, "\nWhat is the pass key? The pass key is ");
}

TEST(NeedleTest, KvFollowsTheSharedFormat) {
  const NeedleTask t = MakeNeedleTask({1024, 0.5, NeedleKind::kKv, 3, 7});
  ASSERT_EQ(t.needles.size(), 1u);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(t.needles[0].sentence, m,
                               std::regex("The value of key ([A-Z]{4}) is ([0-9]{4})\\.")));
  EXPECT_EQ(m[2].str(), t.answer);
  const std::string key = m[1].str();
  EXPECT_EQ(t.question, "\nWhat is the value of key " + key + "? The value of key " + key + " is ");
}

TEST(NeedleTest, MultiAsksAboutOneOfThreeDistinctNeedles) {
  std::set<int> asked;
  for (int sample = 0; sample < 30; ++sample) {
    const NeedleTask t = MakeNeedleTask({2048, 0.2, NeedleKind::kMulti, sample, 1});
    ASSERT_EQ(t.needles.size(), 3u);
    EXPECT_NE(t.needles[0].sentence, t.needles[1].sentence);
    EXPECT_NE(t.needles[1].sentence, t.needles[2].sentence);
    EXPECT_NE(t.needles[0].sentence, t.needles[2].sentence);
    ASSERT_GE(t.asked, 0);
    ASSERT_LT(t.asked, 3);
    asked.insert(t.asked);
    EXPECT_THAT(t.needles[t.asked].sentence, ::testing::HasSubstr(" is " + t.answer + "."));
    EXPECT_EQ(t.needles[0].depth, 0.2);  // The requested depth goes to the first needle.
  }
  EXPECT_EQ(asked.size(), 3u);  // The question is not always about the same needle.
}

TEST(NeedleTest, MultiDepthsSpreadAndWrap) {
  EXPECT_THAT(MultiNeedleDepths(0.0),
              ElementsAre(0.0, DoubleNear(1.0 / 3, 1e-12), DoubleNear(2.0 / 3, 1e-12)));
  EXPECT_THAT(MultiNeedleDepths(0.5),
              ElementsAre(0.5, DoubleNear(5.0 / 6, 1e-12), DoubleNear(1.0 / 6, 1e-12)));
  EXPECT_THAT(MultiNeedleDepths(1.0),
              ElementsAre(1.0, DoubleNear(1.0 / 3, 1e-12), DoubleNear(2.0 / 3, 1e-12)));
}

TEST(NeedleTest, DeterministicBySeed) {
  for (const NeedleKind kind : {NeedleKind::kPasskey, NeedleKind::kKv, NeedleKind::kMulti}) {
    const NeedleTask a = MakeNeedleTask({4096, 0.1, kind, 2, 42});
    const NeedleTask b = MakeNeedleTask({4096, 0.1, kind, 2, 42});
    EXPECT_EQ(a.answer, b.answer);
    EXPECT_EQ(a.question, b.question);
    EXPECT_EQ(a.haystack_seed, b.haystack_seed);
    ASSERT_EQ(a.needles.size(), b.needles.size());
    for (size_t i = 0; i < a.needles.size(); ++i) {
      EXPECT_EQ(a.needles[i].sentence, b.needles[i].sentence);
    }
  }
}

TEST(NeedleTest, SeedSampleAndLengthChangeTheTask) {
  const TrialKey base{4096, 0.1, NeedleKind::kKv, 2, 42};
  std::set<std::string> questions;
  std::set<uint64_t> haystacks;
  for (TrialKey k :
       {base, TrialKey{4096, 0.1, NeedleKind::kKv, 2, 43},
        TrialKey{4096, 0.1, NeedleKind::kKv, 3, 42}, TrialKey{8192, 0.1, NeedleKind::kKv, 2, 42}}) {
    const NeedleTask t = MakeNeedleTask(k);
    questions.insert(t.question + t.answer);
    haystacks.insert(t.haystack_seed);
  }
  EXPECT_EQ(questions.size(), 4u);
  EXPECT_EQ(haystacks.size(), 4u);
}

TEST(NeedleTest, DepthMovesTheNeedleOnly) {
  const NeedleTask a = MakeNeedleTask({1024, 0.0, NeedleKind::kPasskey, 0, 5});
  const NeedleTask b = MakeNeedleTask({1024, 0.9, NeedleKind::kPasskey, 0, 5});
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_EQ(a.haystack_seed, b.haystack_seed);
  EXPECT_EQ(b.needles[0].depth, 0.9);
}

TEST(NeedleTest, KeyStringIsStable) {
  EXPECT_EQ((TrialKey{512, 0.1, NeedleKind::kMulti, 3, 9}).ToString(), "512/0.1000/multi/3/9");
}

TEST(NeedleTest, RngIsPortable) {
  // SplitMix64's published first output for seed 0.
  Rng rng(0);
  EXPECT_EQ(rng.Next(), 0xe220a8397b1dcdafULL);
  Rng bounded(1);
  for (int i = 0; i < 1000; ++i) {
    const int64_t v = bounded.Uniform(3, 5);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 5);
  }
}

}  // namespace
}  // namespace mla::recall
