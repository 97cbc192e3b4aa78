#include "engine/backend/cuda/host/moe_plan.h"

#include <algorithm>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace mla::cuda {
namespace {

// Every pair sits at exactly one row, inside its expert's range, the two permutations are
// inverse, offsets are the prefix sums of counts and token order holds inside an expert.
void ExpectConsistent(const MoePlan& plan, const std::vector<int32_t>& ids) {
  const int64_t pairs = static_cast<int64_t>(ids.size());
  ASSERT_EQ(plan.num_rows(), pairs);
  ASSERT_EQ(plan.offsets.size(), static_cast<size_t>(plan.num_experts) + 1);
  EXPECT_EQ(plan.offsets.front(), 0);
  EXPECT_EQ(plan.offsets.back(), pairs);
  std::vector<int> seen(pairs, 0);
  for (int e = 0; e < plan.num_experts; ++e) {
    EXPECT_EQ(plan.offsets[e + 1] - plan.offsets[e], plan.counts[e]) << "expert " << e;
    for (int32_t r = plan.offsets[e]; r < plan.offsets[e + 1]; ++r) {
      const int32_t p = plan.sorted_pairs[r];
      ASSERT_GE(p, 0);
      ASSERT_LT(p, pairs);
      ++seen[p];
      EXPECT_EQ(ids[p], e) << "row " << r;
      EXPECT_EQ(plan.pair_rows[p], r);
      EXPECT_EQ(plan.TokenOfRow(r), p / plan.top_k);
      if (r > plan.offsets[e]) {
        EXPECT_LT(plan.sorted_pairs[r - 1], p) << "token order";
      }
    }
  }
  for (int64_t p = 0; p < pairs; ++p) EXPECT_EQ(seen[p], 1) << "pair " << p;
}

TEST(MoePlanTest, RandomRoutingPlacesEveryPairOnce) {
  std::mt19937 rng(7);
  for (const auto& [tokens, top_k, experts] :
       std::vector<std::tuple<int, int, int>>{{37, 6, 64}, {5, 8, 256}, {200, 2, 3}}) {
    std::vector<int32_t> ids;
    for (int t = 0; t < tokens; ++t) {
      // Distinct experts per token, as routing produces.
      std::vector<int32_t> all(experts);
      for (int e = 0; e < experts; ++e) all[e] = e;
      std::shuffle(all.begin(), all.end(), rng);
      ids.insert(ids.end(), all.begin(), all.begin() + top_k);
    }
    MoePlan plan;
    ASSERT_TRUE(PlanMoePermutation(ids, tokens, top_k, experts, &plan).ok());
    ExpectConsistent(plan, ids);
  }
}

TEST(MoePlanTest, EmptyExpertsAndOneToken) {
  const std::vector<int32_t> ids = {5, 1, 3};
  MoePlan plan;
  ASSERT_TRUE(PlanMoePermutation(ids, 1, 3, 8, &plan).ok());
  ExpectConsistent(plan, ids);
  EXPECT_EQ(plan.counts, (std::vector<int32_t>{0, 1, 0, 1, 0, 1, 0, 0}));
  EXPECT_EQ(plan.offsets, (std::vector<int32_t>{0, 0, 1, 1, 2, 2, 3, 3, 3}));
  EXPECT_EQ(plan.sorted_pairs, (std::vector<int32_t>{1, 2, 0}));
  EXPECT_EQ(plan.pair_rows, (std::vector<int32_t>{2, 0, 1}));
}

TEST(MoePlanTest, ZeroTokensAndReuse) {
  MoePlan plan;
  ASSERT_TRUE(PlanMoePermutation(std::vector<int32_t>{0, 1, 1, 0}, 2, 2, 2, &plan).ok());
  ASSERT_TRUE(PlanMoePermutation({}, 0, 2, 4, &plan).ok());
  EXPECT_EQ(plan.num_rows(), 0);
  EXPECT_EQ(plan.offsets, (std::vector<int32_t>{0, 0, 0, 0, 0}));
  EXPECT_TRUE(plan.pair_rows.empty());
}

TEST(MoePlanTest, RejectsBadInput) {
  MoePlan plan;
  const std::vector<int32_t> ids = {0, 4};
  EXPECT_EQ(PlanMoePermutation(ids, 1, 2, 4, &plan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMoePermutation(ids, 2, 2, 8, &plan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMoePermutation(std::vector<int32_t>{-1}, 1, 1, 4, &plan).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMoePermutation(ids, 2, 0, 8, &plan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMoePermutation(ids, int64_t{1} << 31, 1, 8, &plan).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mla::cuda
