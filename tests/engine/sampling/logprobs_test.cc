#include "engine/sampling/logprobs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/sampling/rng.h"

namespace mla {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(LogSoftmaxTest, SumsToOneInProbabilitySpace) {
  Rng rng(3);
  for (int n : {1, 10, 129280}) {
    std::vector<float> logits(n);
    for (float& x : logits) x = static_cast<float>(rng.NextDouble() * 30.0 - 15.0);
    const std::vector<float> lp = LogSoftmax(logits);
    double sum = 0.0;
    for (float x : lp) {
      ASSERT_LE(x, 0.0f);
      sum += std::exp(static_cast<double>(x));
    }
    EXPECT_NEAR(sum, 1.0, 1e-5) << "n " << n;
    // Differences of logprobs are differences of logits.
    if (n > 1) {
      EXPECT_NEAR(lp[1] - lp[0], logits[1] - logits[0], 1e-4);
    }
  }
}

TEST(LogSoftmaxTest, MatchesTheFormulaAndIsStableForHugeLogits) {
  const std::vector<float> lp = LogSoftmax(std::vector<float>{1.0f, 2.0f, 3.0f});
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(lp[0], 1.0 - lse, 1e-6);
  EXPECT_NEAR(lp[2], 3.0 - lse, 1e-6);
  const std::vector<float> shifted = LogSoftmax(std::vector<float>{1e4f + 1, 1e4f + 2, 1e4f + 3});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(shifted[i], lp[i], 1e-6);
}

TEST(LogSoftmaxTest, NonFiniteLogits) {
  std::vector<float> lp = LogSoftmax(std::vector<float>{0.0f, kNaN, -kInf, 0.0f});
  EXPECT_NEAR(lp[0], std::log(0.5), 1e-7);
  EXPECT_EQ(lp[1], -kInf);
  EXPECT_EQ(lp[2], -kInf);
  lp = LogSoftmax(std::vector<float>{kInf, 3.0f, kInf, kNaN});
  EXPECT_NEAR(lp[0], std::log(0.5), 1e-7);
  EXPECT_EQ(lp[1], -kInf);
  EXPECT_NEAR(lp[2], std::log(0.5), 1e-7);
  EXPECT_EQ(lp[3], -kInf);
  lp = LogSoftmax(std::vector<float>{kNaN, -kInf});
  EXPECT_TRUE(std::isnan(lp[0]));
  EXPECT_TRUE(std::isnan(lp[1]));
  EXPECT_TRUE(LogSoftmax(std::vector<float>{}).empty());
}

TEST(TopNTest, MostLikelyFirstTiesByLowerId) {
  const std::vector<float> lp = {-2.0f, -0.5f, -3.0f, -0.5f, kNaN, -1.0f};
  const std::vector<TokenLogprob> top = TopN(lp, 4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].token_id, 1);
  EXPECT_EQ(top[1].token_id, 3);
  EXPECT_EQ(top[2].token_id, 5);
  EXPECT_EQ(top[3].token_id, 0);
  EXPECT_EQ(top[0].logprob, -0.5f);
  EXPECT_EQ(top[3].logprob, -2.0f);
  const std::vector<TokenLogprob> all = TopN(lp, 100);
  ASSERT_EQ(all.size(), lp.size());
  EXPECT_EQ(all.back().token_id, 4);  // NaN last.
  EXPECT_TRUE(TopN(lp, 0).empty());
}

}  // namespace
}  // namespace mla
