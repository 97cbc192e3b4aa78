// Paged latent cache write (declared in latent_cache.h): one CTA per token copies the
// latent row and the k_pe row into the token's slot.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/latent_cache.h"
#include "engine/backend/cuda/kernels/launch.cuh"

namespace mla::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxGrid = 65535;

__global__ void __launch_bounds__(kThreads) LatentCacheWriteKernel(LatentCacheWriteParams p) {
  const int width = p.kv_lora_rank + p.rope_dim;
  const int64_t num_slots = p.num_blocks * p.block_size;
  for (int64_t t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
    const int64_t slot = p.slots[t];
    if (slot < 0 || slot >= num_slots) continue;  // Padding; uniform over the CTA.
    uint16_t* dst = p.kv_cache + slot * width;
    const uint16_t* latent = p.latent + t * p.latent_stride;
    const uint16_t* k_pe = p.k_pe + t * p.k_pe_stride;
    for (int d = threadIdx.x; d < width; d += blockDim.x) {
      dst[d] = d < p.kv_lora_rank ? latent[d] : k_pe[d - p.kv_lora_rank];
    }
  }
}

}  // namespace

absl::Status LaunchLatentCacheWrite(const LatentCacheWriteParams& p, CudaStream stream) {
  if (absl::Status s = ValidateLatentCacheWriteParams(p); !s.ok()) return s;
  if (p.num_tokens == 0 || p.num_blocks == 0) return absl::OkStatus();
  const int grid = static_cast<int>(std::min(p.num_tokens, kMaxGrid));
  return LaunchKernel("LatentCacheWriteKernel", LatentCacheWriteKernel, grid, kThreads, 0, stream,
                      p);
}

}  // namespace mla::cuda
