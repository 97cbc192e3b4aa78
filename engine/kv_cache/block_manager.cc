#include "engine/kv_cache/block_manager.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mla {
namespace {

constexpr uint64_t kFnvOffsetBasis = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

// FNV-1a over the low `bytes` bytes of `value`, least significant first.
void FnvMix(uint64_t& h, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    h ^= (value >> (8 * i)) & 0xff;
    h *= kFnvPrime;
  }
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool SameTokens(const std::vector<int32_t>& stored, std::span<const int32_t> tokens) {
  return std::equal(stored.begin(), stored.end(), tokens.begin(), tokens.end());
}

}  // namespace

uint64_t ChainedBlockHash(uint64_t parent_hash, absl::string_view salt,
                          std::span<const int32_t> tokens) {
  uint64_t h = kFnvOffsetBasis;
  FnvMix(h, parent_hash, 8);
  FnvMix(h, salt.size(), 8);
  for (char c : salt) FnvMix(h, static_cast<uint8_t>(c), 1);
  FnvMix(h, tokens.size(), 8);
  for (int32_t t : tokens) FnvMix(h, static_cast<uint32_t>(t), 4);
  return h;
}

BlockManager::BlockManager(const BlockManagerConfig& config)
    : block_size_(std::max(config.block_size, 1)),
      bytes_per_block_(config.bytes_per_block),
      enable_prefix_caching_(config.enable_prefix_caching),
      hash_fn_(config.hash_fn != nullptr ? config.hash_fn : &ChainedBlockHash),
      pool_(config.num_blocks) {}

int32_t BlockManager::FindBlock(uint64_t hash, uint64_t parent_content_id, absl::string_view salt,
                                std::span<const int32_t> tokens) const {
  int32_t found = -1;
  auto [begin, end] = index_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    const BlockMeta& meta = pool_.Meta(it->second);
    if (!meta.has_hash || meta.hash != hash || meta.parent_content_id != parent_content_id ||
        meta.salt != salt || !SameTokens(meta.tokens, tokens)) {
      continue;  // A hash collision: different contents.
    }
    if (pool_.RefCount(it->second) > 0) return it->second;
    if (found < 0) found = it->second;
  }
  return found;
}

BlockManager::PrefixMatch BlockManager::FindCachedPrefix(std::span<const int32_t> tokens,
                                                         absl::string_view salt) const {
  PrefixMatch match;
  if (!enable_prefix_caching_ || tokens.empty()) return match;
  // At least the last token is computed: its logits are needed.
  const size_t max_blocks = (tokens.size() - 1) / block_size_;
  uint64_t parent_hash = kRootBlockHash;
  uint64_t parent_id = 0;
  for (size_t i = 0; i < max_blocks; ++i) {
    const std::span<const int32_t> chunk = tokens.subspan(i * block_size_, block_size_);
    const uint64_t hash = hash_fn_(parent_hash, salt, chunk);
    const int32_t block = FindBlock(hash, parent_id, salt, chunk);
    if (block < 0) break;
    match.blocks.push_back(block);
    if (pool_.RefCount(block) == 0) ++match.num_cached_free;
    parent_hash = hash;
    parent_id = pool_.Meta(block).content_id;
  }
  return match;
}

int64_t BlockManager::CachedPrefixTokens(std::span<const int32_t> tokens,
                                         absl::string_view salt) const {
  return static_cast<int64_t>(FindCachedPrefix(tokens, salt).blocks.size()) * block_size_;
}

bool BlockManager::CanAllocate(std::span<const int32_t> tokens, int64_t reserve_tokens,
                               absl::string_view salt) const {
  if (reserve_tokens < 0) return false;
  const PrefixMatch match = FindCachedPrefix(tokens, salt);
  const int64_t hits = static_cast<int64_t>(match.blocks.size());
  const int64_t fresh = std::max(CeilDiv(reserve_tokens, block_size_) - hits, int64_t{0});
  return fresh <= pool_.num_free() - match.num_cached_free;
}

absl::StatusOr<int64_t> BlockManager::Allocate(BlockTable& table, std::span<const int32_t> tokens,
                                               int64_t reserve_tokens, absl::string_view salt) {
  if (table.num_blocks() != 0 || table.num_tokens() != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "KV cache: Allocate needs an empty block table (it has ", table.num_blocks(), " blocks)"));
  }
  if (table.block_size() != block_size_ || reserve_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache: cannot reserve ", reserve_tokens, " tokens in a table of block size ",
        table.block_size(), " (cache block size ", block_size_, ")"));
  }
  PrefixMatch match = FindCachedPrefix(tokens, salt);
  const int64_t hits = static_cast<int64_t>(match.blocks.size());
  const int64_t cached = hits * block_size_;
  const int64_t total = std::max(reserve_tokens, cached);
  const int64_t fresh = CeilDiv(total, block_size_) - hits;
  // Hit blocks that are cached free stop being allocatable once taken.
  const int64_t available = pool_.num_free() - match.num_cached_free;
  if (fresh > available) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache: need ", fresh, " new blocks for ", total, " tokens (", cached,
                     " cached) but only ", available, " of ", pool_.num_blocks(), " are free"));
  }
  // Take the hits first so that the fresh allocation cannot evict them.
  MLA_RETURN_IF_ERROR(pool_.Acquire(match.blocks));
  absl::StatusOr<std::vector<int32_t>> blocks = AllocateFresh(fresh);
  if (!blocks.ok()) {
    (void)pool_.Free(match.blocks);  // Unreachable after the check above.
    return blocks.status();
  }
  table.block_ids_ = std::move(match.blocks);
  table.block_ids_.insert(table.block_ids_.end(), blocks->begin(), blocks->end());
  table.num_tokens_ = total;
  if (enable_prefix_caching_) {
    prefix_queries_ += static_cast<int64_t>(tokens.size());
    prefix_hits_ += cached;
  }
  return cached;
}

absl::StatusOr<std::vector<int32_t>> BlockManager::AllocateFresh(int64_t n) {
  std::vector<BlockPool::Evicted> evicted;
  MLA_ASSIGN_OR_RETURN(std::vector<int32_t> blocks, pool_.Allocate(n, &evicted));
  for (const BlockPool::Evicted& e : evicted) Unindex(e.hash, e.block);
  evictions_ += static_cast<int64_t>(evicted.size());
  return blocks;
}

void BlockManager::Unindex(uint64_t hash, int32_t block) {
  auto [begin, end] = index_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    if (it->second == block) {
      index_.erase(it);
      return;
    }
  }
}

bool BlockManager::CanAppend(const BlockTable& table, int64_t new_tokens) const {
  return new_tokens >= 0 && pool_.CanAllocate(table.BlocksNeeded(new_tokens));
}

absl::Status BlockManager::Append(BlockTable& table, int64_t new_tokens) {
  if (new_tokens < 0 || table.block_size() != block_size_) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: cannot append ", new_tokens,
                                                   " tokens to a table of block size ",
                                                   table.block_size()));
  }
  MLA_ASSIGN_OR_RETURN(std::vector<int32_t> blocks, AllocateFresh(table.BlocksNeeded(new_tokens)));
  table.block_ids_.insert(table.block_ids_.end(), blocks.begin(), blocks.end());
  table.num_tokens_ += new_tokens;
  return absl::OkStatus();
}

absl::Status BlockManager::Truncate(BlockTable& table, int64_t num_tokens) {
  if (num_tokens >= 0 && num_tokens < table.num_tokens() && num_tokens % block_size_ != 0 &&
      pool_.Meta(table.block_ids()[num_tokens / block_size_]).has_hash) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV cache: cannot truncate to ", num_tokens, " tokens inside a shared block"));
  }
  // Dropped blocks never need eviction, so the pool can free them directly.
  return table.Truncate(num_tokens, pool_);
}

void BlockManager::Register(int32_t block, uint64_t hash, uint64_t parent_content_id,
                            absl::string_view salt, std::span<const int32_t> tokens) {
  // The same contents computed earlier into another block share its content id, so
  // that children registered under either block chain on to both.
  const int32_t twin = FindBlock(hash, parent_content_id, salt, tokens);
  BlockMeta meta;
  meta.has_hash = true;
  meta.hash = hash;
  meta.num_tokens = static_cast<int32_t>(tokens.size());
  meta.content_id = twin >= 0 ? pool_.Meta(twin).content_id : next_content_id_++;
  meta.parent_content_id = parent_content_id;
  meta.salt = std::string(salt);
  meta.tokens.assign(tokens.begin(), tokens.end());
  if (pool_.SetMeta(block, std::move(meta)).ok()) index_.emplace(hash, block);
}

void BlockManager::CommitFullBlocks(const BlockTable& table, std::span<const int32_t> tokens,
                                    int64_t num_computed, absl::string_view salt,
                                    std::vector<CommittedBlock>* committed) {
  if (!enable_prefix_caching_ || table.block_size() != block_size_) return;
  const int64_t computed =
      std::min({num_computed, static_cast<int64_t>(tokens.size()), table.num_tokens()});
  const int64_t full = std::min(computed / block_size_, table.num_blocks());
  const std::vector<int32_t>& ids = table.block_ids();
  // Registered blocks form a prefix of the table (registration goes in order and a
  // referenced block keeps its identity), so the first one to register is found in
  // O(log n) instead of rehashing the whole sequence every step.
  const auto first = std::partition_point(ids.begin(), ids.begin() + full,
                                          [this](int32_t b) { return pool_.Meta(b).has_hash; });
  int64_t i = first - ids.begin();
  uint64_t parent_hash = i > 0 ? pool_.Meta(ids[i - 1]).hash : kRootBlockHash;
  uint64_t parent_id = i > 0 ? pool_.Meta(ids[i - 1]).content_id : 0;
  for (; i < full; ++i) {
    const std::span<const int32_t> chunk = tokens.subspan(i * block_size_, block_size_);
    if (!pool_.Meta(ids[i]).has_hash) {
      const uint64_t hash = hash_fn_(parent_hash, salt, chunk);
      Register(ids[i], hash, parent_id, salt, chunk);
      if (committed != nullptr) committed->push_back({i, ids[i], parent_hash, hash});
    }
    parent_hash = pool_.Meta(ids[i]).hash;
    parent_id = pool_.Meta(ids[i]).content_id;
  }
}

std::vector<BlockManager::CommittedBlock> BlockManager::BlocksAfterCachedPrefix(
    std::span<const int32_t> tokens, absl::string_view salt) const {
  std::vector<CommittedBlock> missing;
  if (!enable_prefix_caching_ || tokens.empty()) return missing;
  const PrefixMatch match = FindCachedPrefix(tokens, salt);
  const int64_t max_blocks = static_cast<int64_t>(tokens.size() - 1) / block_size_;
  int64_t i = static_cast<int64_t>(match.blocks.size());
  uint64_t parent_hash = i > 0 ? pool_.Meta(match.blocks.back()).hash : kRootBlockHash;
  for (; i < max_blocks; ++i) {
    const uint64_t hash = hash_fn_(parent_hash, salt, tokens.subspan(i * block_size_, block_size_));
    missing.push_back({i, -1, parent_hash, hash});
    parent_hash = hash;
  }
  return missing;
}

absl::StatusOr<int32_t> BlockManager::AddCachedBlock(std::span<const int32_t> tokens,
                                                     absl::string_view salt, int64_t index) {
  const PrefixMatch match = FindCachedPrefix(tokens, salt);
  if (!enable_prefix_caching_ || static_cast<int64_t>(match.blocks.size()) != index ||
      (index + 1) * block_size_ > static_cast<int64_t>(tokens.size())) {
    return absl::FailedPreconditionError(absl::StrCat("KV cache: block ", index,
                                                      " cannot follow a cached prefix of ",
                                                      match.blocks.size(), " blocks"));
  }
  // Keep the prefix out of the eviction that the allocation may do.
  MLA_RETURN_IF_ERROR(pool_.Acquire(match.blocks));
  absl::StatusOr<std::vector<int32_t>> fresh = AllocateFresh(1);
  MLA_RETURN_IF_ERROR(pool_.Free(std::vector<int32_t>(match.blocks.rbegin(), match.blocks.rend())));
  MLA_RETURN_IF_ERROR(fresh.status());
  const int32_t block = fresh->front();
  const uint64_t parent_hash = index > 0 ? pool_.Meta(match.blocks.back()).hash : kRootBlockHash;
  const uint64_t parent_id = index > 0 ? pool_.Meta(match.blocks.back()).content_id : 0;
  const std::span<const int32_t> chunk = tokens.subspan(index * block_size_, block_size_);
  Register(block, hash_fn_(parent_hash, salt, chunk), parent_id, salt, chunk);
  MLA_RETURN_IF_ERROR(pool_.Free(std::span<const int32_t>(&block, 1)));
  return block;
}

absl::Status BlockManager::Release(BlockTable& table) {
  // Last block first: the LRU list then evicts a prefix's tail before its head.
  std::vector<int32_t> reversed(table.block_ids_.rbegin(), table.block_ids_.rend());
  table.block_ids_.clear();
  table.num_tokens_ = 0;
  return pool_.Free(reversed);
}

CacheStats BlockManager::stats() const {
  CacheStats s;
  s.blocks_total = pool_.num_blocks();
  s.blocks_used = pool_.num_used();
  s.blocks_cached_free = pool_.num_cached_free();
  s.blocks_free = pool_.num_free() - pool_.num_cached_free();
  s.bytes_total = s.blocks_total * bytes_per_block_;
  s.bytes_used = s.blocks_used * bytes_per_block_;
  s.prefix_queries = prefix_queries_;
  s.prefix_hits = prefix_hits_;
  s.evictions = evictions_;
  return s;
}

}  // namespace mla
