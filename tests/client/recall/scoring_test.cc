#include "client/recall/scoring.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "client/recall/openai_backend.h"

namespace mla::recall {
namespace {

TEST(ExactMatchTest, AcceptsTheValueWithSpacesAndPunctuation) {
  EXPECT_TRUE(ExactMatch("12345", "12345"));
  EXPECT_TRUE(ExactMatch(" 12345.", "12345"));
  EXPECT_TRUE(ExactMatch("\n  12345\nWhat", "12345"));
  EXPECT_TRUE(ExactMatch("4821, as noted", "4821"));
}

TEST(ExactMatchTest, RejectsOtherValues) {
  EXPECT_FALSE(ExactMatch("1234", "12345"));    // Cut short.
  EXPECT_FALSE(ExactMatch("123456", "12345"));  // A longer number.
  EXPECT_FALSE(ExactMatch("12345x", "12345"));
  EXPECT_FALSE(ExactMatch("The pass key is 12345", "12345"));  // Not at the start.
  EXPECT_FALSE(ExactMatch("", "12345"));
  EXPECT_FALSE(ExactMatch("anything", ""));
}

google::protobuf::RepeatedPtrField<v1::TokenLogprob> Logprobs(
    const std::vector<std::pair<int, float>>& entries) {
  google::protobuf::RepeatedPtrField<v1::TokenLogprob> out;
  for (const auto& [id, lp] : entries) {
    v1::TokenLogprob* l = out.Add();
    l->set_token_id(id);
    l->set_logprob(lp);
  }
  return out;
}

TEST(SumAnswerLogprobsTest, SumsTheAnswerTokensAtTheEndOfThePrompt) {
  // Prompt [BOS, 10, 11, 12] + answer [20, 21]: entries for tokens 2..6 of 6.
  const auto lps = Logprobs({{10, -5.0f}, {11, -4.0f}, {12, -3.0f}, {20, -0.5f}, {21, -0.25f}});
  const absl::StatusOr<double> sum = SumAnswerLogprobs(lps, {20, 21});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_DOUBLE_EQ(*sum, -0.75);
  EXPECT_DOUBLE_EQ(*SumAnswerLogprobs(lps, {21}), -0.25);
}

TEST(SumAnswerLogprobsTest, RejectsMismatchedOrMissingTokens) {
  const auto lps = Logprobs({{10, -5.0f}, {20, -0.5f}, {21, -0.25f}});
  EXPECT_FALSE(SumAnswerLogprobs(lps, {21, 20}).ok());
  EXPECT_FALSE(SumAnswerLogprobs(lps, {1, 10, 20, 21}).ok());
  EXPECT_FALSE(SumAnswerLogprobs(lps, {}).ok());
}

TEST(SumEchoLogprobsTest, CountsTokensThatOverlapTheAnswer) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // "is 12345" + one generated token: "is" [0,2) " 1" [2,4) "23" [4,6) "45" [6,8) "." [8,9)
  // The answer is [3, 8): " 1" straddles the boundary and counts.
  const std::vector<int> offsets = {0, 2, 4, 6, 8};
  const std::vector<double> lps = {nan, -1.0, -2.0, -4.0, -8.0};
  EXPECT_DOUBLE_EQ(*SumEchoLogprobs(offsets, lps, 3, 8), -7.0);
  // Answer [4, 8): exactly two tokens.
  EXPECT_DOUBLE_EQ(*SumEchoLogprobs(offsets, lps, 4, 8), -6.0);
  EXPECT_FALSE(SumEchoLogprobs(offsets, lps, 0, 2).ok());  // The first has no logprob.
  EXPECT_FALSE(SumEchoLogprobs({0, 2}, {-1.0}, 0, 2).ok());
}

TEST(OpenAiParseTest, ReadsTheCompletionTextAndUsage) {
  const auto r = ParseCompletion(R"({"choices":[{"text":" 12345.","index":0}],)"
                                 R"("usage":{"prompt_tokens":1024,"completion_tokens":3}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, " 12345.");
  EXPECT_EQ(r->tokens, 3);
  EXPECT_EQ(r->prompt_tokens, 1024);
  EXPECT_FALSE(ParseCompletion(R"({"error":"bad"})").ok());
  EXPECT_FALSE(ParseCompletion("not json").ok());
}

TEST(OpenAiParseTest, ReadsEchoedLogprobs) {
  const std::string body =
      R"({"choices":[{"text":"key is 4821!","logprobs":{"tokens":["key"," is"," 48","21","!"],)"
      R"("token_logprobs":[null,-0.1,-0.5,-0.25,-3.0],"text_offset":[0,3,6,9,11]}}]})";
  // Prompt "key is " (7 chars), answer "4821" [7, 11).
  EXPECT_DOUBLE_EQ(*ParseEchoLogprob(body, 7, 11), -0.75);
  EXPECT_EQ(ParseEchoLogprob(R"({"choices":[{"text":"x","logprobs":null}]})", 0, 1).status().code(),
            absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace mla::recall
