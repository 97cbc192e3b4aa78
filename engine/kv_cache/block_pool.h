// Host bookkeeping for the blocks of the KV cache. The pool knows blocks, never sequences
// (nano-vllm's split): it hands out block ids, counts references and takes them back.
// Where the bytes of a block live (host, device, later disk) is LatentCache's business.
//
// Allocation order is deterministic: the free list is a FIFO queue that starts as
// 0, 1, ..., num_blocks-1, and a freed block joins its back. A fresh pool therefore hands
// out the lowest ids first, and a block that was freed long ago is reused before one freed
// just now. That is the least-recently-used order the prefix cache will want: a freed
// block keeps its contents (and later its hash) as long as possible, so a new request
// sharing the prefix can still find it.
//
// Not thread-safe: the engine loop thread owns the pool.
#ifndef MLA_ENGINE_KV_CACHE_BLOCK_POOL_H_
#define MLA_ENGINE_KV_CACHE_BLOCK_POOL_H_

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mla {

// The identity of a block's contents, separate from where its bytes are stored. Unused
// until prefix caching lands: then a full block records the chained hash of its tokens
// (hash(parent_hash, token ids)), and the token ids themselves so that a hit can be
// confirmed by comparing tokens. Cache tiers (device → host → disk) key on the same hash.
struct BlockMeta {
  bool has_hash = false;
  uint64_t hash = 0;
  int32_t num_tokens = 0;  // Tokens of the block covered by `hash` (block_size when full).
};

class BlockPool {
 public:
  // `num_blocks` must be >= 0; a pool of 0 blocks refuses every non-empty allocation.
  explicit BlockPool(int32_t num_blocks);

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  BlockPool(BlockPool&&) = default;
  BlockPool& operator=(BlockPool&&) = default;

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_blocks() - num_free(); }
  // Fraction of blocks in use, 0 for an empty pool (vLLM's kv_cache_usage_perc).
  double Usage() const;

  bool CanAllocate(int64_t n) const { return n >= 0 && n <= num_free(); }

  // Takes `n` blocks off the free list, each with reference count 1. All or nothing: when
  // fewer than `n` are free, returns RESOURCE_EXHAUSTED naming both numbers and changes
  // nothing. n == 0 returns an empty vector.
  absl::StatusOr<std::vector<int32_t>> Allocate(int64_t n);

  // Drops one reference per listed id (an id listed twice drops two). A block whose count
  // reaches zero returns to the back of the free list. Every id is checked before any
  // count changes: an id out of range (INVALID_ARGUMENT) or freed more often than it is
  // referenced (FAILED_PRECONDITION, e.g. a double free) leaves the pool untouched.
  absl::Status Free(std::span<const int32_t> blocks);

  // Adds one reference per listed id (sharing a block between sequences). The ids must
  // be allocated; checked before any change, like Free.
  absl::Status AddRef(std::span<const int32_t> blocks);

  // 0 for a free block. Requires 0 <= block < num_blocks().
  int32_t RefCount(int32_t block) const { return ref_counts_[block]; }
  const BlockMeta& Meta(int32_t block) const { return meta_[block]; }

 private:
  // Checks that every id is in range and, when `for_free`, that no id is listed more
  // often than it is referenced; otherwise that every id is allocated.
  absl::Status Check(std::span<const int32_t> blocks, bool for_free) const;

  std::vector<int32_t> ref_counts_;
  std::vector<BlockMeta> meta_;
  std::deque<int32_t> free_;
};

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_BLOCK_POOL_H_
