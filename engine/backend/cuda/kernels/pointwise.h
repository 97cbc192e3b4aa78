// Per-token kernels of the DeepSeek forward pass on bf16 activations with fp32 math:
// RMSNorm, YaRN RoPE, embedding gather and SiLU-mul. Each mirrors a CPU function (named
// below) and rounds to bf16 only when it stores.
//
// Declarations only: the Validate* functions are plain C++ (kernel_checks.cc, built on
// every machine) and check shapes once at the host boundary; the Launch* functions live in
// the .cu files, validate first and return a Status for bad shapes and for CUDA errors.
// Pointers are device pointers; shapes are in the comments.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_POINTWISE_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_POINTWISE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

// out = weight ⊙ x / sqrt(mean(x²) + eps) per row (engine/model/layer_ops.h RmsNorm).
struct RmsNormParams {
  int64_t num_rows = 0;
  int dim = 0;
  float eps = 0.0f;
  const bf16_t* x = nullptr;  // [num_rows, x_stride], the first dim values used
  int64_t x_stride = 0;
  const bf16_t* weight = nullptr;  // [dim]
  bf16_t* out = nullptr;           // [num_rows, out_stride]; may alias x
  int64_t out_stride = 0;
};

// Rotates interleaved pairs (x[2i], x[2i+1]) of num_vectors vectors per token in place by
// the angles pos·inv_freq[i], with cos/sin scaled by attention_factor (engine/model/rope.h;
// pass Rope::inv_freq() and Rope::attention_factor()). Used for q_pe (num_vectors = heads)
// and k_pe (num_vectors = 1).
struct RopeParams {
  int64_t num_tokens = 0;
  int num_vectors = 0;
  int rope_dim = 0;     // even
  bf16_t* x = nullptr;  // vector v of token t at x + t·token_stride + v·vector_stride
  int64_t token_stride = 0;
  int64_t vector_stride = 0;
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;     // [rope_dim / 2]
  float attention_factor = 1.0f;
};

// out[t] = table[ids[t]]. An id outside [0, vocab_size) yields a zero row and, when
// num_invalid is set, increments *num_invalid (ids live on the device, so this is the only
// place that can notice).
struct EmbeddingParams {
  int64_t num_tokens = 0;
  int64_t vocab_size = 0;
  int hidden = 0;
  const int32_t* ids = nullptr;    // [num_tokens]
  const bf16_t* table = nullptr;   // [vocab_size, hidden]
  bf16_t* out = nullptr;           // [num_tokens, hidden]
  int32_t* num_invalid = nullptr;  // [1], optional
};

// out = silu(gate) ⊙ up (engine/model/layer_ops.h SiluMul).
struct SiluMulParams {
  int64_t num_rows = 0;
  int64_t inter = 0;
  const bf16_t* gate = nullptr;  // [num_rows, in_stride], the first inter values used
  const bf16_t* up = nullptr;    // [num_rows, in_stride]
  int64_t in_stride = 0;
  bf16_t* out = nullptr;  // [num_rows, inter]
};

absl::Status ValidateRmsNormParams(const RmsNormParams& p);
absl::Status ValidateRopeParams(const RopeParams& p);
absl::Status ValidateEmbeddingParams(const EmbeddingParams& p);
absl::Status ValidateSiluMulParams(const SiluMulParams& p);

absl::Status LaunchRmsNorm(const RmsNormParams& p, CudaStream stream);
absl::Status LaunchRope(const RopeParams& p, CudaStream stream);
absl::Status LaunchEmbedding(const EmbeddingParams& p, CudaStream stream);
absl::Status LaunchSiluMul(const SiluMulParams& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_POINTWISE_H_
