#include "engine/kv_cache/latent_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "engine/common/bf16.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/block_table.h"

namespace mla {
namespace {

CacheLayout SmallLayout(int block_size) {
  return *CacheLayout::Create(CacheLayoutConfig{.dtype = CacheDType::kBF16,
                                                .latent_dim = 24,
                                                .rope_dim = 8,
                                                .block_size = block_size,
                                                .num_layers = 3});
}

// Distinct value for (layer, token, column); most are not bf16-exact, so the stores round.
float Value(int layer, int64_t token, int col) {
  return static_cast<float>(layer * 1000 + token) + static_cast<float>(col) / 8.0f;
}

TEST(LatentCacheTest, SizedFromBudgetOrBlocks) {
  const CacheLayout layout = SmallLayout(16);
  const int64_t per_block = 16 * 32 * 2 * 3;
  absl::StatusOr<LatentCache> cache = LatentCache::CreateWithBudget(layout, 5 * per_block + 7);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->num_blocks(), 5);
  EXPECT_EQ(cache->bytes(), static_cast<size_t>(5 * per_block));
  EXPECT_FALSE(LatentCache::CreateWithBudget(layout, per_block - 1).ok());
  EXPECT_FALSE(LatentCache::CreateWithBlocks(layout, 0).ok());
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(cache->LayerData(l)) % 64, 0u) << "layer " << l;
  }
}

TEST(LatentCacheTest, WriteThroughShuffledTableLeavesOtherSlotsPoisoned) {
  constexpr int kBs = 16;
  constexpr int kBlocks = 12;
  const CacheLayout layout = SmallLayout(kBs);
  absl::StatusOr<LatentCache> cache = LatentCache::CreateWithBlocks(layout, kBlocks);
  ASSERT_TRUE(cache.ok()) << cache.status();
  cache->PoisonWithNaN();

  // A sequence of 37 tokens in 3 blocks scattered over the pool: allocate every block,
  // then free them in shuffled order so that the pool's FIFO free list hands them out so.
  std::vector<int32_t> scrambled(kBlocks);
  std::iota(scrambled.begin(), scrambled.end(), 0);
  std::mt19937 gen(7);
  std::shuffle(scrambled.begin(), scrambled.end(), gen);
  BlockPool pool(kBlocks);
  ASSERT_TRUE(pool.Allocate(kBlocks).ok());
  for (int32_t id : scrambled) ASSERT_TRUE(pool.Free(std::vector<int32_t>{id}).ok());
  BlockTable shuffled(kBs);
  ASSERT_TRUE(shuffled.Append(37, pool).ok());
  ASSERT_EQ(shuffled.block_ids(), std::vector<int32_t>(scrambled.begin(), scrambled.begin() + 3));

  // Write in two chunks (one crossing a block boundary) with padded row strides.
  constexpr int kL = 24, kR = 8, kLatStride = 30, kPeStride = 11;
  const int layer = 1;
  std::vector<float> lat(37 * kLatStride, -7.0f), pe(37 * kPeStride, -7.0f);
  for (int t = 0; t < 37; ++t) {
    for (int c = 0; c < kL; ++c) lat[t * kLatStride + c] = Value(layer, t, c);
    for (int c = 0; c < kR; ++c) pe[t * kPeStride + c] = -Value(layer, t, c);
  }
  lat[5 * kLatStride + kL - 1] = 1.00390625f;  // Halfway between bf16 1.0 and 1.0078125.
  ASSERT_TRUE(
      cache->WriteTokens(layer, shuffled, 0, 20, lat.data(), kLatStride, pe.data(), kPeStride)
          .ok());
  ASSERT_TRUE(cache
                  ->WriteTokens(layer, shuffled, 20, 17, lat.data() + 20 * kLatStride, kLatStride,
                                pe.data() + 20 * kPeStride, kPeStride)
                  .ok());

  // Every slot: written tokens hold their bf16 values, everything else is still NaN.
  const bf16_t* base = cache->LayerData(layer);
  for (int b = 0; b < kBlocks; ++b) {
    const auto pos = std::find(shuffled.block_ids().begin(), shuffled.block_ids().end(), b);
    for (int o = 0; o < kBs; ++o) {
      const int64_t t =
          pos == shuffled.block_ids().end() ? -1 : (pos - shuffled.block_ids().begin()) * kBs + o;
      const bf16_t* slot = base + (int64_t{b} * kBs + o) * (kL + kR);
      for (int c = 0; c < kL + kR; ++c) {
        const float got = Bf16ToFloat(slot[c]);
        if (t < 0 || t >= 37) {
          ASSERT_TRUE(std::isnan(got)) << "block " << b << " offset " << o << " col " << c;
        } else {
          const float want = c < kL ? lat[t * kLatStride + c] : pe[t * kPeStride + c - kL];
          ASSERT_EQ(slot[c], FloatToBf16(want)) << "token " << t << " col " << c;
        }
      }
    }
  }
  EXPECT_EQ(Bf16ToFloat(base[(int64_t{shuffled.block_ids()[0]} * kBs + 5) * (kL + kR) + kL - 1]),
            1.0f);  // Ties round to even.
  // Other layers were not touched.
  for (int l : {0, 2}) {
    const bf16_t* other = cache->LayerData(l);
    for (int64_t i = 0; i < int64_t{kBlocks} * kBs * (kL + kR); ++i) {
      ASSERT_TRUE(std::isnan(Bf16ToFloat(other[i]))) << "layer " << l << " element " << i;
    }
  }

  // ReadTokens gathers the same values back.
  std::vector<float> lat_back(37 * kL), pe_back(37 * kR);
  ASSERT_TRUE(
      cache->ReadTokens(layer, shuffled, 0, 37, lat_back.data(), kL, pe_back.data(), kR).ok());
  for (int t = 0; t < 37; ++t) {
    for (int c = 0; c < kL; ++c) {
      ASSERT_EQ(lat_back[t * kL + c], Bf16ToFloat(FloatToBf16(lat[t * kLatStride + c])));
    }
    for (int c = 0; c < kR; ++c) {
      ASSERT_EQ(pe_back[t * kR + c], Bf16ToFloat(FloatToBf16(pe[t * kPeStride + c])));
    }
  }
}

TEST(LatentCacheTest, WritesOutsideTheTableAreRefused) {
  const CacheLayout layout = SmallLayout(16);
  LatentCache cache = *LatentCache::CreateWithBlocks(layout, 4);
  cache.PoisonWithNaN();
  BlockPool pool(4);
  BlockTable table(16);
  ASSERT_TRUE(table.Append(10, pool).ok());  // One block: positions 0..15 have a slot.
  std::vector<float> lat(24 * 32, 1.0f), pe(8 * 32, 1.0f);
  EXPECT_TRUE(cache.WriteTokens(0, table, 10, 6, lat.data(), 24, pe.data(), 8).ok());
  EXPECT_EQ(cache.WriteTokens(0, table, 10, 7, lat.data(), 24, pe.data(), 8).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(cache.WriteTokens(0, table, -1, 1, lat.data(), 24, pe.data(), 8).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(cache.WriteTokens(3, table, 0, 1, lat.data(), 24, pe.data(), 8).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.WriteTokens(0, table, 0, 1, lat.data(), 23, pe.data(), 8).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.WriteTokens(0, table, 0, 1, nullptr, 24, pe.data(), 8).code(),
            absl::StatusCode::kInvalidArgument);
  BlockTable wrong_size(8);
  ASSERT_TRUE(wrong_size.Append(1, pool).ok());
  EXPECT_EQ(cache.WriteTokens(0, wrong_size, 0, 1, lat.data(), 24, pe.data(), 8).code(),
            absl::StatusCode::kInvalidArgument);
  // A table from a bigger pool names a block this cache does not have.
  BlockPool big(8);
  ASSERT_TRUE(big.Allocate(5).ok());
  BlockTable far(16);
  ASSERT_TRUE(far.Append(1, big).ok());  // Block 5.
  EXPECT_EQ(cache.WriteTokens(0, far, 0, 1, lat.data(), 24, pe.data(), 8).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(cache.WriteTokens(0, table, 3, 0, nullptr, 0, nullptr, 0).ok());
  // The refused writes changed nothing: only tokens 10..15 of block 0 were written.
  const bf16_t* base = cache.LayerData(0);
  for (int64_t t = 0; t < 4 * 16; ++t) {
    const bool written = t >= 10 && t < 16;
    EXPECT_EQ(std::isnan(Bf16ToFloat(base[t * 32])), !written) << "slot " << t;
  }
}

}  // namespace
}  // namespace mla
