// Host bookkeeping for the blocks of the KV cache. The pool knows blocks, never sequences
// (nano-vllm's split): it hands out block ids, counts references and takes them back.
// Where the bytes of a block live (host, device, later disk) is LatentCache's business.
//
// A block with reference count 0 is in one of two free lists:
//  - plain free: its contents mean nothing. A FIFO queue that starts as 0, 1, ...,
//    num_blocks-1; a freed block joins its back, so a fresh pool hands out the lowest ids
//    first and allocation order is deterministic.
//  - cached free: it still carries an identity (BlockMeta with a hash, set by the prefix
//    cache through SetMeta), so a later request with the same prefix can take it back
//    with Acquire. An intrusive doubly linked list in least-recently-freed order.
// Allocate takes plain free blocks first and only then evicts cached-free ones, least
// recently freed first, dropping their identity. Every operation costs O(1) per listed
// block (Free also sorts its ids to catch duplicates); nothing scans the pool.
//
// Not thread-safe: the engine loop thread owns the pool.
#ifndef MLA_ENGINE_KV_CACHE_BLOCK_POOL_H_
#define MLA_ENGINE_KV_CACHE_BLOCK_POOL_H_

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mla {

// The identity of a block's contents, separate from where its bytes are stored. A full
// block registered by the prefix cache records the chained hash of its tokens
// (hash(parent_hash, salt, token ids)) and the token ids themselves, so that a hit can be
// confirmed by comparing tokens. Cache tiers (device → host → disk) key on the same hash.
struct BlockMeta {
  bool has_hash = false;
  uint64_t hash = 0;
  int32_t num_tokens = 0;  // Tokens of the block covered by `hash` (block_size when full).
  // Equal content ids mean equal contents: the same salt and the same tokens from the
  // sequence's start to this block's end. Assigned by the prefix cache, never reused, so
  // that chaining on it (instead of on the 64-bit hash) cannot be fooled by a collision.
  uint64_t content_id = 0;
  uint64_t parent_content_id = 0;  // 0 for a sequence's first block.
  std::string salt;
  std::vector<int32_t> tokens;  // The block's own token ids (num_tokens of them).
};

class BlockPool {
 public:
  // A cached-free block that Allocate reused: its identity is gone.
  struct Evicted {
    int32_t block;
    uint64_t hash;
  };

  // `num_blocks` must be >= 0; a pool of 0 blocks refuses every non-empty allocation.
  explicit BlockPool(int32_t num_blocks);

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  BlockPool(BlockPool&&) = default;
  BlockPool& operator=(BlockPool&&) = default;

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  // Blocks with reference count 0 (plain free and cached free): what Allocate can use.
  int32_t num_free() const { return static_cast<int32_t>(free_.size()) + num_cached_free_; }
  // Free blocks that keep an identity and can still be found by the prefix cache.
  int32_t num_cached_free() const { return num_cached_free_; }
  int32_t num_used() const { return num_blocks() - num_free(); }
  // Fraction of blocks in use, 0 for an empty pool (vLLM's kv_cache_usage_perc).
  double Usage() const;

  bool CanAllocate(int64_t n) const { return n >= 0 && n <= num_free(); }

  // Takes `n` blocks, each with reference count 1 and an empty identity: plain free ones
  // first, then cached-free ones, least recently freed first. All or nothing: when fewer
  // than `n` are free, returns RESOURCE_EXHAUSTED naming both numbers and changes
  // nothing. n == 0 returns an empty vector. When `evicted` is not null, every
  // cached-free block taken is appended to it (with the hash it lost).
  absl::StatusOr<std::vector<int32_t>> Allocate(int64_t n);
  absl::StatusOr<std::vector<int32_t>> Allocate(int64_t n, std::vector<Evicted>* evicted);

  // Drops one reference per listed id (an id listed twice drops two). A block whose count
  // reaches zero joins the back of the cached-free list when it has a hash, of the plain
  // free list otherwise. Every id is checked before any count changes: an id out of
  // range (INVALID_ARGUMENT) or freed more often than it is referenced
  // (FAILED_PRECONDITION, e.g. a double free) leaves the pool untouched.
  absl::Status Free(std::span<const int32_t> blocks);

  // Adds one reference per listed id (sharing a block between sequences). The ids must
  // be allocated; checked before any change, like Free.
  absl::Status AddRef(std::span<const int32_t> blocks);

  // Like AddRef, but a listed block may also be cached free: it leaves the cached-free
  // list with count 1 (a prefix-cache hit). A plain free block is refused
  // (FAILED_PRECONDITION: its contents mean nothing). Checked before any change.
  absl::Status Acquire(std::span<const int32_t> blocks);

  // Sets the identity of an allocated block (FAILED_PRECONDITION when free,
  // INVALID_ARGUMENT when out of range).
  absl::Status SetMeta(int32_t block, BlockMeta meta);

  // 0 for a free block. Requires 0 <= block < num_blocks().
  int32_t RefCount(int32_t block) const { return ref_counts_[block]; }
  const BlockMeta& Meta(int32_t block) const { return meta_[block]; }
  bool IsCachedFree(int32_t block) const {
    return ref_counts_[block] == 0 && meta_[block].has_hash;
  }

 private:
  enum class CheckMode { kFree, kAddRef, kAcquire };

  // Checks that every id is in range and, for kFree, that no id is listed more often than
  // it is referenced; for kAddRef that every id is allocated; for kAcquire that every id
  // is allocated or cached free.
  absl::Status Check(std::span<const int32_t> blocks, CheckMode mode) const;
  void LruPushBack(int32_t block);
  void LruRemove(int32_t block);

  std::vector<int32_t> ref_counts_;
  std::vector<BlockMeta> meta_;
  std::deque<int32_t> free_;  // Plain free blocks, FIFO.
  // Cached-free blocks as an intrusive list: front = least recently freed. -1 ends it.
  std::vector<int32_t> lru_prev_;
  std::vector<int32_t> lru_next_;
  int32_t lru_head_ = -1;
  int32_t lru_tail_ = -1;
  int32_t num_cached_free_ = 0;
};

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_BLOCK_POOL_H_
