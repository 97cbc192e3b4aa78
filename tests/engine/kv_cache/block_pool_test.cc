#include "engine/kv_cache/block_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mla {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BlockPoolTest, FreshPoolHandsOutLowestIdsFirst) {
  BlockPool pool(8);
  EXPECT_EQ(pool.num_blocks(), 8);
  EXPECT_EQ(pool.num_free(), 8);
  EXPECT_EQ(pool.num_used(), 0);
  absl::StatusOr<std::vector<int32_t>> a = pool.Allocate(3);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(*a, ElementsAre(0, 1, 2));
  EXPECT_EQ(pool.num_used(), 3);
  EXPECT_EQ(pool.num_free(), 5);
  EXPECT_DOUBLE_EQ(pool.Usage(), 3.0 / 8);
  for (int32_t b : *a) EXPECT_EQ(pool.RefCount(b), 1);
  EXPECT_EQ(pool.RefCount(3), 0);
}

TEST(BlockPoolTest, FreedBlocksAreReusedInFifoOrder) {
  BlockPool pool(4);
  std::vector<int32_t> a = *pool.Allocate(4);
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{2}).ok());
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{0}).ok());
  // Least recently freed first.
  EXPECT_THAT(*pool.Allocate(1), ElementsAre(2));
  EXPECT_THAT(*pool.Allocate(1), ElementsAre(0));
}

TEST(BlockPoolTest, AllocateZeroAndNegative) {
  BlockPool pool(2);
  absl::StatusOr<std::vector<int32_t>> none = pool.Allocate(0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(pool.Allocate(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(pool.CanAllocate(0));
  EXPECT_FALSE(pool.CanAllocate(-1));
}

TEST(BlockPoolTest, ExhaustionIsAllOrNothingAndNamesTheNumbers) {
  BlockPool pool(10);
  ASSERT_TRUE(pool.Allocate(7).ok());
  EXPECT_TRUE(pool.CanAllocate(3));
  EXPECT_FALSE(pool.CanAllocate(4));
  absl::StatusOr<std::vector<int32_t>> r = pool.Allocate(4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("need 4 blocks"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("only 3 of 10"));
  // Nothing leaked: the three free blocks are still there.
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_THAT(*pool.Allocate(3), ElementsAre(7, 8, 9));
  EXPECT_EQ(pool.num_free(), 0);
}

TEST(BlockPoolTest, EmptyPool) {
  BlockPool pool(0);
  EXPECT_EQ(pool.num_blocks(), 0);
  EXPECT_DOUBLE_EQ(pool.Usage(), 0.0);
  EXPECT_EQ(pool.Allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockPoolTest, RefCountsKeepSharedBlocksAlive) {
  BlockPool pool(4);
  std::vector<int32_t> a = *pool.Allocate(2);  // {0, 1}
  ASSERT_TRUE(pool.AddRef(std::vector<int32_t>{0}).ok());
  EXPECT_EQ(pool.RefCount(0), 2);
  ASSERT_TRUE(pool.Free(a).ok());
  EXPECT_EQ(pool.RefCount(0), 1);
  EXPECT_EQ(pool.RefCount(1), 0);
  EXPECT_EQ(pool.num_used(), 1);
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{0}).ok());
  EXPECT_EQ(pool.num_used(), 0);
  // Listing an id twice drops two references at once.
  std::vector<int32_t> b = *pool.Allocate(1);
  ASSERT_TRUE(pool.AddRef(b).ok());
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{b[0], b[0]}).ok());
  EXPECT_EQ(pool.RefCount(b[0]), 0);
  EXPECT_EQ(pool.num_free(), 4);
}

TEST(BlockPoolTest, DoubleFreeIsCaughtAndChangesNothing) {
  BlockPool pool(4);
  std::vector<int32_t> a = *pool.Allocate(2);  // {0, 1}
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{0}).ok());
  // Block 0 is free now; freeing {1, 0} must fail without touching block 1.
  absl::Status s = pool.Free(std::vector<int32_t>{1, 0});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("block 0"));
  EXPECT_EQ(pool.RefCount(1), 1);
  EXPECT_EQ(pool.num_free(), 3);
  // The free list holds block 0 once, not twice.
  EXPECT_THAT(*pool.Allocate(3), ElementsAre(2, 3, 0));
  EXPECT_FALSE(pool.CanAllocate(1));
}

TEST(BlockPoolTest, FreeingMoreReferencesThanHeldIsCaught) {
  BlockPool pool(2);
  std::vector<int32_t> a = *pool.Allocate(1);
  absl::Status s = pool.Free(std::vector<int32_t>{a[0], a[0]});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool.RefCount(a[0]), 1);
}

TEST(BlockPoolTest, OutOfRangeIdsAreRejected) {
  BlockPool pool(2);
  ASSERT_TRUE(pool.Allocate(2).ok());
  EXPECT_EQ(pool.Free(std::vector<int32_t>{2}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Free(std::vector<int32_t>{-1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.AddRef(std::vector<int32_t>{5}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.num_used(), 2);
}

TEST(BlockPoolTest, AddRefOnFreeBlockIsCaught) {
  BlockPool pool(2);
  EXPECT_EQ(pool.AddRef(std::vector<int32_t>{0}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool.RefCount(0), 0);
  EXPECT_EQ(pool.num_free(), 2);
}

BlockMeta Identity(uint64_t hash) {
  BlockMeta meta;
  meta.has_hash = true;
  meta.hash = hash;
  return meta;
}

TEST(BlockPoolTest, BlocksWithIdentityBecomeCachedFreeAndAreEvictedLast) {
  BlockPool pool(4);
  std::vector<int32_t> a = *pool.Allocate(4);
  ASSERT_TRUE(pool.SetMeta(1, Identity(11)).ok());
  ASSERT_TRUE(pool.SetMeta(3, Identity(33)).ok());
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{3, 1, 0, 2}).ok());
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.num_cached_free(), 2);
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_TRUE(pool.IsCachedFree(3));
  EXPECT_FALSE(pool.IsCachedFree(0));
  // Plain free blocks first (FIFO), then cached-free ones least recently freed first,
  // each reported with the hash it loses.
  std::vector<BlockPool::Evicted> evicted;
  EXPECT_THAT(*pool.Allocate(3, &evicted), ElementsAre(0, 2, 3));
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0].block, 3);
  EXPECT_EQ(evicted[0].hash, 33u);
  EXPECT_FALSE(pool.Meta(3).has_hash);
  EXPECT_EQ(pool.num_cached_free(), 1);
  EXPECT_TRUE(pool.Meta(1).has_hash);  // Still findable.
}

TEST(BlockPoolTest, AcquireTakesCachedFreeBlocksBackButNotPlainFreeOnes) {
  BlockPool pool(3);
  std::vector<int32_t> a = *pool.Allocate(3);
  for (int32_t b : a) ASSERT_TRUE(pool.SetMeta(b, Identity(100 + b)).ok());
  ASSERT_TRUE(pool.Free(a).ok());  // LRU order 0, 1, 2.
  EXPECT_EQ(pool.num_cached_free(), 3);
  // Listing a cached-free block twice takes it back with two references.
  ASSERT_TRUE(pool.Acquire(std::vector<int32_t>{1, 1}).ok());
  EXPECT_EQ(pool.RefCount(1), 2);
  EXPECT_EQ(pool.num_cached_free(), 2);
  // Removing from the middle keeps the list intact: 0 then 2 are evicted.
  std::vector<BlockPool::Evicted> evicted;
  EXPECT_THAT(*pool.Allocate(2, &evicted), ElementsAre(0, 2));
  EXPECT_EQ(evicted.size(), 2u);
  EXPECT_EQ(pool.num_free(), 0);
  ASSERT_TRUE(pool.Free(std::vector<int32_t>{0}).ok());  // Plain free now.
  EXPECT_EQ(pool.Acquire(std::vector<int32_t>{1, 0}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool.RefCount(1), 2);  // Unchanged: checked before any change.
  EXPECT_EQ(pool.Acquire(std::vector<int32_t>{7}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockPoolTest, SetMetaNeedsAnAllocatedBlock) {
  BlockPool pool(2);
  EXPECT_EQ(pool.SetMeta(0, Identity(1)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool.SetMeta(2, Identity(1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(pool.Meta(0).has_hash);
}

}  // namespace
}  // namespace mla
