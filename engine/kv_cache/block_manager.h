// Block allocation for sequences with prefix caching (nano-vllm's block manager, vLLM's
// automatic prefix caching), on top of BlockPool.
//
// Every FULL block of a sequence's tokens has a chained hash
//   h_0 = ChainedBlockHash(kRootBlockHash, salt, tokens[0, B))
//   h_i = ChainedBlockHash(h_{i-1}, salt, tokens[i*B, (i+1)*B))
// (B = block_size). Once a step has written a full block, CommitFullBlocks registers it
// under its hash; a later sequence whose tokens start the same way (same salt) shares
// the block instead of recomputing it. The hash only finds candidates: a hit must also
// match the stored salt and token ids and the parent block's content id (see BlockMeta),
// so no hash collision, at any depth of the chain, can ever share a block.
//
// Block life cycle: fresh (allocated, count >= 1, no identity) → registered (identity
// set, shareable) → count 0: cached free (still findable, back of an LRU list) or, never
// registered, plain free. Allocation uses plain free blocks first, then evicts cached-free
// ones least recently freed first. A released table frees its blocks last-to-first so
// that a prefix's tail is evicted before its head (a chain is useless without its head).
//
// Prefix-cache counters are in tokens: a successful Allocate adds tokens.size() to
// `prefix_queries` and the cached tokens it returns to `prefix_hits` (vLLM's
// definition). CanAllocate and failed calls count nothing; nor does anything when prefix
// caching is disabled.
//
// Not thread-safe: the engine loop thread owns the manager and every table it fills.
#ifndef MLA_ENGINE_KV_CACHE_BLOCK_MANAGER_H_
#define MLA_ENGINE_KV_CACHE_BLOCK_MANAGER_H_

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/block_table.h"

namespace mla {

// Parent hash of a sequence's first block.
inline constexpr uint64_t kRootBlockHash = 0;

// The block hash: 64-bit FNV-1a over these little-endian bytes, in order:
//   parent_hash (8 bytes), salt.size() (8 bytes), the salt's bytes,
//   tokens.size() (8 bytes), each token id as a 32-bit value (4 bytes).
// Deterministic across runs, builds and machines, so that a disk tier may key on it.
// Not collision resistant; the prefix cache does not rely on it being so.
uint64_t ChainedBlockHash(uint64_t parent_hash, absl::string_view salt,
                          std::span<const int32_t> tokens);

using BlockHashFn = uint64_t (*)(uint64_t parent_hash, absl::string_view salt,
                                 std::span<const int32_t> tokens);

struct BlockManagerConfig {
  int32_t num_blocks = 0;
  int block_size = 16;          // Tokens per block; must match the cache layout's.
  int64_t bytes_per_block = 0;  // Cache bytes of one block (all layers), for the stats.
  bool enable_prefix_caching = true;
  // The block hash; null means ChainedBlockHash. Tests inject a colliding one.
  BlockHashFn hash_fn = nullptr;
};

struct CacheStats {
  // blocks_total == blocks_used + blocks_cached_free + blocks_free.
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;         // Referenced by at least one table.
  int64_t blocks_cached_free = 0;  // Unreferenced but still holding a findable prefix.
  int64_t blocks_free = 0;         // Unreferenced and empty.
  int64_t bytes_total = 0;
  int64_t bytes_used = 0;      // blocks_used * bytes_per_block.
  int64_t prefix_queries = 0;  // Tokens looked up (see the file comment).
  int64_t prefix_hits = 0;     // Tokens served from the cache.
  int64_t evictions = 0;       // Cached-free blocks reused for other contents.
  int64_t preemptions = 0;     // Always 0 here: the scheduler counts and fills it.

  double PrefixHitRate() const {
    return prefix_queries > 0 ? static_cast<double>(prefix_hits) / prefix_queries : 0.0;
  }
  double Usage() const {
    return blocks_total > 0 ? static_cast<double>(blocks_used) / blocks_total : 0.0;
  }
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerConfig& config);

  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;
  BlockManager(BlockManager&&) = default;
  BlockManager& operator=(BlockManager&&) = default;

  int block_size() const { return block_size_; }
  bool prefix_caching_enabled() const { return enable_prefix_caching_; }
  // For inspection (reference counts, identities); all changes go through the manager.
  const BlockPool& pool() const { return pool_; }
  // Entries of the hash index: the registered blocks, in use or cached free.
  int64_t num_indexed_blocks() const { return static_cast<int64_t>(index_.size()); }

  // Tokens of `tokens` that Allocate would serve from the cache right now: the longest
  // chain of registered blocks matching a prefix, capped at (tokens.size() - 1) / B
  // blocks so that at least one token is left to compute (its logits are needed).
  int64_t CachedPrefixTokens(std::span<const int32_t> tokens, absl::string_view salt) const;

  // Whether Allocate(empty table, tokens, reserve_tokens, salt) would succeed.
  bool CanAllocate(std::span<const int32_t> tokens, int64_t reserve_tokens,
                   absl::string_view salt) const;

  // Fills the EMPTY `table` of a sequence starting (or restarting after preemption) with
  // `tokens` known: shares the cached prefix blocks (taking a reference on each; a
  // cached-free one leaves the LRU list), then allocates fresh blocks so that the table
  // holds max(reserve_tokens, cached) tokens. Returns the number of cached tokens (a
  // multiple of B): the sequence computes from there on. All or nothing: on
  // RESOURCE_EXHAUSTED (message naming the numbers) table and pool are unchanged.
  // FAILED_PRECONDITION for a non-empty table, INVALID_ARGUMENT for a negative reserve
  // or a table whose block size differs.
  absl::StatusOr<int64_t> Allocate(BlockTable& table, std::span<const int32_t> tokens,
                                   int64_t reserve_tokens, absl::string_view salt);

  // Whether Append(table, new_tokens) would succeed.
  bool CanAppend(const BlockTable& table, int64_t new_tokens) const;
  // Grows the table by `new_tokens` tokens (decode), allocating the blocks needed (which
  // may evict cached-free blocks). All or nothing.
  absl::Status Append(BlockTable& table, int64_t new_tokens);

  // Shrinks the table to `num_tokens` (rejected speculative tokens), freeing blocks left
  // empty. FAILED_PRECONDITION when the cut falls inside a registered block: its tokens
  // are shared and must not be overwritten.
  absl::Status Truncate(BlockTable& table, int64_t num_tokens);

  // A full block that CommitFullBlocks registered: its place in the sequence (block
  // `index` holds tokens [index·B, (index+1)·B)), its id and the chain's hashes.
  struct CommittedBlock {
    int64_t index = 0;
    int32_t block = -1;
    uint64_t parent_hash = 0;
    uint64_t hash = 0;
  };

  // After a step wrote tokens [0, num_computed) of `tokens` into the table's blocks:
  // registers every block that is now full and computed and not yet registered, so that
  // later sequences can share it. `tokens` and `salt` must be those the table was
  // allocated for; num_computed is clamped to the table's tokens. A block already
  // registered keeps its identity. No-op when prefix caching is disabled. When
  // `committed` is given, the blocks registered by this call are appended to it (the
  // disk tier saves them).
  void CommitFullBlocks(const BlockTable& table, std::span<const int32_t> tokens,
                        int64_t num_computed, absl::string_view salt,
                        std::vector<CommittedBlock>* committed = nullptr);

  // Disk tier support. The full blocks of `tokens` that a later Allocate could share
  // (capped as CachedPrefixTokens is) but the pool lacks, from the first block after
  // the cached prefix, with the hashes a tier keys them by.
  std::vector<CommittedBlock> BlocksAfterCachedPrefix(std::span<const int32_t> tokens,
                                                      absl::string_view salt) const;
  // Allocates a block for block `index` of `tokens` and registers it as cached free, as if
  // a finished sequence had computed it: the next Allocate of these tokens shares it. The
  // blocks before it must be cached (BlocksAfterCachedPrefix's first entry, then the one
  // after it, ...). The caller fills its storage before the next forward step.
  // RESOURCE_EXHAUSTED when no block is allocatable, FAILED_PRECONDITION when the chain
  // before `index` is not cached.
  absl::StatusOr<int32_t> AddCachedBlock(std::span<const int32_t> tokens, absl::string_view salt,
                                         int64_t index);

  // Drops the table's references (last block first); the table is empty afterwards,
  // also on error (the pool refused an id it did not hand out).
  absl::Status Release(BlockTable& table);

  CacheStats stats() const;

 private:
  struct PrefixMatch {
    std::vector<int32_t> blocks;  // Hit blocks, in order.
    int64_t num_cached_free = 0;  // How many of them are cached free (not referenced).
  };

  PrefixMatch FindCachedPrefix(std::span<const int32_t> tokens, absl::string_view salt) const;
  // A registered block with these hash, parent content id, salt and tokens, preferring
  // one in use (so that a cached-free copy stays free); -1 when there is none.
  int32_t FindBlock(uint64_t hash, uint64_t parent_content_id, absl::string_view salt,
                    std::span<const int32_t> tokens) const;
  // Allocates `n` blocks from the pool, dropping evicted blocks from the index.
  absl::StatusOr<std::vector<int32_t>> AllocateFresh(int64_t n);
  // Gives `block` its identity and indexes it.
  void Register(int32_t block, uint64_t hash, uint64_t parent_content_id, absl::string_view salt,
                std::span<const int32_t> tokens);
  void Unindex(uint64_t hash, int32_t block);

  int block_size_;
  int64_t bytes_per_block_;
  bool enable_prefix_caching_;
  BlockHashFn hash_fn_;
  BlockPool pool_;
  // Registered blocks (in use or cached free) by hash; several per hash when contents
  // collide or the same contents were computed twice.
  std::unordered_multimap<uint64_t, int32_t> index_;
  uint64_t next_content_id_ = 1;  // 0 means "no parent".
  int64_t prefix_queries_ = 0;
  int64_t prefix_hits_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_BLOCK_MANAGER_H_
