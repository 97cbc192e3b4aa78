// Writes new tokens' latent c and rotated k_pe into the paged bf16 latent cache of one
// layer (engine/kv_cache/cache_layout.h, kBF16: [latent L][k_pe R] per slot). Declarations
// only; see pointwise.h for the Validate/Launch convention.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_LATENT_CACHE_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_LATENT_CACHE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

struct LatentCacheWriteParams {
  int64_t num_tokens = 0;
  int kv_lora_rank = 0;  // L
  int rope_dim = 0;      // R
  int block_size = 0;
  int64_t num_blocks = 0;
  const bf16_t* latent = nullptr;  // [num_tokens, latent_stride], the first L values used
  int64_t latent_stride = 0;
  const bf16_t* k_pe = nullptr;  // [num_tokens, k_pe_stride], the first R values used
  int64_t k_pe_stride = 0;
  // [num_tokens] block_id · block_size + offset (host/cache_slots.h computes them). A
  // negative slot (padding) or one beyond the cache writes nothing.
  const int32_t* slots = nullptr;
  bf16_t* kv_cache = nullptr;  // [num_blocks, block_size, L + R]
};

absl::Status ValidateLatentCacheWriteParams(const LatentCacheWriteParams& p);
absl::Status LaunchLatentCacheWrite(const LatentCacheWriteParams& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_LATENT_CACHE_H_
