#include "engine/kv_cache/block_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace mla {
namespace {

using ::testing::HasSubstr;

constexpr int kBlockSize = 4;
constexpr int64_t kBytesPerBlock = 1000;

std::vector<int32_t> Range(int32_t first, int n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

BlockManagerConfig Config(int32_t num_blocks, bool prefix_caching = true,
                          BlockHashFn hash_fn = nullptr) {
  BlockManagerConfig config;
  config.num_blocks = num_blocks;
  config.block_size = kBlockSize;
  config.bytes_per_block = kBytesPerBlock;
  config.enable_prefix_caching = prefix_caching;
  config.hash_fn = hash_fn;
  return config;
}

// Allocates `table` for `tokens`, "computes" all of them and commits: returns the cached
// tokens.
int64_t RunSeq(BlockManager& m, BlockTable& table, const std::vector<int32_t>& tokens,
               const std::string& salt = "") {
  absl::StatusOr<int64_t> cached =
      m.Allocate(table, tokens, static_cast<int64_t>(tokens.size()), salt);
  EXPECT_TRUE(cached.ok()) << cached.status();
  m.CommitFullBlocks(table, tokens, static_cast<int64_t>(tokens.size()), salt);
  return cached.value_or(-1);
}

uint64_t ConstantHash(uint64_t, absl::string_view, std::span<const int32_t>) { return 42; }

TEST(ChainedBlockHashTest, IsTheDocumentedFnv1a) {
  // Expected values computed independently from the documented byte layout.
  EXPECT_EQ(ChainedBlockHash(kRootBlockHash, "", {}), 0x81d23fd7003c2305ull);
  const std::vector<int32_t> a = {1, 2, 3, 4};
  EXPECT_EQ(ChainedBlockHash(kRootBlockHash, "", a), 0xa2b0d3aeebbdb405ull);
  const uint64_t h = ChainedBlockHash(kRootBlockHash, "tenant", a);
  EXPECT_EQ(h, 0x2ac7eaa12ee7610bull);
  const std::vector<int32_t> b = {5, -1, 7, 8};
  EXPECT_EQ(ChainedBlockHash(h, "tenant", b), 0x1fe2f9543ddf363aull);
}

// The disk tier's two entry points: which blocks follow the cached prefix (with the
// hashes CommitFullBlocks reports for them), and adding one as a cached block that the
// next Allocate shares, in chain order only.
TEST(BlockManagerTest, TierBlocksFollowTheCachedPrefixAndBecomeHits) {
  BlockManager m(Config(16));
  const std::vector<int32_t> tokens = Range(10, 13);  // 3 full blocks shareable
  BlockTable first(kBlockSize);
  std::vector<BlockManager::CommittedBlock> committed;
  ASSERT_TRUE(m.Allocate(first, tokens, 13, "s").ok());
  m.CommitFullBlocks(first, tokens, 13, "s", &committed);
  ASSERT_EQ(committed.size(), 3u);
  EXPECT_EQ(committed[0].parent_hash, kRootBlockHash);
  EXPECT_EQ(committed[1].parent_hash, committed[0].hash);
  EXPECT_EQ(committed[2].index, 2);
  ASSERT_TRUE(m.Release(first).ok());

  BlockManager fresh(Config(16));  // as after a restart: nothing cached
  const std::vector<BlockManager::CommittedBlock> missing =
      fresh.BlocksAfterCachedPrefix(tokens, "s");
  ASSERT_EQ(missing.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(missing[i].hash, committed[i].hash);
    EXPECT_EQ(missing[i].parent_hash, committed[i].parent_hash);
  }
  EXPECT_EQ(fresh.AddCachedBlock(tokens, "s", 1).status().code(),
            absl::StatusCode::kFailedPrecondition);  // block 0 is not cached yet
  ASSERT_TRUE(fresh.AddCachedBlock(tokens, "s", 0).ok());
  ASSERT_TRUE(fresh.AddCachedBlock(tokens, "s", 1).ok());
  EXPECT_EQ(fresh.BlocksAfterCachedPrefix(tokens, "s").size(), 1u);
  EXPECT_EQ(fresh.stats().blocks_cached_free, 2);
  BlockTable table(kBlockSize);
  EXPECT_EQ(fresh.Allocate(table, tokens, 13, "s").value_or(-1), 8);
  EXPECT_EQ(fresh.BlocksAfterCachedPrefix(tokens, "other").size(), 3u);
}

TEST(BlockManagerTest, HitsTheLongestFullBlockPrefix) {
  BlockManager m(Config(16));
  BlockTable a(kBlockSize), b(kBlockSize);
  const std::vector<int32_t> ta = Range(0, 14);  // 3 full blocks + 2 tokens.
  EXPECT_EQ(RunSeq(m, a, ta), 0);
  std::vector<int32_t> tb = Range(0, 10);  // Shares 2 blocks, diverges inside the third.
  tb.insert(tb.end(), {99, 98, 97, 96});
  EXPECT_EQ(RunSeq(m, b, tb), 8);
  EXPECT_EQ(b.num_tokens(), 14);
  ASSERT_EQ(b.num_blocks(), 4);
  EXPECT_EQ(b.block_ids()[0], a.block_ids()[0]);
  EXPECT_EQ(b.block_ids()[1], a.block_ids()[1]);
  EXPECT_NE(b.block_ids()[2], a.block_ids()[2]);
  EXPECT_EQ(m.pool().RefCount(a.block_ids()[0]), 2);
  EXPECT_EQ(m.pool().RefCount(a.block_ids()[2]), 1);
  const CacheStats s = m.stats();
  EXPECT_EQ(s.prefix_queries, 28);
  EXPECT_EQ(s.prefix_hits, 8);
  EXPECT_DOUBLE_EQ(s.PrefixHitRate(), 8.0 / 28);
  EXPECT_EQ(s.blocks_used, 6);
  EXPECT_EQ(s.blocks_free, 10);
  EXPECT_EQ(s.bytes_used, 6 * kBytesPerBlock);
  EXPECT_EQ(s.bytes_total, 16 * kBytesPerBlock);
}

TEST(BlockManagerTest, PartialLastBlockIsNeverShared) {
  BlockManager m(Config(16));
  BlockTable a(kBlockSize), b(kBlockSize);
  const std::vector<int32_t> ta = Range(0, 10);  // Block 2 holds 2 tokens.
  RunSeq(m, a, ta);
  EXPECT_TRUE(m.pool().Meta(a.block_ids()[1]).has_hash);
  EXPECT_FALSE(m.pool().Meta(a.block_ids()[2]).has_hash);
  EXPECT_EQ(RunSeq(m, b, Range(0, 14)), 8);  // Not 12: the partial block was not registered.
  EXPECT_NE(b.block_ids()[2], a.block_ids()[2]);
}

TEST(BlockManagerTest, LeavesAtLeastOneTokenToCompute) {
  BlockManager m(Config(16));
  BlockTable a(kBlockSize), b(kBlockSize), c(kBlockSize), d(kBlockSize);
  RunSeq(m, a, Range(0, 8));  // Exactly two blocks, both registered.
  EXPECT_TRUE(m.pool().Meta(a.block_ids()[1]).has_hash);
  EXPECT_EQ(m.CachedPrefixTokens(Range(0, 8), ""), 4);
  EXPECT_EQ(RunSeq(m, b, Range(0, 8)), 4);  // The last token's logits are needed.
  EXPECT_EQ(RunSeq(m, c, Range(0, 9)), 8);
  EXPECT_EQ(RunSeq(m, d, Range(0, 1)), 0);
  EXPECT_EQ(m.CachedPrefixTokens({}, ""), 0);
}

TEST(BlockManagerTest, CacheSaltSeparatesTenants) {
  BlockManager m(Config(16));
  BlockTable a(kBlockSize), b(kBlockSize), c(kBlockSize);
  RunSeq(m, a, Range(0, 9), "tenant-a");
  EXPECT_EQ(RunSeq(m, b, Range(0, 9), "tenant-b"), 0);
  EXPECT_EQ(RunSeq(m, c, Range(0, 9), "tenant-a"), 8);
  EXPECT_EQ(m.CachedPrefixTokens(Range(0, 9), ""), 0);
}

TEST(BlockManagerTest, HashCollisionsNeverShareABlock) {
  // Every block hashes alike: only the stored contents tell them apart.
  BlockManager m(Config(32, true, &ConstantHash));
  BlockTable a(kBlockSize), b(kBlockSize), c(kBlockSize), d(kBlockSize), e(kBlockSize),
      f(kBlockSize);
  const std::vector<int32_t> ta = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  RunSeq(m, a, ta);
  EXPECT_EQ(RunSeq(m, b, {1, 2, 3, 5, 5, 6, 7, 8, 9}), 0);
  EXPECT_EQ(RunSeq(m, c, ta), 8);  // Real hits still work.
  EXPECT_EQ(RunSeq(m, f, ta, "other"), 0);
  // A collision one level down: block 1 of `e` has the tokens of block 1 of `a`, but a
  // different first block, so its latents differ. Comparing only the block's own tokens
  // would share a's block 1 after hitting d's block 0.
  RunSeq(m, d, {10, 11, 12, 13, 20, 21, 22, 23, 0});
  EXPECT_EQ(RunSeq(m, e, {10, 11, 12, 13, 5, 6, 7, 8, 0}), 4);
  EXPECT_EQ(e.block_ids()[0], d.block_ids()[0]);
  EXPECT_NE(e.block_ids()[1], a.block_ids()[1]);
}

TEST(BlockManagerTest, ReleasedBlocksStayCachedUntilEvictedLruFirst) {
  BlockManager m(Config(6));
  BlockTable a(kBlockSize), b(kBlockSize), c(kBlockSize), d(kBlockSize), e(kBlockSize),
      f(kBlockSize);
  const std::vector<int32_t> ta = Range(0, 9);  // Blocks 0, 1 full; block 2 partial.
  RunSeq(m, a, ta);
  const std::vector<int32_t> a_blocks = a.block_ids();
  ASSERT_TRUE(m.Release(a).ok());
  EXPECT_EQ(a.num_blocks(), 0);
  EXPECT_EQ(a.num_tokens(), 0);
  CacheStats s = m.stats();
  EXPECT_EQ(s.blocks_used, 0);
  EXPECT_EQ(s.blocks_cached_free, 2);
  EXPECT_EQ(s.blocks_free, 4);
  // Hit again without recomputing: the same blocks come back off the LRU list.
  EXPECT_EQ(RunSeq(m, b, ta), 8);
  EXPECT_EQ(b.block_ids()[0], a_blocks[0]);
  EXPECT_EQ(b.block_ids()[1], a_blocks[1]);
  EXPECT_EQ(m.stats().blocks_cached_free, 0);
  ASSERT_TRUE(m.Release(b).ok());
  // Plain free blocks go first: no eviction for 3 blocks.
  RunSeq(m, c, Range(100, 12));
  EXPECT_EQ(m.stats().evictions, 0);
  EXPECT_EQ(m.CachedPrefixTokens(ta, ""), 8);
  // Then the least recently freed cached block: the tail of the released prefix (its
  // blocks were freed last to first), so the head stays findable.
  RunSeq(m, d, Range(200, 8));
  EXPECT_EQ(m.stats().evictions, 1);
  EXPECT_EQ(m.CachedPrefixTokens(ta, ""), 4);
  RunSeq(m, e, Range(300, 4));
  s = m.stats();
  EXPECT_EQ(s.evictions, 2);
  EXPECT_EQ(s.blocks_cached_free, 0);
  EXPECT_EQ(s.blocks_used, 6);
  EXPECT_EQ(m.CachedPrefixTokens(ta, ""), 0);
  EXPECT_EQ(m.Allocate(f, ta, 9, "").status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockManagerTest, EvictsTheSequenceReleasedFirst) {
  BlockManager m(Config(4));
  BlockTable x(kBlockSize), y(kBlockSize), z(kBlockSize);
  RunSeq(m, x, Range(0, 5));
  RunSeq(m, y, Range(50, 5));
  ASSERT_TRUE(m.Release(x).ok());
  ASSERT_TRUE(m.Release(y).ok());
  RunSeq(m, z, Range(500, 12));  // Two plain free blocks, then one eviction.
  EXPECT_EQ(m.stats().evictions, 1);
  EXPECT_EQ(m.CachedPrefixTokens(Range(0, 5), ""), 0);
  EXPECT_EQ(m.CachedPrefixTokens(Range(50, 5), ""), 4);
}

TEST(BlockManagerTest, AllocateIsAllOrNothingAndCountsCachedFreeHits) {
  BlockManager m(Config(4));
  BlockTable a(kBlockSize), b(kBlockSize);
  const std::vector<int32_t> ta = Range(0, 9);
  RunSeq(m, a, ta);
  ASSERT_TRUE(m.Release(a).ok());  // 2 cached free + 2 plain free.
  const CacheStats before = m.stats();
  // 20 tokens: 5 blocks, 2 of them hits. Three fresh ones would fit in the 4 free
  // blocks only by evicting the hits themselves.
  EXPECT_FALSE(m.CanAllocate(ta, 20, ""));
  absl::StatusOr<int64_t> r = m.Allocate(b, ta, 20, "");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("need 3 new blocks"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("only 2 of 4"));
  EXPECT_EQ(b.num_blocks(), 0);
  const CacheStats after = m.stats();
  EXPECT_EQ(after.blocks_cached_free, before.blocks_cached_free);
  EXPECT_EQ(after.blocks_free, before.blocks_free);
  EXPECT_EQ(after.prefix_queries, before.prefix_queries);
  EXPECT_EQ(m.CachedPrefixTokens(ta, ""), 8);
  // 16 tokens fit exactly.
  EXPECT_TRUE(m.CanAllocate(ta, 16, ""));
  EXPECT_EQ(m.Allocate(b, ta, 16, "").value_or(-1), 8);
  EXPECT_EQ(b.num_tokens(), 16);
  EXPECT_EQ(m.stats().blocks_free + m.stats().blocks_cached_free, 0);
  EXPECT_EQ(m.stats().evictions, 0);
}

TEST(BlockManagerTest, RejectsBadTables) {
  BlockManager m(Config(8));
  BlockTable a(kBlockSize), wrong(8);
  RunSeq(m, a, Range(0, 5));
  EXPECT_EQ(m.Allocate(a, Range(0, 5), 5, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.Allocate(wrong, Range(0, 5), 5, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  BlockTable b(kBlockSize);
  EXPECT_EQ(m.Allocate(b, Range(0, 5), -1, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Append(a, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.stats().blocks_used, 2);
}

TEST(BlockManagerTest, AppendGrowsAndEvictsCachedBlocks) {
  BlockManager m(Config(3));
  BlockTable x(kBlockSize), a(kBlockSize);
  RunSeq(m, x, Range(0, 5));
  ASSERT_TRUE(m.Release(x).ok());  // 1 cached free + 2 plain free.
  ASSERT_TRUE(m.Allocate(a, Range(100, 4), 4, "").ok());
  EXPECT_TRUE(m.CanAppend(a, 0));
  EXPECT_TRUE(m.CanAppend(a, 8));
  EXPECT_FALSE(m.CanAppend(a, 9));
  ASSERT_TRUE(m.Append(a, 1).ok());
  EXPECT_EQ(a.num_tokens(), 5);
  EXPECT_EQ(m.stats().evictions, 0);
  ASSERT_TRUE(m.Append(a, 3).ok());  // Fits in the partial block.
  EXPECT_EQ(a.num_blocks(), 2);
  absl::Status s = m.Append(a, 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.num_tokens(), 8);
  ASSERT_TRUE(m.Append(a, 4).ok());
  EXPECT_EQ(a.num_blocks(), 3);
  EXPECT_EQ(m.stats().evictions, 1);
  EXPECT_EQ(m.CachedPrefixTokens(Range(0, 5), ""), 0);
}

TEST(BlockManagerTest, RestartAfterPreemptionReusesPromptAndGeneratedTokens) {
  BlockManager m(Config(8));
  BlockTable a(kBlockSize);
  std::vector<int32_t> tokens = Range(0, 6);  // Prompt.
  ASSERT_TRUE(m.Allocate(a, tokens, 6, "").ok());
  m.CommitFullBlocks(a, tokens, 6, "");
  for (int32_t t : {70, 71, 72}) {  // Decode: each sampled token is computed next step.
    tokens.push_back(t);
    ASSERT_TRUE(m.Append(a, 1).ok());
    m.CommitFullBlocks(a, tokens, static_cast<int64_t>(tokens.size()) - 1, "");
  }
  EXPECT_TRUE(m.pool().Meta(a.block_ids()[1]).has_hash);  // Tokens 4..7 computed.
  ASSERT_TRUE(m.Release(a).ok());                         // Preempted.
  EXPECT_EQ(m.Allocate(a, tokens, 9, "").value_or(-1), 8);
}

TEST(BlockManagerTest, IdenticalContentsComputedTwiceChainThroughEitherCopy) {
  BlockManager m(Config(16));
  BlockTable a(kBlockSize), b(kBlockSize), c(kBlockSize);
  const std::vector<int32_t> t = Range(0, 13);
  // Admitted together: neither sees the other's blocks.
  ASSERT_EQ(m.Allocate(a, t, 13, "").value_or(-1), 0);
  ASSERT_EQ(m.Allocate(b, t, 13, "").value_or(-1), 0);
  m.CommitFullBlocks(b, t, 4, "");
  m.CommitFullBlocks(a, t, 13, "");  // a's first block is a twin of b's.
  ASSERT_TRUE(m.Release(a).ok());
  // The in-use copy of block 0 is preferred; a's block 1 still chains onto it.
  EXPECT_EQ(m.Allocate(c, t, 13, "").value_or(-1), 12);
  EXPECT_EQ(c.block_ids()[0], b.block_ids()[0]);
  EXPECT_EQ(m.pool().RefCount(c.block_ids()[1]), 1);
  // Committing again registers nothing twice and keeps identities.
  const uint64_t id = m.pool().Meta(b.block_ids()[0]).content_id;
  m.CommitFullBlocks(b, t, 13, "");
  EXPECT_EQ(m.pool().Meta(b.block_ids()[0]).content_id, id);
  EXPECT_EQ(m.pool().Meta(b.block_ids()[1]).content_id, m.pool().Meta(c.block_ids()[1]).content_id);
}

TEST(BlockManagerTest, TruncateNeverCutsIntoARegisteredBlock) {
  BlockManager m(Config(8));
  BlockTable a(kBlockSize);
  RunSeq(m, a, Range(0, 10));
  EXPECT_EQ(m.Truncate(a, 6).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.num_tokens(), 10);
  ASSERT_TRUE(m.Truncate(a, 9).ok());  // Inside the unregistered partial block.
  ASSERT_TRUE(m.Truncate(a, 8).ok());
  EXPECT_EQ(a.num_blocks(), 2);
  EXPECT_EQ(m.stats().blocks_used, 2);
  EXPECT_EQ(m.Truncate(a, 9).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockManagerTest, DisabledPrefixCachingNeverRegistersOrHits) {
  BlockManager m(Config(8, /*prefix_caching=*/false));
  EXPECT_FALSE(m.prefix_caching_enabled());
  BlockTable a(kBlockSize), b(kBlockSize);
  const std::vector<int32_t> t = Range(0, 9);
  EXPECT_EQ(RunSeq(m, a, t), 0);
  EXPECT_FALSE(m.pool().Meta(a.block_ids()[0]).has_hash);
  EXPECT_EQ(RunSeq(m, b, t), 0);
  EXPECT_NE(a.block_ids()[0], b.block_ids()[0]);
  ASSERT_TRUE(m.Release(a).ok());
  ASSERT_TRUE(m.Release(b).ok());
  const CacheStats s = m.stats();
  EXPECT_EQ(s.blocks_cached_free, 0);
  EXPECT_EQ(s.blocks_free, 8);
  EXPECT_EQ(s.prefix_queries, 0);
  EXPECT_EQ(s.prefix_hits, 0);
  EXPECT_EQ(s.preemptions, 0);
}

}  // namespace
}  // namespace mla
