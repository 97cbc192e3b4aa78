#include "engine/backend/cpu/pointwise.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/model/moe_config.h"

namespace mla {
namespace {

TEST(CpuPointwiseTest, RmsNormMatchesFormula) {
  std::vector<float> x = {1, 2, 3, 4, -1, -1, -1, -1};
  std::vector<float> w = {1, 0.5f, 2, 1};
  std::vector<float> out(8);
  RmsNorm(x.data(), 4, 2, 4, w.data(), 1e-6f, out.data(), 4);
  const float inv = 1.0f / std::sqrt(7.5f + 1e-6f);
  EXPECT_NEAR(out[0], 1 * inv, 1e-6);
  EXPECT_NEAR(out[1], 0.5f * 2 * inv, 1e-6);
  EXPECT_NEAR(out[2], 2 * 3 * inv, 1e-6);
  EXPECT_NEAR(out[4], -1.0f / std::sqrt(1.0f + 1e-6f), 1e-6);
}

TEST(CpuPointwiseTest, SiluMul) {
  std::vector<float> g = {0.0f, 1.0f, -2.0f}, u = {5.0f, 2.0f, 1.0f}, out(3);
  SiluMul(g.data(), u.data(), 1, 3, 3, out.data());
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 2.0f / (1 + std::exp(-1.0f)), 1e-6);
  EXPECT_NEAR(out[2], -2.0f / (1 + std::exp(2.0f)), 1e-6);
}

ModelConfig MoeConfig() {
  ModelConfig c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.routed_scaling_factor = 2.0;
  return c;
}

TEST(CpuPointwiseTest, SoftmaxGreedyScalesUnnormalizedWeights) {
  ModelConfig c = MoeConfig();
  std::vector<float> logits = {0, 1, 5, 2, 0, 4, 0, 0};
  ExpertChoice e = RouteToken(logits.data(), MoeRoutingFromConfig(c), {});
  ASSERT_EQ(e.experts, (std::vector<int>{2, 5}));
  double sum = 0;
  for (float l : logits) sum += std::exp(l - 5.0);
  EXPECT_NEAR(e.weights[0], 2.0 * 1.0 / sum, 1e-6);
  EXPECT_NEAR(e.weights[1], 2.0 * std::exp(-1.0) / sum, 1e-6);
  // norm_topk_prob (V2 path): normalized, not scaled.
  c.norm_topk_prob = true;
  e = RouteToken(logits.data(), MoeRoutingFromConfig(c), {});
  EXPECT_NEAR(e.weights[0] + e.weights[1], 1.0, 1e-6);
}

TEST(CpuPointwiseTest, GroupLimitedGreedyKeepsBestGroups) {
  ModelConfig c = MoeConfig();
  c.topk_method = TopkMethod::kGroupLimitedGreedy;
  c.n_group = 4;
  c.topk_group = 1;
  // Group maxima: g0 = 3, g1 = 9, g2 = 1, g3 = 8. Only group 1 (experts 2, 3) stays.
  std::vector<float> logits = {3, 0, 9, -5, 1, 0, 8, 7};
  ExpertChoice e = RouteToken(logits.data(), MoeRoutingFromConfig(c), {});
  EXPECT_EQ(e.experts, (std::vector<int>{2, 3}));
}

TEST(CpuPointwiseTest, NoauxTcUsesBiasForChoiceButNotWeights) {
  ModelConfig c = MoeConfig();
  c.scoring_func = ScoringFunc::kSigmoid;
  c.topk_method = TopkMethod::kNoauxTc;
  c.n_group = 4;
  c.topk_group = 2;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  std::vector<float> logits = {0, 0, 0, 0, 0, 0, 0, 0};
  // Bias decides: group sums of top-2 → g1 (0.3 + 0.2) and g3 (0.4 + 0.0) win over g0.
  std::vector<float> bias = {0.1f, 0.1f, 0.3f, 0.2f, 0, 0, 0.4f, 0};
  ExpertChoice e = RouteToken(logits.data(), MoeRoutingFromConfig(c), bias);
  EXPECT_EQ(e.experts, (std::vector<int>{6, 2}));
  // Weights come from the unbiased sigmoid (0.5 each), normalized then scaled.
  EXPECT_NEAR(e.weights[0], 1.25, 1e-6);
  EXPECT_NEAR(e.weights[1], 1.25, 1e-6);
}

}  // namespace
}  // namespace mla
