// MoE routing on the device against the CPU router (RouteToken) for the V2-Lite, V2 and V3
// policies, the permute / unpermute round trip with a host plan, and the grouped expert
// GEMM against a naive product.
#include "engine/backend/cuda/kernels/moe_routing.h"
#include "engine/model/moe_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/backend/cuda/host/moe_plan.h"
#include "engine/backend/cuda/kernels/grouped_gemm.h"
#include "engine/backend/cpu/pointwise.h"
#include "tests/engine/cuda_host/deepseek_shapes.h"
#include "tests/gpu/cuda_test_util.h"

namespace mla::cuda {
namespace {

using testing::Bf16Close;
using testing::Download;
using testing::Upload;

std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// The value an expert is chosen by on the CPU: its score (+ bias), before group masking.
float ChoiceValue(const float* logits, const ModelConfig& config, const std::vector<float>& bias,
                  int expert) {
  const int n = config.n_routed_experts;
  float score;
  if (config.scoring_func == ScoringFunc::kSigmoid) {
    score = 1.0f / (1.0f + std::exp(-logits[expert]));
  } else {
    const float max = *std::max_element(logits, logits + n);
    double sum = 0.0;
    for (int e = 0; e < n; ++e) sum += std::exp(logits[e] - max);
    score = static_cast<float>(std::exp(logits[expert] - max) / sum);
  }
  return bias.empty() ? score : score + bias[expert];
}

// Routes `tokens` random logit rows on the device and compares with RouteToken. expf on the
// device may differ from the host's by an ulp, so two experts (or groups) whose values are
// that close may swap; such a token is accepted once the swapped values are shown to be
// within 1e-6 of each other, and the rest of its choices are then not compared.
void ExpectRoutingMatchesCpu(const ModelConfig& config, int64_t tokens, uint32_t seed) {
  const int experts = config.n_routed_experts;
  const int k = config.num_experts_per_tok;
  const int64_t stride = experts + 3;  // a slice of a wider logits buffer
  const std::vector<float> logits = RandomFloats(tokens * stride, seed, 2.0f);
  std::vector<float> bias;
  if (::mla::MoeRoutingFromConfig(config).use_bias) bias = RandomFloats(experts, seed + 1, 0.1f);
  DeviceBuffer dlogits = Upload(logits);
  DeviceBuffer dbias = Upload(bias);
  DeviceBuffer dids = Upload(std::vector<int32_t>(tokens * k, -1));
  DeviceBuffer dweights = Upload(std::vector<float>(tokens * k, NAN));
  MoeRoutingParams p = MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(config));
  p.num_tokens = tokens;
  p.logits = dlogits.as<float>();
  p.logits_stride = stride;
  p.bias = bias.empty() ? nullptr : dbias.as<float>();
  p.expert_ids = dids.as<int32_t>();
  p.weights = dweights.as<float>();
  MLA_ASSERT_OK(LaunchMoeRouting(p, nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  const std::vector<int32_t> ids = Download<int32_t>(dids);
  const std::vector<float> weights = Download<float>(dweights);
  int near_ties = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = logits.data() + t * stride;
    const ExpertChoice want = RouteToken(row, ::mla::MoeRoutingFromConfig(config), bias);
    for (int j = 0; j < k; ++j) {
      const int got = ids[t * k + j];
      if (got != want.experts[j]) {
        ASSERT_TRUE(got >= 0 && got < experts) << "token " << t << " choice " << j;
        ASSERT_NEAR(ChoiceValue(row, config, bias, got),
                    ChoiceValue(row, config, bias, want.experts[j]), 1e-6f)
            << "token " << t << " choice " << j << ": " << got << " vs " << want.experts[j];
        ++near_ties;
        break;
      }
      ASSERT_NEAR(weights[t * k + j], want.weights[j], 1e-5f * std::fabs(want.weights[j]) + 1e-7f)
          << "token " << t << " choice " << j;
    }
  }
  EXPECT_LE(near_ties, tokens / 100 + 1);
}

TEST(MoeRoutingCudaTest, V2LiteGreedySoftmax) {
  MLA_SKIP_WITHOUT_CUDA();
  ExpectRoutingMatchesCpu(::mla::testing::V2LiteShape(), 300, 1);
}

TEST(MoeRoutingCudaTest, V2GroupLimitedSoftmax) {
  MLA_SKIP_WITHOUT_CUDA();
  ExpectRoutingMatchesCpu(::mla::testing::V2Shape(), 300, 2);
  ModelConfig normalized = ::mla::testing::V2Shape();
  normalized.norm_topk_prob = true;
  ExpectRoutingMatchesCpu(normalized, 17, 3);
}

TEST(MoeRoutingCudaTest, V3NoauxSigmoidWithBias) {
  MLA_SKIP_WITHOUT_CUDA();
  ExpectRoutingMatchesCpu(::mla::testing::V3Shape(), 300, 4);
  ExpectRoutingMatchesCpu(::mla::testing::V3Shape(), 1, 5);
}

// Routes on the device, plans on the device and compares with the host plan of the same
// expert ids (V3: 256 experts, top 8; token counts around the warp width).
TEST(MoeRoutingCudaTest, DevicePlanMatchesHostPlan) {
  MLA_SKIP_WITHOUT_CUDA();
  const ModelConfig config = ::mla::testing::V3Shape();
  const int experts = config.n_routed_experts;
  const int k = config.num_experts_per_tok;
  for (int64_t tokens : {0, 1, 3, 33, 500}) {
    const std::vector<float> logits = RandomFloats(std::max<int64_t>(tokens, 1) * experts,
                                                   static_cast<uint32_t>(tokens + 20), 2.0f);
    DeviceBuffer dlogits = Upload(logits);
    const size_t pairs = static_cast<size_t>(std::max<int64_t>(tokens * k, 1));
    DeviceBuffer dids = Upload(std::vector<int32_t>(pairs, -1));
    DeviceBuffer dweights = Upload(std::vector<float>(pairs, 0.0f));
    MoeRoutingParams route = MoeRoutingFromPolicy(::mla::MoeRoutingFromConfig(config));
    route.num_tokens = tokens;
    route.logits = dlogits.as<float>();
    route.logits_stride = experts;
    route.expert_ids = dids.as<int32_t>();
    route.weights = dweights.as<float>();
    MLA_ASSERT_OK(LaunchMoeRouting(route, nullptr));
    DeviceBuffer dcounts = Upload(std::vector<int32_t>(experts, -1));
    DeviceBuffer doffsets = Upload(std::vector<int32_t>(experts + 1, -1));
    DeviceBuffer dsorted = Upload(std::vector<int32_t>(pairs, -1));
    DeviceBuffer drows = Upload(std::vector<int32_t>(pairs, -1));
    DeviceBuffer dinvalid = Upload(std::vector<int32_t>{-1});
    MLA_ASSERT_OK(LaunchMoePlan(
        {tokens, k, experts, dids.as<int32_t>(), dcounts.as<int32_t>(), doffsets.as<int32_t>(),
         dsorted.as<int32_t>(), drows.as<int32_t>(), dinvalid.as<int32_t>()},
        nullptr));
    MLA_ASSERT_OK(DeviceSynchronize());
    std::vector<int32_t> ids = Download<int32_t>(dids);
    ids.resize(tokens * k);
    MoePlan want;
    MLA_ASSERT_OK(PlanMoePermutation(ids, tokens, k, experts, &want));
    EXPECT_EQ(Download<int32_t>(dinvalid), std::vector<int32_t>{0});
    EXPECT_EQ(Download<int32_t>(dcounts), want.counts) << tokens << " tokens";
    EXPECT_EQ(Download<int32_t>(doffsets), want.offsets) << tokens << " tokens";
    std::vector<int32_t> sorted = Download<int32_t>(dsorted);
    std::vector<int32_t> rows = Download<int32_t>(drows);
    sorted.resize(tokens * k);
    rows.resize(tokens * k);
    EXPECT_EQ(sorted, want.sorted_pairs) << tokens << " tokens";
    EXPECT_EQ(rows, want.pair_rows) << tokens << " tokens";
  }
}

TEST(MoeRoutingCudaTest, PermuteUnpermuteRoundTrip) {
  MLA_SKIP_WITHOUT_CUDA();
  const int64_t tokens = 29;
  const int k = 6;
  const int experts = 64;
  const int hidden = 100;
  std::mt19937 rng(9);
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> all(experts);
    for (int e = 0; e < experts; ++e) all[e] = e;
    std::shuffle(all.begin(), all.end(), rng);
    ids.insert(ids.end(), all.begin(), all.begin() + k);
  }
  MoePlan plan;
  MLA_ASSERT_OK(PlanMoePermutation(ids, tokens, k, experts, &plan));
  std::vector<bf16_t> x(tokens * hidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = FloatToBf16(static_cast<float>(i % 97) - 48.0f);
  const std::vector<float> weights = RandomFloats(tokens * k, 10, 1.0f);
  std::vector<bf16_t> shared(tokens * hidden);
  for (size_t i = 0; i < shared.size(); ++i) shared[i] = FloatToBf16(0.25f * (i % 5));
  DeviceBuffer dx = Upload(x);
  DeviceBuffer dsorted = Upload(plan.sorted_pairs);
  DeviceBuffer drows = Upload(plan.pair_rows);
  DeviceBuffer dweights = Upload(weights);
  DeviceBuffer dperm = Upload(std::vector<bf16_t>(plan.num_rows() * hidden, 0xffff));
  MLA_ASSERT_OK(LaunchMoePermute({plan.num_rows(), tokens, k, hidden, dx.as<bf16_t>(), hidden,
                                  dsorted.as<int32_t>(), dperm.as<bf16_t>()},
                                 nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  const std::vector<bf16_t> perm = Download<bf16_t>(dperm);
  for (int64_t r = 0; r < plan.num_rows(); ++r) {
    for (int i = 0; i < hidden; ++i) {
      ASSERT_EQ(perm[r * hidden + i], x[plan.TokenOfRow(r) * hidden + i]) << "row " << r;
    }
  }
  // Each expert scales its rows by its own factor (exact in bf16 for these inputs), so the
  // combine must fetch every pair's own row: out = shared + Σ_j w_j · scale(e_j) · x.
  auto scale = [](int32_t expert) { return 1.0f + 0.5f * static_cast<float>(expert % 4); };
  std::vector<bf16_t> expert_out(perm.size());
  for (int64_t r = 0; r < plan.num_rows(); ++r) {
    const float f = scale(ids[plan.sorted_pairs[r]]);
    for (int i = 0; i < hidden; ++i) {
      expert_out[r * hidden + i] = FloatToBf16(f * Bf16ToFloat(perm[r * hidden + i]));
    }
  }
  DeviceBuffer dexpert = Upload(expert_out);
  DeviceBuffer dout = Upload(shared);  // out aliases the shared experts' output
  MLA_ASSERT_OK(LaunchMoeUnpermute({tokens, k, hidden, dexpert.as<bf16_t>(), drows.as<int32_t>(),
                                    dweights.as<float>(), dout.as<bf16_t>(), dout.as<bf16_t>()},
                                   nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  const std::vector<bf16_t> out = Download<bf16_t>(dout);
  for (int64_t t = 0; t < tokens; ++t) {
    float factor = 0.0f;
    for (int j = 0; j < k; ++j) factor += weights[t * k + j] * scale(ids[t * k + j]);
    for (int i = 0; i < hidden; ++i) {
      const float want =
          Bf16ToFloat(shared[t * hidden + i]) + factor * Bf16ToFloat(x[t * hidden + i]);
      ASSERT_TRUE(Bf16Close(out[t * hidden + i], want, 1e-3f))
          << "token " << t << " i " << i << ": " << Bf16ToFloat(out[t * hidden + i]) << " vs "
          << want;
    }
  }
}

// The grouped expert GEMM on skewed routings (empty experts, one row, 8-row passes with
// tails, one expert holding most rows) at tiny-model and V2-Lite widths, bf16 and fp32
// weights, against a double-precision product; NaN in the padding of x, y and the weights
// and in a spare row of x and y must stay out of the results and stay unwritten.
TEST(GroupedGemmCudaTest, MatchesNaiveProduct) {
  MLA_SKIP_WITHOUT_CUDA();
  struct Case {
    std::vector<int32_t> counts;
    int64_t n, k;
    bool bf16;
    bool paired = false;  // even strides: bf16 weights with an even k take the paired walk
  };
  std::vector<Case> cases = {{{0, 8, 0, 9, 17, 1}, 24, 64, true},
                             {{3, 0, 40, 1}, 17, 33, false},
                             {{1}, 1, 1, true},
                             {{0, 8, 0, 9, 17, 1}, 24, 66, true, true},
                             {{3, 0, 40, 1}, 17, 130, true, true}};
  // V2-Lite's gate/up (1408 × 2048) for a decode batch of 16 at top-6 over 64 experts,
  // both walks.
  Case v2_lite{std::vector<int32_t>(64, 0), 1408, 2048, true};
  std::mt19937 pick(5);
  for (int pair = 0; pair < 16 * 6; ++pair) ++v2_lite.counts[pick() % 64];
  cases.push_back(v2_lite);
  v2_lite.paired = true;
  cases.push_back(v2_lite);
  const float nan = std::nanf("");
  for (const Case& c : cases) {
    const int experts = static_cast<int>(c.counts.size());
    std::vector<int32_t> offsets = {0};
    for (int32_t n : c.counts) offsets.push_back(offsets.back() + n);
    const int64_t rows = offsets.back(), x_stride = c.k + (c.paired ? 2 : 3), y_stride = c.n + 2;
    const int64_t w_stride = c.k + (c.paired ? 4 : 5);
    std::vector<float> x = RandomFloats((rows + 1) * x_stride, 11, 1.0f);
    for (int64_t r = 0; r <= rows; ++r) {
      for (int64_t i = 0; i < x_stride; ++i) {
        if (r == rows || i >= c.k) x[r * x_stride + i] = nan;
      }
    }
    std::vector<float> w_f32 = RandomFloats(experts * (c.n + 1) * w_stride, 12, 0.05f);
    std::vector<bf16_t> w_bf16(w_f32.size());
    for (size_t i = 0; i < w_f32.size(); ++i) {
      const int64_t in_expert = static_cast<int64_t>(i) % ((c.n + 1) * w_stride);
      if (in_expert / w_stride == c.n || in_expert % w_stride >= c.k) w_f32[i] = nan;
      w_bf16[i] = FloatToBf16(w_f32[i]);
      if (c.bf16) w_f32[i] = Bf16ToFloat(w_bf16[i]);
    }
    DeviceBuffer dx = Upload(x), doffsets = Upload(offsets), dw_f32 = Upload(w_f32),
                 dw_bf16 = Upload(w_bf16);
    DeviceBuffer dy = Upload(std::vector<float>((rows + 1) * y_stride, nan));
    std::vector<GroupedWeight> table(experts);
    for (int e = 0; e < experts; ++e) {
      const int64_t at = e * (c.n + 1) * w_stride;
      table[e].stride = w_stride;
      if (c.bf16) {
        table[e].bf16 = dw_bf16.as<bf16_t>() + at;
      } else {
        table[e].f32 = dw_f32.as<float>() + at;
      }
    }
    DeviceBuffer dtable = Upload(table);
    GroupedGemmParams p;
    p.num_experts = experts;
    p.rows = rows;
    p.n = c.n;
    p.k = c.k;
    p.x = dx.as<float>();
    p.x_stride = x_stride;
    p.offsets = doffsets.as<int32_t>();
    p.weights = dtable.as<GroupedWeight>();
    p.y = dy.as<float>();
    p.y_stride = y_stride;
    MLA_ASSERT_OK(LaunchGroupedGemm(p, nullptr));
    MLA_ASSERT_OK(DeviceSynchronize());
    const std::vector<float> y = Download<float>(dy);
    for (int e = 0; e < experts; ++e) {
      for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
        for (int64_t j = 0; j < c.n; ++j) {
          double want = 0.0;
          for (int64_t i = 0; i < c.k; ++i) {
            want += static_cast<double>(x[r * x_stride + i]) *
                    w_f32[e * (c.n + 1) * w_stride + j * w_stride + i];
          }
          ASSERT_NEAR(y[r * y_stride + j], want, 1e-5 * std::sqrt(static_cast<double>(c.k)) + 1e-6)
              << "n " << c.n << " k " << c.k << " expert " << e << " row " << r << " col " << j;
        }
      }
    }
    for (int64_t r = 0; r <= rows; ++r) {
      for (int64_t j = 0; j < y_stride; ++j) {
        if (r < rows && j < c.n) continue;
        ASSERT_TRUE(std::isnan(y[r * y_stride + j])) << "stored outside: row " << r << " col " << j;
      }
    }
  }
}

}  // namespace
}  // namespace mla::cuda
