#include "client/recall/haystack.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/client/recall/fake_counter.h"

namespace mla::recall {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::StartsWith;

// Sentences of different lengths, each numbered so that order can be checked.
std::string TestCorpusText() {
  std::string text;
  for (int i = 0; i < 200; ++i) {
    absl::StrAppend(&text, "Sentence number ", i, " says ",
                    std::string(static_cast<size_t>(5 + i % 13), 'x'), " and ends here.",
                    i % 7 == 0 ? "\n\n" : " ");
  }
  return text;
}

Corpus TestCorpus() { return *Corpus::FromText(TestCorpusText()); }

// The haystack between the BOS and the question, needles removed.
std::string HaystackOf(const BuiltPrompt& p, const NeedleTask& t) {
  std::string text = p.text.substr(0, p.text.size() - t.question.size());
  for (const Needle& n : t.needles) {
    const size_t at = text.find(n.sentence);
    EXPECT_NE(at, std::string::npos);
    // Remove the needle and one joining space.
    const size_t len = n.sentence.size() + (at + n.sentence.size() < text.size() ? 1 : 0);
    text.erase(at, len);
  }
  return text;
}

TEST(SplitSentencesTest, SplitsAtSentenceEndsAndCollapsesSpace) {
  EXPECT_THAT(SplitSentences("  One two.  Three?\nFour!\n\nFive 3.5 six. Tail"),
              ElementsAre("One two.", "Three?", "Four!", "Five 3.5 six.", "Tail"));
  EXPECT_TRUE(SplitSentences(" \n ").empty());
  EXPECT_FALSE(Corpus::FromText("   ").ok());
}

TEST(BuildPromptTest, HitsTheRequestedLengthExactlyWithAByteTokenizer) {
  const Corpus corpus = TestCorpus();
  ByteCounter counter;
  for (const NeedleKind kind : {NeedleKind::kPasskey, NeedleKind::kKv, NeedleKind::kMulti}) {
    for (const int length : {200, 256, 1000, 4096, 20000}) {
      for (const double depth : {0.0, 0.37, 1.0}) {
        const NeedleTask task = MakeNeedleTask({length, depth, kind, 0, 1});
        const absl::StatusOr<BuiltPrompt> p = BuildPrompt(corpus, task, length, counter);
        ASSERT_TRUE(p.ok()) << p.status();
        // Words are the unit of trimming: within a word of the target, usually exact.
        EXPECT_NEAR(p->tokens, length, 8) << NeedleKindName(kind) << " " << length;
        EXPECT_EQ(p->tokens, static_cast<int>(p->text.size()) + 1);
        EXPECT_THAT(p->text, EndsWith(task.question));
      }
    }
  }
}

TEST(BuildPromptTest, PutsTheNeedleAtTheRequestedDepth) {
  const Corpus corpus = TestCorpus();
  ByteCounter counter;
  for (const double depth : {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0}) {
    const NeedleTask task = MakeNeedleTask({8000, depth, NeedleKind::kPasskey, 0, 3});
    const BuiltPrompt p = *BuildPrompt(corpus, task, 8000, counter);
    const std::string haystack = HaystackOf(p, task);
    const size_t at = p.text.find(task.needles[0].sentence);
    ASSERT_NE(at, std::string::npos);
    // Bytes before the needle over the haystack's bytes: within one sentence (< 60
    // bytes) of the request.
    EXPECT_NEAR(static_cast<double>(at) / haystack.size(), depth, 60.0 / haystack.size());
    EXPECT_NEAR(p.needle_depths[0], depth, 60.0 / haystack.size());
    if (depth == 0.0) {
      EXPECT_EQ(at, 0u);
    }
    if (depth == 1.0) {
      EXPECT_THAT(p.text, EndsWith(task.needles[0].sentence + task.question));
    }
  }
}

TEST(BuildPromptTest, NeedlesSitBetweenSentences) {
  const Corpus corpus = TestCorpus();
  ByteCounter counter;
  const NeedleTask task = MakeNeedleTask({3000, 0.4, NeedleKind::kMulti, 1, 3});
  const BuiltPrompt p = *BuildPrompt(corpus, task, 3000, counter);
  for (const Needle& n : task.needles) {
    const size_t at = p.text.find(n.sentence);
    ASSERT_NE(at, std::string::npos);
    if (at > 0) {
      EXPECT_EQ(p.text.substr(at - 2, 2), ". ");  // After a whole sentence.
    }
    const std::string after = p.text.substr(at + n.sentence.size(), 1);
    EXPECT_TRUE(after == " " || after == "\n") << after;
  }
  // The haystack is consecutive corpus sentences: numbers rise by one (the first may
  // be cut, the window may wrap around to sentence 0).
  const std::string haystack = HaystackOf(p, task);
  int previous = -1, checked = 0;
  for (size_t at = haystack.find("Sentence number "); at != std::string::npos;
       at = haystack.find("Sentence number ", at + 1)) {
    const int n = std::stoi(haystack.substr(at + 16));
    if (previous >= 0) {
      EXPECT_EQ(n, (previous + 1) % 200);
    }
    previous = n;
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(BuildPromptTest, TheTextBeforeTheQuestionEndsWithAWholeSentence) {
  const Corpus corpus = TestCorpus();
  ByteCounter counter;
  const NeedleTask task = MakeNeedleTask({1500, 0.5, NeedleKind::kKv, 0, 8});
  const BuiltPrompt p = *BuildPrompt(corpus, task, 1500, counter);
  EXPECT_THAT(p.text, EndsWith("and ends here." + task.question));
}

TEST(BuildPromptTest, SameTaskGivesTheSamePrompt) {
  const Corpus corpus = TestCorpus();
  ByteCounter counter;
  const NeedleTask task = MakeNeedleTask({2048, 0.5, NeedleKind::kKv, 4, 8});
  EXPECT_EQ(BuildPrompt(corpus, task, 2048, counter)->text,
            BuildPrompt(corpus, task, 2048, counter)->text);
  const NeedleTask other = MakeNeedleTask({2048, 0.5, NeedleKind::kKv, 5, 8});
  EXPECT_NE(BuildPrompt(corpus, task, 2048, counter)->text,
            BuildPrompt(corpus, other, 2048, counter)->text);
}

TEST(BuildPromptTest, WrapsAroundASmallCorpus) {
  const Corpus corpus = *Corpus::FromText("Only one sentence here. And a second one.");
  ByteCounter counter;
  const NeedleTask task = MakeNeedleTask({600, 0.5, NeedleKind::kPasskey, 0, 1});
  const BuiltPrompt p = *BuildPrompt(corpus, task, 600, counter);
  EXPECT_NEAR(p.tokens, 600, 8);
}

TEST(BuildPromptTest, RejectsALengthBelowTheNeedleAndQuestion) {
  const Corpus corpus = TestCorpus();
  ByteCounter counter;
  const NeedleTask task = MakeNeedleTask({50, 0.5, NeedleKind::kPasskey, 0, 1});
  EXPECT_EQ(BuildPrompt(corpus, task, 50, counter).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A tokenizer whose counts are not additive (like BPE merges across pieces): a prompt
// counts 3% fewer tokens than its pieces. The resizing rounds still land near the target.
class SubAdditiveCounter : public TokenCounter {
 public:
  absl::StatusOr<int> CountPiece(const std::string& piece) override {
    return static_cast<int>(piece.size());
  }
  absl::StatusOr<int> CountPrompt(const std::string& prompt) override {
    return 1 + static_cast<int>(std::lround(prompt.size() * 0.97));
  }
};

TEST(BuildPromptTest, ConvergesWhenCountsAreNotAdditive) {
  const Corpus corpus = TestCorpus();
  SubAdditiveCounter counter;
  const NeedleTask task = MakeNeedleTask({10000, 0.5, NeedleKind::kKv, 0, 1});
  const BuiltPrompt p = *BuildPrompt(corpus, task, 10000, counter);
  EXPECT_NEAR(p.tokens, 10000, 10);
}

}  // namespace
}  // namespace mla::recall
