#include "engine/runner/memory_plan.h"

#include <cstdint>
#include <string>

#include "engine/backend/backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/cuda_host/deepseek_shapes.h"

namespace mla {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kH200Total = 139 * kGiB + kGiB / 2;  // what cudaMemGetInfo reports, about
constexpr int kBlockSize = 64;                         // kMlaBlockSize

TEST(MemoryPlanTest, ParamCountsMatchThePublishedSizes) {
  // DeepSeek-V2-Lite: 15.7B parameters; V3: 671B (without the multi-token-prediction layer).
  EXPECT_NEAR(static_cast<double>(CountModelParams(testing::V2LiteShape())), 15.7e9, 0.1e9);
  EXPECT_NEAR(static_cast<double>(CountModelParams(testing::V3Shape())), 671e9, 2e9);
  EXPECT_NEAR(static_cast<double>(CountModelParams(testing::V2Shape())), 236e9, 1e9);
}

// DeepSeek-V3.2's indexer adds its activations per token and the device's score scratch.
TEST(MemoryPlanTest, V32WorkspaceCountsTheIndexer) {
  ModelConfig v32 = testing::V3Shape();
  v32.index_n_heads = 64;
  v32.index_head_dim = 128;
  v32.index_topk = 2048;
  ASSERT_TRUE(v32.has_indexer());
  for (const int64_t tokens : {1, 8192}) {
    absl::StatusOr<int64_t> dense = EstimateWorkspaceBytes(testing::V3Shape(), {tokens, 64, 132});
    absl::StatusOr<int64_t> sparse = EstimateWorkspaceBytes(v32, {tokens, 64, 132});
    ASSERT_TRUE(dense.ok() && sparse.ok());
    const int64_t per_token = 2 * (64 * 128 + 64 + 128 + 2 * 2048);
    EXPECT_EQ(*sparse - *dense, kMaxIndexerScoreBytes + kMaxSparsePrefillBytes + tokens * per_token)
        << tokens;
  }
}

TEST(MemoryPlanTest, V2LiteBf16LeavesRoomForTheCache) {
  const ModelConfig c = testing::V2LiteShape();
  const int64_t weights = EstimateWeightBytes(c, WeightFormat::kBf16);
  EXPECT_NEAR(static_cast<double>(weights), 31.4e9, 0.2e9);
  absl::StatusOr<int64_t> workspace = EstimateWorkspaceBytes(c, {8192, 256, 132});
  ASSERT_TRUE(workspace.ok()) << workspace.status();
  EXPECT_GT(*workspace, 8192 * 2 * c.hidden_size);
  EXPECT_LT(*workspace, 4 * kGiB);
  // One row's activations are ~1 MB; the decompressed prefill's key chunk comes on top.
  absl::StatusOr<int64_t> one_row = EstimateWorkspaceBytes(c, {1, 1, 1});
  ASSERT_TRUE(one_row.ok()) << one_row.status();
  EXPECT_GT(*one_row, kMaxDecompressedChunkBytes);
  EXPECT_LT(*one_row, kMaxDecompressedChunkBytes + 2'000'000);
  const int64_t block_bytes = LatentCacheBlockBytes(c, kBlockSize);
  EXPECT_EQ(block_bytes, int64_t{27} * 64 * 576 * 2);
  // The fp8 layout: 656 bytes per row, 1.76x the blocks in the same budget.
  EXPECT_EQ(LatentCacheBlockBytes(c, kBlockSize, CacheDType::kFp8E4M3), int64_t{27} * 64 * 656);
  MemoryPlanInput in;
  in.total_bytes = kH200Total;
  in.free_bytes = kH200Total - kGiB / 2;  // the CUDA context
  in.weight_bytes = weights;
  in.workspace_bytes = *workspace;
  in.memory_fraction = 0.9;
  in.bytes_per_block = block_bytes;
  absl::StatusOr<MemoryPlan> plan = PlanDeviceMemory(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int64_t allowed = static_cast<int64_t>(0.9 * static_cast<double>(kH200Total));
  EXPECT_EQ(plan->budget_bytes, allowed - kGiB / 2 - weights - *workspace);
  EXPECT_EQ(plan->num_blocks, plan->budget_bytes / block_bytes);
  EXPECT_EQ(plan->cache_bytes + plan->unused_bytes, plan->budget_bytes);
  EXPECT_LT(plan->unused_bytes, block_bytes);
  // About 90 GiB of cache: some 3 million tokens of latent cache across all layers.
  EXPECT_GT(plan->cache_bytes, 85 * kGiB);
  EXPECT_GT(plan->num_blocks * kBlockSize, 2'500'000);
}

TEST(MemoryPlanTest, V3Fp8WeightsDoNotFitOneH200) {
  const ModelConfig c = testing::V3Shape();
  const int64_t weights = EstimateWeightBytes(c, WeightFormat::kFp8);
  EXPECT_GT(weights, 650e9);
  EXPECT_LT(weights, EstimateWeightBytes(c, WeightFormat::kBf16));
  MemoryPlanInput in;
  in.total_bytes = kH200Total;
  in.free_bytes = kH200Total;
  in.weight_bytes = weights;
  in.bytes_per_block = LatentCacheBlockBytes(c, kBlockSize);
  absl::StatusOr<MemoryPlan> plan = PlanDeviceMemory(in);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("weights do not fit"));
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("139.50 GiB total"));
}

TEST(MemoryPlanTest, WorkspaceOrMinBlocksTooLarge) {
  MemoryPlanInput in;
  in.total_bytes = 10 * kGiB;
  in.free_bytes = 10 * kGiB;
  in.weight_bytes = 6 * kGiB;
  in.workspace_bytes = 4 * kGiB;  // 9 GiB allowed
  in.bytes_per_block = 1 << 20;
  absl::StatusOr<MemoryPlan> plan = PlanDeviceMemory(in);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("workspace 4.00 GiB"));
  in.workspace_bytes = 3 * kGiB - (1 << 19);  // half a block left
  plan = PlanDeviceMemory(in);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("gets 0 blocks"));
  in.min_blocks = 0;
  plan = PlanDeviceMemory(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_blocks, 0);
  // Memory used by another process counts against the fraction.
  in.workspace_bytes = 0;
  in.free_bytes = 8 * kGiB;
  plan = PlanDeviceMemory(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->budget_bytes, 9 * kGiB - 2 * kGiB - 6 * kGiB);
}

TEST(MemoryPlanTest, RejectsInconsistentInput) {
  MemoryPlanInput in;
  in.total_bytes = kGiB;
  in.free_bytes = 2 * kGiB;
  in.bytes_per_block = 1;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), absl::StatusCode::kInvalidArgument);
  in.free_bytes = kGiB;
  in.memory_fraction = 0.0;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), absl::StatusCode::kInvalidArgument);
  in.memory_fraction = 1.5;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), absl::StatusCode::kInvalidArgument);
  in.memory_fraction = 1.0;
  in.bytes_per_block = 0;
  EXPECT_EQ(PlanDeviceMemory(in).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EstimateWorkspaceBytes(testing::V3Shape(), {0, 1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mla
