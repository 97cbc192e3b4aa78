#include "engine/backend/cuda/host/cache_slots.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace mla::cuda {

absl::Status AppendCacheSlots(absl::Span<const int32_t> block_table, int block_size,
                              int64_t num_blocks, int64_t first_pos, int64_t count,
                              std::vector<int32_t>* slots) {
  if (block_size < 1 || num_blocks < 0 || first_pos < 0 || count < 0) {
    return absl::InvalidArgumentError("AppendCacheSlots: negative position/count or bad sizes");
  }
  if (num_blocks * block_size > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("AppendCacheSlots: slot numbers must fit in int32");
  }
  const int64_t end = first_pos + count;
  if (end > static_cast<int64_t>(block_table.size()) * block_size) {
    return absl::InvalidArgumentError(absl::StrCat("AppendCacheSlots: position ", end - 1,
                                                   " is past the block table (", block_table.size(),
                                                   " blocks)"));
  }
  const size_t old_size = slots->size();
  for (int64_t pos = first_pos; pos < end; ++pos) {
    const int32_t block = block_table[pos / block_size];
    if (block < 0 || block >= num_blocks) {
      slots->resize(old_size);
      return absl::InvalidArgumentError(absl::StrCat("AppendCacheSlots: block id ", block,
                                                     " at position ", pos, " is outside [0, ",
                                                     num_blocks, ")"));
    }
    slots->push_back(static_cast<int32_t>(int64_t{block} * block_size + pos % block_size));
  }
  return absl::OkStatus();
}

}  // namespace mla::cuda
