#include "engine/model/rope.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/backend/cpu/pointwise.h"

namespace mla {
namespace {

ModelConfig V2LiteRope() {
  ModelConfig c;
  c.qk_rope_head_dim = 64;
  c.qk_nope_head_dim = 128;
  c.rope_theta = 10000;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.rope_scaling.beta_fast = 32;
  c.rope_scaling.beta_slow = 1;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  return c;
}

TEST(RopeTest, YarnConstantsForV2Lite) {
  // REFERENCE.md: for V2-Lite low = 10, high = 23, softmax scale 0.11472139.
  ModelConfig c = V2LiteRope();
  Rope rope(c);
  EXPECT_EQ(rope.low(), 10.0);
  EXPECT_EQ(rope.high(), 23.0);
  EXPECT_FLOAT_EQ(rope.attention_factor(), 1.0f);  // mscale == mscale_all_dim
  EXPECT_NEAR(SoftmaxScale(c), 0.11472139, 5e-8);
  // Pairs below `low` keep their frequency; above `high` they are divided by the factor.
  EXPECT_FLOAT_EQ(rope.inv_freq()[0], 1.0f);
  EXPECT_NEAR(rope.inv_freq()[5], std::pow(10000.0, -10.0 / 64), 1e-7);
  EXPECT_NEAR(rope.inv_freq()[31], std::pow(10000.0, -62.0 / 64) / 40.0, 1e-9);
  // Inside the ramp: i = 16 is (16 - 10) / 13 of the way to interpolation.
  const double ramp = 6.0 / 13.0, base = std::pow(10000.0, -32.0 / 64);
  EXPECT_NEAR(rope.inv_freq()[16], base * ((1 - ramp) + ramp / 40.0), 1e-8);
}

TEST(RopeTest, PlainRopeWithoutScaling) {
  ModelConfig c = V2LiteRope();
  c.rope_scaling = RopeScaling();
  Rope rope(c);
  EXPECT_EQ(rope.low(), 0.0);
  for (int i = 0; i < 32; ++i) {
    EXPECT_NEAR(rope.inv_freq()[i], std::pow(10000.0, -2.0 * i / 64), 1e-6 * rope.inv_freq()[i]);
  }
}

TEST(RopeTest, AttentionFactorWhenMscalesDiffer) {
  ModelConfig c = V2LiteRope();
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 0.0;
  Rope rope(c);
  EXPECT_NEAR(rope.attention_factor(), 0.1 * std::log(40.0) + 1.0, 1e-6);
}

TEST(RopeTest, RotatesInterleavedPairs) {
  ModelConfig c = V2LiteRope();
  c.qk_rope_head_dim = 4;
  c.rope_scaling = RopeScaling();
  Rope rope(c);
  std::vector<float> cos(2), sin(2);
  rope.Angles(3, cos.data(), sin.data());
  EXPECT_NEAR(cos[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(sin[1], std::sin(3.0 * 0.01), 1e-6);  // 10000^(-2/4) = 0.01
  // Two vectors 6 floats apart: (x0, x1) and (x2, x3) rotate as complex pairs.
  std::vector<float> x = {1, 0, 0, 1, 9, 9, 2, 3, 4, 5};
  RotateInterleaved(cos.data(), sin.data(), rope.dim() / 2, x.data(), 2, 6);
  EXPECT_NEAR(x[0], cos[0], 1e-6);
  EXPECT_NEAR(x[1], sin[0], 1e-6);
  EXPECT_NEAR(x[2], -sin[1], 1e-6);
  EXPECT_NEAR(x[3], cos[1], 1e-6);
  EXPECT_EQ(x[4], 9);  // Untouched gap.
  EXPECT_NEAR(x[6], 2 * cos[0] - 3 * sin[0], 1e-5);
  EXPECT_NEAR(x[7], 2 * sin[0] + 3 * cos[0], 1e-5);
  // Position 0 is the identity.
  rope.Angles(0, cos.data(), sin.data());
  std::vector<float> y = {0.5f, -2.0f, 3.0f, 4.0f};
  RotateInterleaved(cos.data(), sin.data(), rope.dim() / 2, y.data(), 1, 4);
  EXPECT_FLOAT_EQ(y[1], -2.0f);
  EXPECT_FLOAT_EQ(y[2], 3.0f);
}

}  // namespace
}  // namespace mla
