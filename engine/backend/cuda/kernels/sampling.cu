// Greedy argmax (declared in sampling.h): one CTA per row; each thread scans a strided
// slice keeping its first maximum, then the CTA reduces (value, index) pairs.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/sampling.h"

namespace mla::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;

// True when (va, ia) should win over (vb, ib): larger value, then lower index. NaN (and the
// "nothing yet" state, index -1) always loses.
__device__ __forceinline__ bool Better(float va, int64_t ia, float vb, int64_t ib) {
  if (ia < 0 || isnan(va)) return false;
  if (ib < 0 || isnan(vb)) return true;
  return va > vb || (va == vb && ia < ib);
}

__global__ void __launch_bounds__(kThreads) ArgmaxKernel(ArgmaxParams p) {
  __shared__ float best_v[kThreads / 32];
  __shared__ int64_t best_i[kThreads / 32];
  for (int64_t row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    const float* logits = p.logits + row * p.logits_stride;
    float v = -INFINITY;
    int64_t idx = -1;
    for (int64_t i = threadIdx.x; i < p.vocab_size; i += kThreads) {
      const float x = logits[i];
      if (Better(x, i, v, idx)) {
        v = x;
        idx = i;
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, offset);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, offset);
      if (Better(ov, oi, v, idx)) {
        v = ov;
        idx = oi;
      }
    }
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    __syncthreads();  // The previous row's winners have been read.
    if (lane == 0) {
      best_v[warp] = v;
      best_i[warp] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kThreads / 32; ++w) {
        if (Better(best_v[w], best_i[w], v, idx)) {
          v = best_v[w];
          idx = best_i[w];
        }
      }
      p.ids[row] = idx < 0 ? 0 : static_cast<int32_t>(idx);
      if (p.max_values != nullptr) p.max_values[row] = idx < 0 ? NAN : v;
    }
  }
}

}  // namespace

absl::Status LaunchArgmax(const ArgmaxParams& p, CudaStream stream) {
  if (absl::Status s = ValidateArgmaxParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  const int grid = static_cast<int>(std::min(p.num_rows, kMaxGrid));
  ArgmaxKernel<<<grid, kThreads, 0, stream>>>(p);
  return CudaLaunchStatus("ArgmaxKernel");
}

}  // namespace mla::cuda
