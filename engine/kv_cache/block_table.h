// The blocks of one sequence: which pool blocks hold its tokens, in order, and how many
// tokens it has. Token t lives in block block_ids()[t / block_size], slot t % block_size.
// Plain state owned by the sequence; growth and release go through a BlockPool, or through
// a BlockManager (which fills the table itself to share cached prefix blocks).
#ifndef MLA_ENGINE_KV_CACHE_BLOCK_TABLE_H_
#define MLA_ENGINE_KV_CACHE_BLOCK_TABLE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache/block_pool.h"

namespace mla {

class BlockTable {
 public:
  struct Slot {
    int32_t block;   // Pool block id.
    int32_t offset;  // Token slot inside the block, [0, block_size).
  };

  // `block_size` must be positive and match the cache layout's.
  explicit BlockTable(int block_size) : block_size_(block_size) {}

  int block_size() const { return block_size_; }
  // Tokens accounted for (written, or reserved for this step's writes).
  int64_t num_tokens() const { return num_tokens_; }
  const std::vector<int32_t>& block_ids() const { return block_ids_; }
  int64_t num_blocks() const { return static_cast<int64_t>(block_ids_.size()); }
  // Tokens the current blocks can hold.
  int64_t capacity() const { return num_blocks() * block_size_; }

  // Blocks to allocate so that `new_tokens` more tokens fit (0 when they fit already).
  int64_t BlocksNeeded(int64_t new_tokens) const;

  // Grows the sequence by `new_tokens` tokens, allocating from `pool` only the blocks
  // needed. All or nothing: on RESOURCE_EXHAUSTED nothing changes. The tokens' cache
  // entries are written separately (LatentCache::WriteTokens).
  absl::Status Append(int64_t new_tokens, BlockPool& pool);

  // Shrinks the sequence to `num_tokens` tokens (rejected speculative tokens), returning
  // blocks that no longer hold any token to `pool`.
  absl::Status Truncate(int64_t num_tokens, BlockPool& pool);

  // Returns every block to `pool`; the table is empty afterwards (also on error, when
  // the pool refused an id: the table never keeps ids it cannot vouch for).
  absl::Status Release(BlockPool& pool);

  // Where token `pos` lives. Requires 0 <= pos < capacity().
  Slot SlotOf(int64_t pos) const {
    return Slot{block_ids_[pos / block_size_], static_cast<int32_t>(pos % block_size_)};
  }

 private:
  friend class BlockManager;

  int block_size_;
  int64_t num_tokens_ = 0;
  std::vector<int32_t> block_ids_;
};

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_BLOCK_TABLE_H_
