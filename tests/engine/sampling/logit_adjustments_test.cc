// Logit bias and the repetition, frequency and presence penalties against a plain
// per-token reference on random rows and histories, the fixed cases each step is defined
// by, and the parameter checks.
#include "engine/sampling/logit_adjustments.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend/host_sampling.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/rng.h"

namespace mla {
namespace {

using ::testing::HasSubstr;

// The definition token by token over the whole row: bias, then the repetition penalty for
// tokens of the prompt or output, then frequency and presence over the output's counts.
std::vector<float> Reference(const SamplingParams& p, const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& output, std::vector<float> logits) {
  for (size_t t = 0; t < logits.size(); ++t) {
    const int32_t id = static_cast<int32_t>(t);
    for (const auto& [token, bias] : p.logit_bias) {
      if (token == id) logits[t] += bias;
    }
    const int count = static_cast<int>(std::count(output.begin(), output.end(), id));
    const bool in_prompt = std::find(prompt.begin(), prompt.end(), id) != prompt.end();
    if (in_prompt || count > 0) {
      logits[t] =
          logits[t] > 0 ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
    }
    if (count > 0) logits[t] -= p.frequency_penalty * count + p.presence_penalty;
  }
  return logits;
}

TokenHistory History(const std::vector<int32_t>& prompt, const std::vector<int32_t>& output) {
  TokenHistory h;
  h.SetPrompt(prompt);
  for (int32_t t : output) h.AddOutput(t);
  return h;
}

TEST(LogitAdjustmentsTest, MatchesThePerTokenDefinitionOnRandomRows) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> logit(-8.0f, 8.0f), penalty(-2.0f, 2.0f),
      bias(-100.0f, 100.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const int vocab = 1 + static_cast<int>(gen() % 97);  // Odd sizes, one token included.
    std::vector<float> row(static_cast<size_t>(vocab));
    for (float& x : row) x = logit(gen);
    if (trial % 5 == 0) row[gen() % vocab] = 0.0f;  // Zero: multiplied, stays zero.
    std::vector<int32_t> prompt(gen() % 40), output(gen() % 40);
    for (int32_t& t : prompt) t = static_cast<int32_t>(gen() % vocab);
    for (int32_t& t : output) t = static_cast<int32_t>(gen() % vocab);
    SamplingParams p;
    p.presence_penalty = trial % 3 == 0 ? 0.0f : penalty(gen);
    p.frequency_penalty = trial % 4 == 0 ? 0.0f : penalty(gen);
    p.repetition_penalty = trial % 2 == 0 ? 1.0f : 0.25f + static_cast<float>(gen() % 300) / 100;
    for (int b = static_cast<int>(gen() % 4); b > 0; --b) {
      const int32_t token = static_cast<int32_t>(gen() % vocab);
      if (std::none_of(p.logit_bias.begin(), p.logit_bias.end(),
                       [&](const auto& e) { return e.first == token; })) {
        p.logit_bias.emplace_back(token, bias(gen));
      }
    }
    ASSERT_TRUE(ValidateSamplingParams(p).ok());
    std::vector<float> got = row;
    ApplyLogitAdjustments(p, History(prompt, output), got);
    const std::vector<float> want = Reference(p, prompt, output, row);
    for (int t = 0; t < vocab; ++t) {
      // The frequency term is one product and one subtraction in both: the same bits.
      ASSERT_EQ(got[t], want[t]) << "trial " << trial << " token " << t;
    }
  }
}

TEST(LogitAdjustmentsTest, EachStepAsDefined) {
  const std::vector<float> row = {2.0f, -2.0f, 1.0f, 0.5f, -1.0f, 3.0f};
  // Repetition: a positive logit divided, a negative one multiplied, a token in both the
  // prompt and the output once, tokens in neither untouched.
  SamplingParams rep;
  rep.repetition_penalty = 2.0f;
  std::vector<float> got = row;
  ApplyLogitAdjustments(rep, History({0, 1, 0}, {1, 2, 2}), got);
  EXPECT_EQ(got, (std::vector<float>{1.0f, -4.0f, 0.5f, 0.5f, -1.0f, 3.0f}));
  // Frequency per occurrence, presence once, over the output only.
  SamplingParams fp;
  fp.frequency_penalty = 0.5f;
  fp.presence_penalty = 1.0f;
  got = row;
  ApplyLogitAdjustments(fp, History({5, 5}, {2, 2, 2, 4}), got);
  EXPECT_EQ(got, (std::vector<float>{2.0f, -2.0f, -1.5f, 0.5f, -2.5f, 3.0f}));
  // Negative penalties reward repeats.
  fp.frequency_penalty = -1.0f;
  fp.presence_penalty = 0.0f;
  got = row;
  ApplyLogitAdjustments(fp, History({}, {3, 3}), got);
  EXPECT_EQ(got[3], 2.5f);
  // Bias first, then the repetition penalty on the biased value.
  SamplingParams both;
  both.logit_bias = {{1, 4.0f}};
  both.repetition_penalty = 2.0f;
  got = row;
  ApplyLogitAdjustments(both, History({1}, {}), got);
  EXPECT_EQ(got[1], 1.0f);  // (-2 + 4) / 2.
  // Nothing set: nothing changes, and adjusts_logits() says so.
  SamplingParams none;
  EXPECT_FALSE(none.adjusts_logits());
  EXPECT_TRUE(both.adjusts_logits());
  got = row;
  ApplyLogitAdjustments(none, History({0, 1}, {2}), got);
  EXPECT_EQ(got, row);
}

TEST(LogitAdjustmentsTest, MinTokensHoldsBackTheStopTokensUntilEnoughWereGenerated) {
  const std::vector<float> row = {0.5f, 1.0f, 2.0f, 3.0f, 4.0f};
  const float inf = std::numeric_limits<float>::infinity();
  SamplingParams p;
  p.min_tokens = 2;
  EXPECT_TRUE(p.adjusts_logits());
  TokenHistory h;
  h.SetStopTokens({1, 4, 99});  // 99: outside the row, skipped.
  for (int generated = 0; generated <= 3; ++generated) {
    std::vector<float> got = row;
    ApplyLogitAdjustments(p, h, got);
    if (generated < 2) {
      EXPECT_EQ(got, (std::vector<float>{0.5f, -inf, 2.0f, 3.0f, -inf})) << generated;
    } else {
      EXPECT_EQ(got, row) << generated;
    }
    h.AddOutput(3);
  }
  EXPECT_EQ(h.num_output(), 4);
}

TEST(LogitAdjustmentsTest, TokensOutsideTheRowAreSkipped) {
  SamplingParams p;
  p.repetition_penalty = 3.0f;
  p.frequency_penalty = 1.0f;
  p.logit_bias = {{9, 5.0f}, {1, 1.0f}};
  std::vector<float> row = {1.0f, 1.0f};
  ApplyLogitAdjustments(p, History({7, 0}, {12, 12}), row);
  EXPECT_EQ(row, (std::vector<float>{1.0f / 3.0f, 2.0f}));
}

TEST(LogitAdjustmentsTest, ChecksNameTheField) {
  const auto message = [](SamplingParams p) {
    return std::string(ValidateSamplingParams(p).message());
  };
  SamplingParams p;
  p.presence_penalty = 2.5f;
  EXPECT_THAT(message(p), HasSubstr("presence_penalty must be in [-2, 2]"));
  p = SamplingParams();
  p.frequency_penalty = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(message(p), HasSubstr("frequency_penalty"));
  for (float r : {0.0f, -1.0f, std::numeric_limits<float>::infinity()}) {
    p = SamplingParams();
    p.repetition_penalty = r;
    EXPECT_THAT(message(p), HasSubstr("repetition_penalty must be finite and > 0")) << r;
  }
  p = SamplingParams();
  p.min_tokens = -1;
  EXPECT_THAT(message(p), HasSubstr("min_tokens must be >= 0"));
  p = SamplingParams();
  p.logit_bias = {{3, 100.5f}};
  EXPECT_THAT(message(p), HasSubstr("logit_bias: the bias of token 3 must be in [-100, 100]"));
  p.logit_bias = {{-1, 1.0f}};
  EXPECT_THAT(message(p), HasSubstr("logit_bias: token id -1"));
  p.logit_bias = {{4, 1.0f}, {4, 2.0f}};
  EXPECT_THAT(message(p), HasSubstr("token 4 appears more than once"));
  p.logit_bias.clear();
  for (int t = 0; t <= kMaxLogitBiasEntries; ++t) p.logit_bias.emplace_back(t, 0.0f);
  EXPECT_THAT(message(p), HasSubstr("at most 1024 entries"));
  p.logit_bias.pop_back();
  EXPECT_TRUE(ValidateSamplingParams(p).ok());
}

// The host sampler draws from the adjusted row and reports the model's logprobs.
TEST(LogitAdjustmentsTest, HostSamplingDrawsFromTheAdjustedRowAndReportsTheModelsLogprobs) {
  const std::vector<float> row = {3.0f, 1.0f, 2.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 2.0f;
  const TokenHistory history = History({}, {0});  // Token 0: 3 − 2 = 1 < 2.
  Rng rng(1);
  RowSampling r;
  r.params = &p;
  r.rng = &rng;
  r.history = &history;
  r.top_logprobs = 2;
  RowSample out;
  SampleHostRow(row, r, out);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.token, 2);
  const std::vector<float> lp = LogSoftmax(row);
  EXPECT_EQ(out.logprobs.logprob, lp[2]);
  ASSERT_EQ(out.logprobs.top.size(), 2u);
  EXPECT_EQ(out.logprobs.top[0].token_id, 0);  // The model's favourite, unpenalized.
  // Without the history the row cannot be adjusted: a per-row error, not a guess.
  r.history = nullptr;
  RowSample refused;
  SampleHostRow(row, r, refused);
  EXPECT_THAT(refused.status.message(), HasSubstr("need the history"));
}

}  // namespace
}  // namespace mla
