#include "engine/kv_cache/block_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "engine/kv_cache/block_pool.h"

namespace mla {
namespace {

using ::testing::ElementsAre;

class BlockTableGrowthTest : public ::testing::TestWithParam<int> {};

TEST_P(BlockTableGrowthTest, AppendAllocatesOnlyWhatIsNeeded) {
  const int bs = GetParam();
  for (int64_t len : {0, 1, 63, 64, 65}) {
    SCOPED_TRACE(testing::Message() << "block_size " << bs << " length " << len);
    BlockPool pool(64);
    BlockTable table(bs);
    const int64_t want_blocks = (len + bs - 1) / bs;
    EXPECT_EQ(table.BlocksNeeded(len), want_blocks);
    ASSERT_TRUE(table.Append(len, pool).ok());
    EXPECT_EQ(table.num_tokens(), len);
    EXPECT_EQ(table.num_blocks(), want_blocks);
    EXPECT_EQ(pool.num_used(), want_blocks);
    EXPECT_EQ(table.capacity(), want_blocks * bs);
    // One more token needs a new block exactly when the last block is full.
    const bool full = len % bs == 0;
    EXPECT_EQ(table.BlocksNeeded(1), full ? 1 : 0);
    ASSERT_TRUE(table.Append(1, pool).ok());
    EXPECT_EQ(table.num_blocks(), want_blocks + (full ? 1 : 0));
    // Slots: token t in block t / bs at offset t % bs.
    for (int64_t t = 0; t <= len; ++t) {
      const BlockTable::Slot slot = table.SlotOf(t);
      EXPECT_EQ(slot.block, table.block_ids()[t / bs]);
      EXPECT_EQ(slot.offset, t % bs);
    }
    ASSERT_TRUE(table.Release(pool).ok());
    EXPECT_EQ(table.num_tokens(), 0);
    EXPECT_EQ(table.num_blocks(), 0);
    EXPECT_EQ(pool.num_used(), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, BlockTableGrowthTest, ::testing::Values(64, 16));

TEST(BlockTableTest, TokenByTokenGrowthCrossesBoundaries) {
  BlockPool pool(8);
  BlockTable table(16);
  for (int t = 0; t < 40; ++t) {
    ASSERT_TRUE(table.Append(1, pool).ok());
    EXPECT_EQ(table.num_blocks(), t / 16 + 1) << "after token " << t;
  }
  EXPECT_THAT(table.block_ids(), ElementsAre(0, 1, 2));
  const BlockTable::Slot slot = table.SlotOf(33);
  EXPECT_EQ(slot.block, 2);
  EXPECT_EQ(slot.offset, 1);
}

TEST(BlockTableTest, AppendIsAllOrNothingWhenThePoolRunsOut) {
  BlockPool pool(3);
  BlockTable a(16);
  BlockTable b(16);
  ASSERT_TRUE(a.Append(20, pool).ok());  // 2 blocks.
  absl::Status s = b.Append(33, pool);   // Needs 3, 1 free.
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(b.num_tokens(), 0);
  EXPECT_EQ(b.num_blocks(), 0);
  EXPECT_EQ(pool.num_free(), 1);
  // Filling the partial last block of `a` needs no new block even with 0 free.
  ASSERT_TRUE(b.Append(16, pool).ok());
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_TRUE(a.Append(12, pool).ok());
  EXPECT_EQ(a.Append(1, pool).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.num_tokens(), 32);
  EXPECT_EQ(a.Append(-1, pool).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockTableTest, TruncateReturnsBlocksThatHoldNoToken) {
  BlockPool pool(8);
  BlockTable table(16);
  ASSERT_TRUE(table.Append(40, pool).ok());  // Blocks 0, 1, 2.
  ASSERT_TRUE(table.Truncate(33, pool).ok());
  EXPECT_EQ(table.num_blocks(), 3);
  ASSERT_TRUE(table.Truncate(32, pool).ok());
  EXPECT_THAT(table.block_ids(), ElementsAre(0, 1));
  EXPECT_EQ(table.num_tokens(), 32);
  EXPECT_EQ(pool.RefCount(2), 0);
  EXPECT_EQ(table.Truncate(33, pool).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(table.Truncate(0, pool).ok());
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(BlockTableTest, ReleaseIntoTheWrongPoolFailsAndEmptiesTheTable) {
  BlockPool pool(4);
  BlockPool other(4);
  BlockTable table(16);
  ASSERT_TRUE(table.Append(20, pool).ok());
  EXPECT_EQ(table.Release(other).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(table.num_blocks(), 0);
  EXPECT_EQ(other.num_used(), 0);
}

}  // namespace
}  // namespace mla
