// Cache slot numbers for the latent cache write kernel (kernels/latent_cache.h): plain C++.
#ifndef MLA_ENGINE_BACKEND_CUDA_HOST_CACHE_SLOTS_H_
#define MLA_ENGINE_BACKEND_CUDA_HOST_CACHE_SLOTS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace mla::cuda {

// Appends to `slots` the slot (block_id · block_size + offset) of positions
// first_pos .. first_pos + count − 1 of a sequence whose block table row is `block_table`.
// INVALID_ARGUMENT when a position falls past the table or a block id is outside
// [0, num_blocks); `slots` is unchanged then.
absl::Status AppendCacheSlots(absl::Span<const int32_t> block_table, int block_size,
                              int64_t num_blocks, int64_t first_pos, int64_t count,
                              std::vector<int32_t>* slots);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_HOST_CACHE_SLOTS_H_
