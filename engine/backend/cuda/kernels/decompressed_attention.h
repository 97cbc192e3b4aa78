// The kernels of CudaBackend::DecompressedAttention (the math is in
// engine/backend/cpu/decompressed_attention.h). Per marked sequence, keys are taken in
// chunks (host/decompress_plan.h), each in three launches:
//   1. LaunchGatherLatentF32: the chunk's cached latents [keys, L] out of the paged cache
//      into a dense fp32 matrix (from a bf16 cache bf16 values, so the GEMM's bf16
//      rounding loses nothing; from an FP8 cache code × scale, which that rounding
//      moves by up to 2^-9, far inside the e4m3 code's own 2^-4);
//   2. the backend's GEMM: kv [keys, heads · (nope + v)] = latents · kv_bᵀ, per head the
//      up-projected k_nope, then v (kv_b_proj's row order);
//   3. LaunchDecompressedChunkF32: every (query row, head) of the sequence folds the keys
//      of the chunk it may see (causal) into its online softmax, kept in fp32 device
//      state between chunks, and the last chunk writes out = Σ softmax · v.
// Scores are (q_nope·k_nope + q_pe·k_pe) · softmax_scale with k_pe read from the cache,
// in fp32. Cache slots at or past the sequence's length are never read.
//
// Declarations only (plain C++); the Validate* checks live in kernel_checks.cc (tested on
// every machine), the kernels in decompressed_attention.cu. Pointers are device pointers.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_DECOMPRESSED_ATTENTION_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_DECOMPRESSED_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

// Limits of the chunk kernel: a head's q (nope + R) sits in shared memory, and each lane
// keeps v / 32 accumulators (DeepSeek: 192 and 128).
inline constexpr int kDecompressedMaxQk = 512;
inline constexpr int kDecompressedMaxV = 256;

// out[i] = latent part of the cache row of the sequence's key first_key + i, as fp32.
struct GatherLatentF32Params {
  const void* cache = nullptr;  // one layer: [num_blocks · block_size] rows, bf16 or fp8
  bool cache_fp8 = false;       // the row layout (forward_f32.h, CacheWriteF32Params)
  const int32_t* blocks = nullptr;  // the sequence's block ids
  int block_size = 0;
  int latent = 0;  // L
  int rope = 0;    // R
  int64_t first_key = 0;
  F32Matrix out;  // [keys, L]
};
absl::Status ValidateGatherLatentF32Params(const GatherLatentF32Params& p);
absl::Status LaunchGatherLatentF32(const GatherLatentF32Params& p, CudaStream stream);

// One chunk of keys [first_key, first_key + num_keys) for the rows of one sequence. Row i
// sits at position q_pos0 + i and sees keys [0, q_pos0 + i]. first_chunk starts each
// row's state afresh; last_chunk writes out (every row sees key 0, so l > 0) and leaves
// the state as it was.
struct DecompressedChunkF32Params {
  int64_t num_rows = 0;
  int heads = 0;
  int nope = 0;
  int rope = 0;
  int v = 0;
  int latent = 0;  // L: where k_pe starts in a cache row
  int block_size = 0;
  int64_t q_pos0 = 0;
  int64_t first_key = 0;
  int64_t num_keys = 0;
  bool first_chunk = true;
  bool last_chunk = true;
  float softmax_scale = 0.0f;
  const void* cache = nullptr;  // one layer, as above (k_pe)
  bool cache_fp8 = false;
  const int32_t* blocks = nullptr;  // the sequence's block ids
  const float* q = nullptr;         // [num_rows, q_stride]: heads × (nope + R), RoPE applied
  int64_t q_stride = 0;
  const float* kv = nullptr;  // [num_keys, heads · (nope + v)]
  float* state = nullptr;     // [num_rows, heads, v + 2]: accumulator, then m and l
  float* out = nullptr;       // [num_rows, out_stride]: heads × v
  int64_t out_stride = 0;
};
absl::Status ValidateDecompressedChunkF32Params(const DecompressedChunkF32Params& p);
absl::Status LaunchDecompressedChunkF32(const DecompressedChunkF32Params& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_DECOMPRESSED_ATTENTION_H_
