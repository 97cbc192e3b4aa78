// Randomized property test of BlockManager: random sequences with shared prefixes are
// allocated, computed (committed), decoded, preempted and released, and after every
// operation the manager is checked against a recount and a shadow of what each block's
// latents would hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "engine/kv_cache/block_manager.h"

namespace mla {
namespace {

constexpr int kBlockSize = 4;
constexpr int32_t kNumBlocks = 40;
constexpr int kOps = 3000;

struct LiveSeq {
  BlockTable table{kBlockSize};
  std::vector<int32_t> tokens;
  std::string salt;
  int64_t computed = 0;
};

// What a block's latents depend on: the salt's tenant and every token up to the last
// slot written (attention sees the whole prefix).
struct Shadow {
  std::string salt;
  std::vector<int32_t> prefix;
};

// Two bits of hash that ignore the salt: nearly every lookup meets colliding candidates,
// other tenants' blocks with the same tokens among them.
uint64_t WeakHash(uint64_t parent, absl::string_view, std::span<const int32_t> tokens) {
  return ChainedBlockHash(parent, "", tokens) & 3;
}

struct Params {
  bool prefix_caching;
  BlockHashFn hash_fn;
};

void PrintTo(const Params& p, std::ostream* os) {
  *os << (p.prefix_caching ? "enabled" : "disabled") << (p.hash_fn ? ", weak hash" : "");
}

class BlockManagerPropertyTest : public ::testing::TestWithParam<Params> {
 protected:
  BlockManagerPropertyTest()
      : manager_(BlockManagerConfig{kNumBlocks, kBlockSize, 64, GetParam().prefix_caching,
                                    GetParam().hash_fn}),
        shadow_(kNumBlocks),
        rng_(1234) {
    for (auto& base : bases_) {
      base.resize(48);
      for (int32_t& t : base) t = Uniform(0, 5);
    }
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::vector<int32_t> RandomTokens() {
    const auto& base = bases_[Uniform(0, 2)];
    std::vector<int32_t> t(base.begin(), base.begin() + Uniform(0, 40));
    // A narrow alphabet makes suffixes collide in content, not just in hash.
    for (int n = Uniform(t.empty() ? 1 : 0, 10); n > 0; --n) t.push_back(Uniform(0, 1));
    return t;
  }

  void Start(std::unique_ptr<LiveSeq> seq);
  void Compute(LiveSeq& seq);
  void Decode(LiveSeq& seq);
  void Release(size_t index, bool restart);
  void CheckInvariants();
  void RunOps();

  BlockManager manager_;
  std::vector<Shadow> shadow_;
  std::vector<std::unique_ptr<LiveSeq>> live_;
  std::mt19937 rng_;
  std::vector<int32_t> bases_[3];
  int64_t queries_ = 0, hits_ = 0, evictions_ = 0;
};

void BlockManagerPropertyTest::Start(std::unique_ptr<LiveSeq> seq) {
  const int64_t n = static_cast<int64_t>(seq->tokens.size());
  const CacheStats before = manager_.stats();
  const int64_t expected = manager_.CachedPrefixTokens(seq->tokens, seq->salt);
  const bool can = manager_.CanAllocate(seq->tokens, n, seq->salt);
  std::vector<bool> was_cached_free(kNumBlocks);
  for (int32_t b = 0; b < kNumBlocks; ++b) was_cached_free[b] = manager_.pool().IsCachedFree(b);
  absl::StatusOr<int64_t> cached = manager_.Allocate(seq->table, seq->tokens, n, seq->salt);
  ASSERT_EQ(cached.ok(), can) << cached.status();
  if (!cached.ok()) {
    ASSERT_EQ(cached.status().code(), absl::StatusCode::kResourceExhausted);
    const CacheStats after = manager_.stats();
    EXPECT_EQ(after.blocks_cached_free, before.blocks_cached_free);
    EXPECT_EQ(after.blocks_used, before.blocks_used);
    EXPECT_EQ(seq->table.num_blocks(), 0);
    return;
  }
  ASSERT_EQ(*cached, expected);
  ASSERT_EQ(*cached % kBlockSize, 0);
  ASSERT_LT(*cached, n);
  if (!GetParam().prefix_caching) {
    ASSERT_EQ(*cached, 0);
  }
  ASSERT_EQ(seq->table.num_tokens(), n);
  int64_t cached_free_hits = 0;
  for (int64_t j = 0; j < *cached / kBlockSize; ++j) {
    // A hit holds exactly what this sequence would have computed there.
    const int32_t b = seq->table.block_ids()[j];
    ASSERT_EQ(shadow_[b].salt, seq->salt);
    ASSERT_EQ(shadow_[b].prefix, std::vector<int32_t>(seq->tokens.begin(),
                                                      seq->tokens.begin() + (j + 1) * kBlockSize));
    cached_free_hits += was_cached_free[b] ? 1 : 0;
  }
  evictions_ += before.blocks_cached_free - cached_free_hits - manager_.stats().blocks_cached_free;
  if (GetParam().prefix_caching) {
    queries_ += n;
    hits_ += *cached;
  }
  seq->computed = *cached;
  live_.push_back(std::move(seq));
}

void BlockManagerPropertyTest::Compute(LiveSeq& seq) {
  const int64_t n = static_cast<int64_t>(seq.tokens.size());
  const int64_t end = std::min<int64_t>(n, seq.computed + Uniform(1, 10));
  for (int64_t p = seq.computed; p < end; ++p) {
    const int32_t b = seq.table.block_ids()[p / kBlockSize];
    // Shared or registered blocks are never written.
    ASSERT_EQ(manager_.pool().RefCount(b), 1);
    ASSERT_FALSE(manager_.pool().Meta(b).has_hash);
    shadow_[b].salt = seq.salt;
    shadow_[b].prefix.assign(seq.tokens.begin(), seq.tokens.begin() + p + 1);
  }
  seq.computed = end;
  manager_.CommitFullBlocks(seq.table, seq.tokens, seq.computed, seq.salt);
}

void BlockManagerPropertyTest::Decode(LiveSeq& seq) {
  if (seq.computed != static_cast<int64_t>(seq.tokens.size())) return;
  const int64_t cached_free = manager_.stats().blocks_cached_free;
  const bool can = manager_.CanAppend(seq.table, 1);
  const absl::Status s = manager_.Append(seq.table, 1);
  ASSERT_EQ(s.ok(), can) << s;
  if (!s.ok()) {
    ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    return;
  }
  evictions_ += cached_free - manager_.stats().blocks_cached_free;
  seq.tokens.push_back(Uniform(0, 1));
}

void BlockManagerPropertyTest::Release(size_t index, bool restart) {
  std::unique_ptr<LiveSeq> seq = std::move(live_[index]);
  live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(index));
  ASSERT_TRUE(manager_.Release(seq->table).ok());
  ASSERT_EQ(seq->table.num_blocks(), 0);
  if (restart) Start(std::move(seq));  // Preempted: recompute from what is cached.
}

void BlockManagerPropertyTest::CheckInvariants() {
  const BlockPool& pool = manager_.pool();
  // Every (table, position) holding each block.
  std::vector<std::vector<std::pair<const LiveSeq*, int64_t>>> holders(kNumBlocks);
  for (const auto& seq : live_) {
    ASSERT_EQ(seq->table.num_tokens(), static_cast<int64_t>(seq->tokens.size()));
    for (int64_t j = 0; j < seq->table.num_blocks(); ++j) {
      holders[seq->table.block_ids()[j]].push_back({seq.get(), j});
    }
  }
  int64_t used = 0, cached_free = 0, registered = 0;
  for (int32_t b = 0; b < kNumBlocks; ++b) {
    ASSERT_EQ(pool.RefCount(b), static_cast<int32_t>(holders[b].size())) << "block " << b;
    used += pool.RefCount(b) > 0 ? 1 : 0;
    cached_free += pool.IsCachedFree(b) ? 1 : 0;
    registered += pool.Meta(b).has_hash ? 1 : 0;
    if (!GetParam().prefix_caching) {
      ASSERT_FALSE(pool.Meta(b).has_hash);
    }
    if (holders[b].size() < 2) continue;
    ASSERT_TRUE(pool.Meta(b).has_hash);
    const auto& [first, pos] = holders[b][0];
    const std::vector<int32_t> want(first->tokens.begin(),
                                    first->tokens.begin() + (pos + 1) * kBlockSize);
    for (const auto& [seq, j] : holders[b]) {
      ASSERT_EQ(j, pos) << "block " << b << " shared at different positions";
      ASSERT_EQ(seq->salt, first->salt);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), seq->tokens.begin()))
          << "block " << b << " shared by different contents";
    }
  }
  // The hash index holds exactly the registered blocks (evicted ones leave it).
  ASSERT_EQ(manager_.num_indexed_blocks(), registered);
  const CacheStats s = manager_.stats();
  ASSERT_EQ(s.blocks_total, kNumBlocks);
  ASSERT_EQ(s.blocks_used, used);
  ASSERT_EQ(s.blocks_cached_free, cached_free);
  ASSERT_EQ(s.blocks_free, kNumBlocks - used - cached_free);
  ASSERT_EQ(s.bytes_used, used * 64);
  ASSERT_EQ(s.prefix_queries, queries_);
  ASSERT_EQ(s.prefix_hits, hits_);
  ASSERT_EQ(s.evictions, evictions_);
}

void BlockManagerPropertyTest::RunOps() {
  for (int op = 0; op < kOps; ++op) {
    const int kind = Uniform(0, 99);
    if (live_.empty() || (kind < 25 && live_.size() < 10)) {
      auto seq = std::make_unique<LiveSeq>();
      seq->tokens = RandomTokens();
      const int salt = Uniform(0, 5);
      seq->salt = salt < 4 ? "" : (salt == 4 ? "a" : "b");
      Start(std::move(seq));
    } else {
      const size_t index = static_cast<size_t>(Uniform(0, static_cast<int>(live_.size()) - 1));
      if (kind < 60) {
        Compute(*live_[index]);
      } else if (kind < 80) {
        Decode(*live_[index]);
      } else {
        Release(index, /*restart=*/kind >= 92);
      }
    }
    if (HasFatalFailure()) return;
    CheckInvariants();
    if (HasFatalFailure()) return;
  }
}

TEST_P(BlockManagerPropertyTest, RandomOperationsKeepTheInvariants) {
  RunOps();
  ASSERT_FALSE(HasFatalFailure()) << "failed op";
  const CacheStats mid = manager_.stats();
  if (GetParam().prefix_caching) {
    // The run exercised what it is meant to.
    EXPECT_GT(mid.prefix_hits, 0);
    EXPECT_GT(mid.evictions, 0);
  }
  while (!live_.empty()) {
    Release(live_.size() - 1, /*restart=*/false);
    CheckInvariants();
    ASSERT_FALSE(HasFatalFailure());
  }
  // No leak: every block is free or cached free.
  const CacheStats end = manager_.stats();
  EXPECT_EQ(end.blocks_used, 0);
  EXPECT_EQ(end.blocks_free + end.blocks_cached_free, kNumBlocks);
}

INSTANTIATE_TEST_SUITE_P(Hashes, BlockManagerPropertyTest,
                         ::testing::Values(Params{true, nullptr}, Params{true, &WeakHash},
                                           Params{false, nullptr}),
                         [](const ::testing::TestParamInfo<Params>& info) {
                           if (!info.param.prefix_caching) return std::string("Disabled");
                           return std::string(info.param.hash_fn ? "WeakHash" : "RealHash");
                         });

}  // namespace
}  // namespace mla
