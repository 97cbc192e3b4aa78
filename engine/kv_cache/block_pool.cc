#include "engine/kv_cache/block_pool.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mla {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_counts_(std::max(num_blocks, 0), 0),
      meta_(std::max(num_blocks, 0)),
      lru_prev_(std::max(num_blocks, 0), -1),
      lru_next_(std::max(num_blocks, 0), -1) {
  free_.resize(ref_counts_.size());
  std::iota(free_.begin(), free_.end(), 0);
}

double BlockPool::Usage() const {
  if (num_blocks() == 0) return 0.0;
  return static_cast<double>(num_used()) / num_blocks();
}

void BlockPool::LruPushBack(int32_t block) {
  lru_prev_[block] = lru_tail_;
  lru_next_[block] = -1;
  if (lru_tail_ >= 0) {
    lru_next_[lru_tail_] = block;
  } else {
    lru_head_ = block;
  }
  lru_tail_ = block;
  ++num_cached_free_;
}

void BlockPool::LruRemove(int32_t block) {
  const int32_t prev = lru_prev_[block];
  const int32_t next = lru_next_[block];
  (prev >= 0 ? lru_next_[prev] : lru_head_) = next;
  (next >= 0 ? lru_prev_[next] : lru_tail_) = prev;
  lru_prev_[block] = lru_next_[block] = -1;
  --num_cached_free_;
}

absl::StatusOr<std::vector<int32_t>> BlockPool::Allocate(int64_t n) { return Allocate(n, nullptr); }

absl::StatusOr<std::vector<int32_t>> BlockPool::Allocate(int64_t n, std::vector<Evicted>* evicted) {
  if (n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: cannot allocate ", n, " blocks"));
  }
  if (n > num_free()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache: need ", n, " blocks but only ", num_free(), " of ", num_blocks(), " are free"));
  }
  const int64_t plain = std::min<int64_t>(n, static_cast<int64_t>(free_.size()));
  std::vector<int32_t> blocks(free_.begin(), free_.begin() + plain);
  free_.erase(free_.begin(), free_.begin() + plain);
  while (static_cast<int64_t>(blocks.size()) < n) {
    const int32_t b = lru_head_;
    LruRemove(b);
    if (evicted != nullptr) evicted->push_back(Evicted{b, meta_[b].hash});
    blocks.push_back(b);
  }
  for (int32_t b : blocks) {
    ref_counts_[b] = 1;
    // Reusing a block overwrites its contents, so whatever it held is forgotten.
    meta_[b] = BlockMeta{};
  }
  return blocks;
}

absl::Status BlockPool::Check(std::span<const int32_t> blocks, CheckMode mode) const {
  for (int32_t b : blocks) {
    if (b < 0 || b >= num_blocks()) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV cache: block id ", b, " out of range [0, ", num_blocks(), ")"));
    }
    if (ref_counts_[b] == 0 && !(mode == CheckMode::kAcquire && meta_[b].has_hash)) {
      return absl::FailedPreconditionError(
          absl::StrCat("KV cache: block ", b,
                       mode == CheckMode::kFree ? " freed while not allocated (double free?)"
                                                : " referenced while not allocated"));
    }
  }
  if (mode != CheckMode::kFree || blocks.size() < 2) return absl::OkStatus();
  // The same id may be listed several times; it must not be listed more often than
  // it is referenced.
  std::vector<int32_t> sorted(blocks.begin(), blocks.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    if (static_cast<int64_t>(j - i) > ref_counts_[sorted[i]]) {
      return absl::FailedPreconditionError(absl::StrCat("KV cache: block ", sorted[i], " freed ",
                                                        j - i, " times but has only ",
                                                        ref_counts_[sorted[i]], " reference(s)"));
    }
    i = j;
  }
  return absl::OkStatus();
}

absl::Status BlockPool::Free(std::span<const int32_t> blocks) {
  MLA_RETURN_IF_ERROR(Check(blocks, CheckMode::kFree));
  for (int32_t b : blocks) {
    if (--ref_counts_[b] > 0) continue;
    if (meta_[b].has_hash) {
      LruPushBack(b);
    } else {
      free_.push_back(b);
    }
  }
  return absl::OkStatus();
}

absl::Status BlockPool::AddRef(std::span<const int32_t> blocks) {
  MLA_RETURN_IF_ERROR(Check(blocks, CheckMode::kAddRef));
  for (int32_t b : blocks) ++ref_counts_[b];
  return absl::OkStatus();
}

absl::Status BlockPool::Acquire(std::span<const int32_t> blocks) {
  MLA_RETURN_IF_ERROR(Check(blocks, CheckMode::kAcquire));
  for (int32_t b : blocks) {
    if (ref_counts_[b] == 0) LruRemove(b);
    ++ref_counts_[b];
  }
  return absl::OkStatus();
}

absl::Status BlockPool::SetMeta(int32_t block, BlockMeta meta) {
  if (block < 0 || block >= num_blocks()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: block id ", block, " out of range [0, ", num_blocks(), ")"));
  }
  if (ref_counts_[block] == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV cache: identity set on free block ", block));
  }
  meta_[block] = std::move(meta);
  return absl::OkStatus();
}

}  // namespace mla
