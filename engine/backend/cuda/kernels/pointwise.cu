// RMSNorm, YaRN RoPE, embedding gather and SiLU-mul (declared in pointwise.h). Memory-bound
// one-pass kernels: one CTA per row (or token), threads across the row.
//
// RoPE and SiLU-mul avoid fused multiply-adds where the CPU version has separate multiplies
// and adds (__fmul_rn / __fadd_rn are never contracted), so that their fp32 results match
// the CPU backend's before the final bf16 rounding. RMSNorm sums squares in fp32 where the
// CPU uses double; the difference stays far below one bf16 step.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/pointwise.h"

namespace mla::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;  // CTAs per launch; kernels loop over the rest.
constexpr int kMaxRopeHalf = 256;    // rope_dim <= 512

int GridFor(int64_t rows) {
  return static_cast<int>(std::max<int64_t>(1, std::min(rows, kMaxGrid)));
}

__global__ void __launch_bounds__(kThreads) RmsNormKernel(RmsNormParams p) {
  for (int64_t row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    const uint16_t* x = p.x + row * p.x_stride;
    uint16_t* out = p.out + row * p.out_stride;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < p.dim; i += blockDim.x) {
      const float v = Bf16Bits(x[i]);
      sum = fmaf(v, v, sum);
    }
    sum = BlockSum(sum);  // Also orders every read of x before the writes (out may alias).
    const float inv = 1.0f / sqrtf(sum / static_cast<float>(p.dim) + p.eps);
    for (int i = threadIdx.x; i < p.dim; i += blockDim.x) {
      out[i] = ToBf16Bits(__fmul_rn(Bf16Bits(p.weight[i]), __fmul_rn(Bf16Bits(x[i]), inv)));
    }
  }
}

// One token per CTA iteration: the token's cos/sin go to shared memory once, then every
// (vector, pair) of the token is rotated. Angles follow Rope::Angles: the product
// pos·inv_freq in fp32, cos/sin in double, rounded to float, times attention_factor.
__global__ void __launch_bounds__(kThreads) RopeKernel(RopeParams p) {
  __shared__ float cos_s[kMaxRopeHalf];
  __shared__ float sin_s[kMaxRopeHalf];
  const int half = p.rope_dim / 2;
  for (int64_t t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
    const float pos = static_cast<float>(p.positions[t]);
    __syncthreads();  // The previous token's angles are no longer read.
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      const float angle = __fmul_rn(pos, p.inv_freq[i]);
      double s;
      double c;
      sincos(static_cast<double>(angle), &s, &c);
      cos_s[i] = __fmul_rn(static_cast<float>(c), p.attention_factor);
      sin_s[i] = __fmul_rn(static_cast<float>(s), p.attention_factor);
    }
    __syncthreads();
    uint16_t* token = p.x + t * p.token_stride;
    for (int idx = threadIdx.x; idx < p.num_vectors * half; idx += blockDim.x) {
      const int v = idx / half;
      const int i = idx - v * half;
      uint16_t* x = token + v * p.vector_stride + 2 * i;
      const float a = Bf16Bits(x[0]);
      const float b = Bf16Bits(x[1]);
      x[0] = ToBf16Bits(__fsub_rn(__fmul_rn(a, cos_s[i]), __fmul_rn(b, sin_s[i])));
      x[1] = ToBf16Bits(__fadd_rn(__fmul_rn(a, sin_s[i]), __fmul_rn(b, cos_s[i])));
    }
  }
}

__global__ void __launch_bounds__(kThreads) EmbeddingKernel(EmbeddingParams p) {
  for (int64_t t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
    const int32_t id = p.ids[t];
    const bool valid = id >= 0 && id < p.vocab_size;
    if (!valid && threadIdx.x == 0 && p.num_invalid != nullptr) atomicAdd(p.num_invalid, 1);
    const uint16_t* src = p.table + static_cast<int64_t>(valid ? id : 0) * p.hidden;
    uint16_t* dst = p.out + t * p.hidden;
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) dst[i] = valid ? src[i] : 0;
  }
}

__global__ void __launch_bounds__(kThreads) SiluMulKernel(SiluMulParams p) {
  for (int64_t row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    const uint16_t* gate = p.gate + row * p.in_stride;
    const uint16_t* up = p.up + row * p.in_stride;
    uint16_t* out = p.out + row * p.inter;
    for (int64_t i = threadIdx.x; i < p.inter; i += blockDim.x) {
      const float g = Bf16Bits(gate[i]);
      const float silu = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
      out[i] = ToBf16Bits(__fmul_rn(silu, Bf16Bits(up[i])));
    }
  }
}

}  // namespace

absl::Status LaunchRmsNorm(const RmsNormParams& p, CudaStream stream) {
  if (absl::Status s = ValidateRmsNormParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  return LaunchKernel("RmsNormKernel", RmsNormKernel, GridFor(p.num_rows), kThreads, 0, stream, p);
}

absl::Status LaunchRope(const RopeParams& p, CudaStream stream) {
  if (absl::Status s = ValidateRopeParams(p); !s.ok()) return s;
  if (p.rope_dim / 2 > kMaxRopeHalf) {
    return absl::InvalidArgumentError("Rope: rope_dim must be <= 512 on CUDA");
  }
  if (p.num_tokens == 0 || p.num_vectors == 0) return absl::OkStatus();
  return LaunchKernel("RopeKernel", RopeKernel, GridFor(p.num_tokens), kThreads, 0, stream, p);
}

absl::Status LaunchEmbedding(const EmbeddingParams& p, CudaStream stream) {
  if (absl::Status s = ValidateEmbeddingParams(p); !s.ok()) return s;
  if (p.num_tokens == 0) return absl::OkStatus();
  return LaunchKernel("EmbeddingKernel", EmbeddingKernel, GridFor(p.num_tokens), kThreads, 0,
                      stream, p);
}

absl::Status LaunchSiluMul(const SiluMulParams& p, CudaStream stream) {
  if (absl::Status s = ValidateSiluMulParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  return LaunchKernel("SiluMulKernel", SiluMulKernel, GridFor(p.num_rows), kThreads, 0, stream, p);
}

}  // namespace mla::cuda
