#include "engine/kv_cache/block_pool.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace mla {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_counts_(std::max(num_blocks, 0), 0), meta_(std::max(num_blocks, 0)) {
  free_.resize(ref_counts_.size());
  std::iota(free_.begin(), free_.end(), 0);
}

double BlockPool::Usage() const {
  if (num_blocks() == 0) return 0.0;
  return static_cast<double>(num_used()) / num_blocks();
}

absl::StatusOr<std::vector<int32_t>> BlockPool::Allocate(int64_t n) {
  if (n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: cannot allocate ", n, " blocks"));
  }
  if (n > num_free()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache: need ", n, " blocks but only ", num_free(), " of ", num_blocks(), " are free"));
  }
  std::vector<int32_t> blocks(free_.begin(), free_.begin() + n);
  free_.erase(free_.begin(), free_.begin() + n);
  for (int32_t b : blocks) {
    ref_counts_[b] = 1;
    // Reusing a block overwrites its contents, so whatever it held is forgotten.
    meta_[b] = BlockMeta{};
  }
  return blocks;
}

absl::Status BlockPool::Check(std::span<const int32_t> blocks, bool for_free) const {
  for (int32_t b : blocks) {
    if (b < 0 || b >= num_blocks()) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV cache: block id ", b, " out of range [0, ", num_blocks(), ")"));
    }
    if (ref_counts_[b] == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("KV cache: block ", b,
                       for_free ? " freed while not allocated (double free?)"
                                : " referenced while not allocated"));
    }
  }
  if (!for_free || blocks.size() < 2) return absl::OkStatus();
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
  MLA_RETURN_IF_ERROR(Check(blocks, /*for_free=*/true));
  for (int32_t b : blocks) {
    if (--ref_counts_[b] == 0) free_.push_back(b);
  }
  return absl::OkStatus();
}

absl::Status BlockPool::AddRef(std::span<const int32_t> blocks) {
  MLA_RETURN_IF_ERROR(Check(blocks, /*for_free=*/false));
  for (int32_t b : blocks) ++ref_counts_[b];
  return absl::OkStatus();
}

}  // namespace mla
