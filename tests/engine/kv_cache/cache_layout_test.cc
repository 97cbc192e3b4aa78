#include "engine/kv_cache/cache_layout.h"

#include <gtest/gtest.h>

#include "engine/kv_cache/latent_cache.h"

namespace mla {
namespace {

CacheLayoutConfig V3Config(CacheDType dtype = CacheDType::kBF16) {
  return CacheLayoutConfig{
      .dtype = dtype, .latent_dim = 512, .rope_dim = 64, .block_size = 64, .num_layers = 61};
}

TEST(CacheLayoutTest, DeepSeekV3Bf16Sizes) {
  absl::StatusOr<CacheLayout> layout = CacheLayout::Create(V3Config());
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->bytes_per_token_per_layer(), 576 * 2);
  EXPECT_EQ(layout->bytes_per_token(), 70'272);  // 61 x 576 x 2
  EXPECT_EQ(layout->bytes_per_block_per_layer(), 64 * 1152);
  EXPECT_EQ(layout->bytes_per_block(), 64 * 70'272);
  EXPECT_EQ(layout->latent_offset(), 0);
  EXPECT_EQ(layout->rope_offset(), 1024);
  EXPECT_EQ(layout->scale_bytes(), 0);
  // A 128K-token sequence: 8.6 GiB.
  EXPECT_NEAR(static_cast<double>(layout->bytes_per_token()) * 131072 / (1 << 30), 8.58, 0.01);
}

TEST(CacheLayoutTest, Fp8LayoutIs656BytesPerTokenAndLayer) {
  absl::StatusOr<CacheLayout> layout = CacheLayout::Create(V3Config(CacheDType::kFp8E4M3));
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->bytes_per_token_per_layer(), 656);
  EXPECT_EQ(layout->scale_offset(), 512);
  EXPECT_EQ(layout->scale_bytes(), 16);
  EXPECT_EQ(layout->rope_offset(), 528);
  EXPECT_EQ(layout->bytes_per_token(), 61 * 656);
  // Storage is sized by the layout: 1.76x the blocks of bf16 in the same budget.
  absl::StatusOr<LatentCache> cache = LatentCache::CreateWithBlocks(*layout, 1);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->bytes(), static_cast<size_t>(64 * 61 * 656));
  const int64_t budget = int64_t{1} << 30;
  const CacheLayout bf16 = *CacheLayout::Create(V3Config());
  EXPECT_EQ(*LatentCache::BlocksForBudget(*layout, budget), budget / (64 * 61 * 656));
  EXPECT_EQ(*LatentCache::BlocksForBudget(bf16, budget), budget / (64 * 61 * 1152));
}

// DeepSeek-V3.2 (128-value indexer keys): the keys' bytes per token and layer are
// 256 in bf16 and 132 in FP8 (codes and one fp32 scale), and the latent slot is unchanged.
TEST(CacheLayoutTest, V32IndexKeyBytesByDtype) {
  struct Want {
    CacheDType latent, index;
    int64_t per_layer;  // Latent slot + indexer key.
  };
  for (const Want& w : {Want{CacheDType::kBF16, CacheDType::kBF16, 1152 + 256},
                        Want{CacheDType::kFp8E4M3, CacheDType::kBF16, 656 + 256},
                        Want{CacheDType::kFp8E4M3, CacheDType::kFp8E4M3, 656 + 132},
                        Want{CacheDType::kBF16, CacheDType::kFp8E4M3, 1152 + 132}}) {
    CacheLayoutConfig config = V3Config(w.latent);
    config.index_key_dim = 128;
    config.index_dtype = w.index;
    absl::StatusOr<CacheLayout> layout = CacheLayout::Create(config);
    ASSERT_TRUE(layout.ok()) << layout.status();
    EXPECT_EQ(layout->bytes_per_token_per_layer() + layout->index_bytes_per_token_per_layer(),
              w.per_layer);
    EXPECT_EQ(layout->index_bytes_per_block_per_layer(),
              64 * layout->index_bytes_per_token_per_layer());
    EXPECT_EQ(layout->bytes_per_token(), 61 * w.per_layer);
    EXPECT_EQ(layout->bytes_per_block(), 64 * 61 * w.per_layer);
    absl::StatusOr<LatentCache> cache = LatentCache::CreateWithBlocks(*layout, 3);
    ASSERT_TRUE(cache.ok()) << cache.status();
    EXPECT_EQ(cache->bytes(), static_cast<size_t>(3 * layout->bytes_per_block()));
  }
  // Without indexer keys the index dtype costs nothing.
  CacheLayoutConfig config = V3Config();
  config.index_dtype = CacheDType::kFp8E4M3;
  EXPECT_EQ(CacheLayout::Create(config)->index_bytes_per_token_per_layer(), 0);
}

TEST(CacheLayoutTest, RejectsBadShapes) {
  CacheLayoutConfig c = V3Config();
  c.block_size = 0;
  EXPECT_FALSE(CacheLayout::Create(c).ok());
  c = V3Config();
  c.num_layers = 0;
  EXPECT_FALSE(CacheLayout::Create(c).ok());
  c = V3Config();
  c.latent_dim = -1;
  EXPECT_FALSE(CacheLayout::Create(c).ok());
}

TEST(CacheLayoutTest, Fp8LastScaleGroupMayBeShort) {
  // 200 latent values: a group of 128 and one of 72, two scales; small models (latent 32)
  // have one group.
  CacheLayoutConfig c = V3Config(CacheDType::kFp8E4M3);
  c.latent_dim = 200;
  absl::StatusOr<CacheLayout> layout = CacheLayout::Create(c);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->scale_bytes(), 8);
  EXPECT_EQ(layout->bytes_per_token_per_layer(), 200 + 8 + 128);
  c.latent_dim = 32;
  c.rope_dim = 8;
  EXPECT_EQ(CacheLayout::Create(c)->bytes_per_token_per_layer(), 32 + 4 + 16);
}

TEST(CacheLayoutTest, BlocksForTokens) {
  CacheLayoutConfig c = V3Config();
  c.block_size = 16;
  absl::StatusOr<CacheLayout> layout = CacheLayout::Create(c);
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->BlocksForTokens(0), 0);
  EXPECT_EQ(layout->BlocksForTokens(1), 1);
  EXPECT_EQ(layout->BlocksForTokens(16), 1);
  EXPECT_EQ(layout->BlocksForTokens(17), 2);
}

TEST(CacheLayoutTest, EquivalentMhaBytesForV3) {
  const int64_t mha = EquivalentMhaBytesPerToken(MhaCacheShape{.num_layers = 61,
                                                               .num_heads = 128,
                                                               .qk_nope_head_dim = 128,
                                                               .qk_rope_head_dim = 64,
                                                               .v_head_dim = 128,
                                                               .dtype_bytes = 2});
  EXPECT_EQ(mha, int64_t{61} * 128 * (128 + 64 + 128) * 2);
  EXPECT_EQ(mha, 4'997'120);
  // About 71x the latent cache.
  EXPECT_NEAR(static_cast<double>(mha) / 70'272, 71.1, 0.05);
}

TEST(CacheLayoutTest, BudgetToBlockCount) {
  absl::StatusOr<CacheLayout> layout = CacheLayout::Create(V3Config());
  ASSERT_TRUE(layout.ok());
  const int64_t per_block = 64 * 70'272;  // 4,497,408 bytes.
  absl::StatusOr<int32_t> blocks = LatentCache::BlocksForBudget(*layout, int64_t{8} << 30);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ(*blocks, (int64_t{8} << 30) / per_block);
  EXPECT_EQ(*blocks, 1909);
  EXPECT_EQ(*LatentCache::BlocksForBudget(*layout, per_block), 1);
  EXPECT_EQ(*LatentCache::BlocksForBudget(*layout, 3 * per_block - 1), 2);

  absl::StatusOr<int32_t> too_small = LatentCache::BlocksForBudget(*layout, per_block - 1);
  ASSERT_FALSE(too_small.ok());
  EXPECT_EQ(too_small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_small.status().message().find("4497408"), std::string::npos) << too_small.status();
  EXPECT_FALSE(LatentCache::BlocksForBudget(*layout, 0).ok());
  EXPECT_FALSE(LatentCache::BlocksForBudget(*layout, -5).ok());
}

}  // namespace
}  // namespace mla
