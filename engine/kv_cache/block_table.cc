#include "engine/kv_cache/block_table.h"

#include <span>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mla {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t BlockTable::BlocksNeeded(int64_t new_tokens) const {
  const int64_t want = CeilDiv(num_tokens_ + new_tokens, block_size_);
  return want > num_blocks() ? want - num_blocks() : 0;
}

absl::Status BlockTable::Append(int64_t new_tokens, BlockPool& pool) {
  if (new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block table: cannot append ", new_tokens, " tokens"));
  }
  MLA_ASSIGN_OR_RETURN(std::vector<int32_t> blocks, pool.Allocate(BlocksNeeded(new_tokens)));
  block_ids_.insert(block_ids_.end(), blocks.begin(), blocks.end());
  num_tokens_ += new_tokens;
  return absl::OkStatus();
}

absl::Status BlockTable::Truncate(int64_t num_tokens, BlockPool& pool) {
  if (num_tokens < 0 || num_tokens > num_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("block table: cannot truncate to ", num_tokens,
                                                   " tokens (have ", num_tokens_, ")"));
  }
  const int64_t keep = CeilDiv(num_tokens, block_size_);
  const std::span<const int32_t> dropped(block_ids_.data() + keep, block_ids_.size() - keep);
  MLA_RETURN_IF_ERROR(pool.Free(dropped));
  block_ids_.resize(keep);
  num_tokens_ = num_tokens;
  return absl::OkStatus();
}

absl::Status BlockTable::Release(BlockPool& pool) {
  const absl::Status status = pool.Free(block_ids_);
  block_ids_.clear();
  num_tokens_ = 0;
  return status;
}

}  // namespace mla
