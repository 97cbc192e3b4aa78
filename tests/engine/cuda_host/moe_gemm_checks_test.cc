// Host-side checks of the MoE routing kernels and GemmLt, and the routing policy derived
// from the model configs.
#include <cstdint>
#include <vector>

#include "engine/backend/cuda/gemm_lt.h"
#include "engine/backend/cuda/kernels/moe_routing.h"
#include "engine/model/moe_config.h"
#include "gtest/gtest.h"
#include "tests/engine/cuda_host/deepseek_shapes.h"

namespace mla::cuda {
namespace {

TEST(MoeRoutingPolicyTest, FollowsTheCpuRouter) {
  const MoeRoutingParams lite = MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(::mla::testing::V2LiteShape()));
  EXPECT_EQ(lite.num_experts, 64);
  EXPECT_EQ(lite.top_k, 6);
  EXPECT_FALSE(lite.sigmoid);
  EXPECT_EQ(lite.group_score, MoeGroupScore::kNone);
  EXPECT_EQ(lite.n_group, 1);
  EXPECT_FALSE(lite.normalize);
  EXPECT_EQ(lite.scaling, 1.0f);

  const MoeRoutingParams v2 = MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(::mla::testing::V2Shape()));
  EXPECT_EQ(v2.group_score, MoeGroupScore::kMax);
  EXPECT_EQ(v2.n_group, 8);
  EXPECT_EQ(v2.topk_group, 3);
  EXPECT_EQ(v2.scaling, 16.0f);  // V2 scales when it does not normalize.
  EXPECT_FALSE(::mla::MoeRoutingFromConfig(::mla::testing::V2Shape()).use_bias);

  const MoeRoutingParams v3 = MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(::mla::testing::V3Shape()));
  EXPECT_TRUE(v3.sigmoid);
  EXPECT_EQ(v3.group_score, MoeGroupScore::kSumTop2);
  EXPECT_EQ(v3.topk_group, 4);
  EXPECT_TRUE(v3.normalize);
  EXPECT_EQ(v3.scaling, 2.5f);  // noaux_tc scales after normalizing.
  EXPECT_TRUE(::mla::MoeRoutingFromConfig(::mla::testing::V3Shape()).use_bias);

  ModelConfig v2_norm = ::mla::testing::V2Shape();
  v2_norm.norm_topk_prob = true;
  EXPECT_EQ(MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(v2_norm)).scaling, 1.0f);
  v2_norm.num_experts_per_tok = 1;  // one expert: nothing to normalize, so V2 scales
  EXPECT_FALSE(MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(v2_norm)).normalize);
  EXPECT_EQ(MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(v2_norm)).scaling, 16.0f);
}

TEST(MoeRoutingChecksTest, RoutingParams) {
  float logits[1] = {};
  int32_t ids[1] = {};
  float weights[1] = {};
  MoeRoutingParams p = MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(::mla::testing::V3Shape()));
  p.num_tokens = 1;
  p.logits = logits;
  p.logits_stride = 256;
  p.expert_ids = ids;
  p.weights = weights;
  EXPECT_TRUE(ValidateMoeRoutingParams(p).ok());
  MoeRoutingParams bad = p;
  bad.logits_stride = 255;
  EXPECT_FALSE(ValidateMoeRoutingParams(bad).ok());
  bad = p;
  bad.n_group = 7;  // does not divide 256
  EXPECT_FALSE(ValidateMoeRoutingParams(bad).ok());
  bad = p;
  bad.topk_group = 9;
  EXPECT_FALSE(ValidateMoeRoutingParams(bad).ok());
  bad = p;
  bad.num_experts = kMoeMaxExperts + 1;
  bad.logits_stride = bad.num_experts;
  EXPECT_FALSE(ValidateMoeRoutingParams(bad).ok());
  bad = p;
  bad.top_k = kMoeMaxTopK + 1;
  EXPECT_FALSE(ValidateMoeRoutingParams(bad).ok());
  bad = p;
  bad.weights = nullptr;
  EXPECT_FALSE(ValidateMoeRoutingParams(bad).ok());
  bad.num_tokens = 0;  // no work, no pointers needed
  EXPECT_TRUE(ValidateMoeRoutingParams(bad).ok());
}

TEST(MoeRoutingChecksTest, PermuteAndUnpermuteParams) {
  bf16_t x[1] = {};
  int32_t rows[1] = {};
  float weights[1] = {};
  MoePermuteParams perm{12, 2, 6, 64, x, 64, rows, x};
  EXPECT_TRUE(ValidateMoePermuteParams(perm).ok());
  perm.num_rows = 11;
  EXPECT_FALSE(ValidateMoePermuteParams(perm).ok());
  perm.num_rows = 12;
  perm.x_stride = 63;
  EXPECT_FALSE(ValidateMoePermuteParams(perm).ok());

  MoeUnpermuteParams un{2, 6, 64, x, rows, weights, nullptr, x};
  EXPECT_TRUE(ValidateMoeUnpermuteParams(un).ok());
  un.pair_rows = nullptr;
  EXPECT_FALSE(ValidateMoeUnpermuteParams(un).ok());
  un.num_tokens = 0;
  EXPECT_TRUE(ValidateMoeUnpermuteParams(un).ok());
}

TEST(MoeRoutingChecksTest, PlanParams) {
  const int32_t ids[1] = {};
  int32_t out[1] = {};
  MoePlanParams p{2, 6, 64, ids, out, out, out, out, nullptr};
  EXPECT_TRUE(ValidateMoePlanParams(p).ok());
  p.pair_rows = nullptr;
  EXPECT_FALSE(ValidateMoePlanParams(p).ok());
  p.num_tokens = 0;  // no pairs, but counts and offsets are still written
  EXPECT_TRUE(ValidateMoePlanParams(p).ok());
  p.counts = nullptr;
  EXPECT_FALSE(ValidateMoePlanParams(p).ok());
  p.counts = out;
  p.top_k = 0;
  EXPECT_FALSE(ValidateMoePlanParams(p).ok());
}

TEST(GemmLtChecksTest, Shapes) {
  alignas(16) bf16_t buffer[8] = {};
  GemmLtParams p;
  p.m = 7;
  p.n = 13;
  p.k = 5;
  p.x = buffer;
  p.ldx = 5;
  p.w = buffer;
  p.ldw = 6;
  p.y = buffer;
  p.ldy = 13;
  EXPECT_TRUE(ValidateGemmLtParams(p).ok());
  GemmLtParams bad = p;
  bad.k = 0;
  EXPECT_FALSE(ValidateGemmLtParams(bad).ok());
  bad = p;
  bad.ldx = 4;
  EXPECT_FALSE(ValidateGemmLtParams(bad).ok());
  bad = p;
  bad.ldy = 12;
  EXPECT_FALSE(ValidateGemmLtParams(bad).ok());
  bad = p;
  bad.n = int64_t{1} << 31;
  bad.ldy = bad.n;
  EXPECT_FALSE(ValidateGemmLtParams(bad).ok());
  bad = p;
  bad.w = nullptr;
  EXPECT_FALSE(ValidateGemmLtParams(bad).ok());
  bad.m = 0;  // empty product
  EXPECT_TRUE(ValidateGemmLtParams(bad).ok());
  bad = p;
  bad.out_type = GemmOutType::kF32;
  bad.y = buffer + 1;  // 2-byte aligned, fp32 output
  EXPECT_FALSE(ValidateGemmLtParams(bad).ok());
  bad.out_type = GemmOutType::kBf16;
  EXPECT_TRUE(ValidateGemmLtParams(bad).ok());
}

}  // namespace
}  // namespace mla::cuda
