// Greedy argmax (declared in sampling.h): one CTA per row; each thread scans a strided
// slice keeping its first maximum, then the CTA reduces (value, index) pairs.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
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

// The host sampler's order as an ascending unsigned key: NaN as -inf, -0 as +0 (top_k.h).
__device__ __forceinline__ uint32_t RankBits(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__global__ void __launch_bounds__(kThreads) TopKKernel(TopKParams p) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t prefix, mask;
  __shared__ int remaining;
  __shared__ int greater_before[kThreads], equal_before[kThreads];
  const int64_t row = blockIdx.x;
  const int k = p.k[row];
  if (k <= 0) return;  // The whole CTA, before any barrier.
  const float* x = p.logits + row * p.logits_stride;
  const int tid = static_cast<int>(threadIdx.x);
  if (tid == 0) {
    prefix = 0;
    mask = 0;
    remaining = k;
  }
  __syncthreads();
  // The k-th largest key T, eight bits at a time: `remaining` is T's rank among the keys
  // that share the bits found so far.
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kThreads) hist[i] = 0;
    __syncthreads();
    for (int64_t i = tid; i < p.vocab_size; i += kThreads) {
      const uint32_t key = RankBits(x[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      int above = 0, b = 255;
      for (; b > 0 && above + static_cast<int>(hist[b]) < remaining; --b) above += hist[b];
      remaining -= above;
      prefix |= static_cast<uint32_t>(b) << shift;
      mask |= 255u << shift;
    }
    __syncthreads();
  }
  const uint32_t t = prefix;
  const int take_equal = remaining;  // keys equal to T to keep, the lowest indices first
  // Contiguous index ranges per thread, so that a scan over threads follows index order.
  const int64_t chunk = (p.vocab_size + kThreads - 1) / kThreads;
  const int64_t begin = tid * chunk, end = min(p.vocab_size, begin + chunk);
  int greater = 0, equal = 0;
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t key = RankBits(x[i]);
    greater += key > t;
    equal += key == t;
  }
  greater_before[tid] = greater;
  equal_before[tid] = equal;
  __syncthreads();
  if (tid == 0) {  // Exclusive scans, serial: 256 additions.
    int g = 0, e = 0;
    for (int i = 0; i < kThreads; ++i) {
      const int gi = greater_before[i], ei = equal_before[i];
      greater_before[i] = g;
      equal_before[i] = e;
      g += gi;
      e += ei;
    }
  }
  __syncthreads();
  const int total_greater = k - take_equal;
  int out_greater = greater_before[tid], rank_equal = equal_before[tid];
  int32_t* ids = p.ids + row * p.k_cap;
  float* values = p.values + row * p.k_cap;
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t key = RankBits(x[i]);
    int slot = -1;
    if (key > t) {
      slot = out_greater++;
    } else if (key == t) {
      if (rank_equal < take_equal) slot = total_greater + rank_equal;
      ++rank_equal;
    }
    if (slot >= 0) {
      ids[slot] = static_cast<int32_t>(i);
      values[slot] = x[i];
    }
  }
}

// The largest of x[0, n) (NaN as -inf) and, when it is finite, Σ expf((x − max) / t) in
// fp64 (the host sampler's weights and sum; t = 1 gives the log-sum-exp's sum exactly,
// since (x − max) / 1 is x − max), returned to every thread of the CTA. `infs`, when not
// null, gets the count of +inf. Every thread must call it; it may be called again right
// away (the barriers protect the scratch).
__device__ void CtaMaxAndWeightSum(const float* x, int64_t n, float t, float& max_out,
                                   double& sum_out, int* infs_out) {
  __shared__ float max_part[kThreads / 32];
  __shared__ double sum_part[kThreads / 32];
  __shared__ int inf_part[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float m = -INFINITY;
  int infs = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const float v = isnan(x[i]) ? -INFINITY : x[i];
    m = fmaxf(m, v);
    infs += v == INFINITY;
  }
  m = WarpMax(m);
  for (int o = 16; o > 0; o >>= 1) infs += __shfl_xor_sync(0xffffffffu, infs, o);
  __syncthreads();  // The previous call's parts have been read.
  if (lane == 0) {
    max_part[warp] = m;
    inf_part[warp] = infs;
  }
  __syncthreads();
  m = -INFINITY;
  infs = 0;
  for (int w = 0; w < kThreads / 32; ++w) {
    m = fmaxf(m, max_part[w]);
    infs += inf_part[w];
  }
  double sum = 0.0;
  if (isfinite(m)) {
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const float v = isnan(x[i]) ? -INFINITY : x[i];
      sum += static_cast<double>(expf((v - m) / t));
    }
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) sum_part[warp] = sum;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kThreads / 32; ++w) total += sum_part[w];
  max_out = m;
  sum_out = total;
  if (infs_out != nullptr) *infs_out = infs;
}

__global__ void __launch_bounds__(kThreads) LogSumExpKernel(LogSumExpParams p) {
  for (int64_t row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    float m;
    double total;
    int infs;
    CtaMaxAndWeightSum(p.logits + row * p.logits_stride, p.vocab_size, 1.0f, m, total, &infs);
    if (threadIdx.x == 0) {
      p.max[row] = m;
      p.log_sum[row] = isfinite(m) ? log(total) : 0.0;
      p.inf_count[row] = infs;
    }
  }
}

__global__ void __launch_bounds__(kThreads) WeightSumKernel(WeightSumParams p) {
  for (int64_t i = blockIdx.x; i < p.num; i += gridDim.x) {
    const DrawRow d = p.draws[i];
    float m;
    double total;
    CtaMaxAndWeightSum(p.logits + d.row * p.logits_stride, p.vocab_size, d.temperature, m, total,
                       nullptr);
    if (threadIdx.x == 0) {
      p.max[i] = m;
      p.weight_sum[i] = isfinite(m) ? total : 0.0;
    }
  }
}

// One CTA per draw; the slices, the per-token rule and the walk are draw_rule.h's (the CPU
// tests replay them against the host sampler).
static_assert(kThreads == kDrawThreads, "a draw's thread t takes draw_rule.h's slice t");
__global__ void __launch_bounds__(kThreads) DrawKernel(DrawParams p) {
  __shared__ double before[kThreads];  // Exclusive prefix of the slices' kept weight.
  __shared__ double kept_total;
  // The crossing's id (ULLONG_MAX: none) and the last kept id + 1 (0: none), as the
  // unsigned 64-bit words atomicMin and atomicMax take.
  __shared__ unsigned long long first_over, last_kept;
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t begin = DrawSliceBegin(p.vocab_size, tid);
  const int64_t end = DrawSliceEnd(p.vocab_size, tid);
  for (int64_t i = blockIdx.x; i < p.num; i += gridDim.x) {
    const DrawRow d = p.draws[i];
    const float* x = p.logits + d.row * p.logits_stride;
    int64_t last = -1;
    const double slice = DrawSliceSum(x, begin, end, d, &last);
    __syncthreads();  // The previous draw's results have been read.
    before[tid] = slice;
    if (tid == 0) {
      first_over = ULLONG_MAX;
      last_kept = 0;
    }
    __syncthreads();
    if (tid == 0) {  // Exclusive scan, serial: 256 additions.
      double sum = 0.0;
      for (int t = 0; t < kThreads; ++t) {
        const double s = before[t];
        before[t] = sum;
        sum += s;
      }
      kept_total = sum;
    }
    __syncthreads();
    if (last >= 0) atomicMax(&last_kept, static_cast<unsigned long long>(last + 1));
    // The host's walk from this slice's start; the lowest id found over the slices wins.
    // A slice whose end stays at or below the target cannot hold the crossing.
    const double target = d.u * kept_total;
    if (slice > 0.0 && before[tid] + slice > target) {
      const int64_t found = DrawSliceWalk(x, begin, end, d, before[tid], target);
      if (found >= 0) atomicMin(&first_over, static_cast<unsigned long long>(found));
    }
    __syncthreads();
    if (tid == 0) {
      // Rounding can leave u × total at the full sum: the host then takes the last kept
      // token. The most likely token always has weight 1 and is kept, so one exists.
      const int64_t id = first_over != ULLONG_MAX ? static_cast<int64_t>(first_over)
                         : last_kept > 0          ? static_cast<int64_t>(last_kept - 1)
                                                  : 0;
      p.ids[i] = static_cast<int32_t>(id);
      p.logits_out[i] = x[id];
    }
  }
}

__global__ void GatherLogitsKernel(GatherLogitsParams p) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < p.num) p.out[i] = p.logits[p.rows[i] * p.logits_stride + p.tokens[i]];
}

}  // namespace

absl::Status LaunchLogSumExp(const LogSumExpParams& p, CudaStream stream) {
  if (absl::Status s = ValidateLogSumExpParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  const int grid = static_cast<int>(std::min(p.num_rows, kMaxGrid));
  return LaunchKernel("LogSumExpKernel", LogSumExpKernel, grid, kThreads, 0, stream, p);
}

absl::Status LaunchWeightSum(const WeightSumParams& p, CudaStream stream) {
  if (absl::Status s = ValidateWeightSumParams(p); !s.ok()) return s;
  if (p.num == 0) return absl::OkStatus();
  const int grid = static_cast<int>(std::min(p.num, kMaxGrid));
  return LaunchKernel("WeightSumKernel", WeightSumKernel, grid, kThreads, 0, stream, p);
}

absl::Status LaunchDraw(const DrawParams& p, CudaStream stream) {
  if (absl::Status s = ValidateDrawParams(p); !s.ok()) return s;
  if (p.num == 0) return absl::OkStatus();
  const int grid = static_cast<int>(std::min(p.num, kMaxGrid));
  return LaunchKernel("DrawKernel", DrawKernel, grid, kThreads, 0, stream, p);
}

absl::Status LaunchGatherLogits(const GatherLogitsParams& p, CudaStream stream) {
  if (absl::Status s = ValidateGatherLogitsParams(p); !s.ok()) return s;
  if (p.num == 0) return absl::OkStatus();
  return LaunchKernel("GatherLogitsKernel", GatherLogitsKernel,
                      static_cast<unsigned>((p.num + 255) / 256), 256, 0, stream, p);
}

absl::Status LaunchTopK(const TopKParams& p, CudaStream stream) {
  if (absl::Status s = ValidateTopKParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  if (p.num_rows > (int64_t{1} << 31) - 1) return absl::InvalidArgumentError("TopK: too many rows");
  return LaunchKernel("TopKKernel", TopKKernel, static_cast<unsigned>(p.num_rows), kThreads, 0,
                      stream, p);
}

absl::Status LaunchArgmax(const ArgmaxParams& p, CudaStream stream) {
  if (absl::Status s = ValidateArgmaxParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  const int grid = static_cast<int>(std::min(p.num_rows, kMaxGrid));
  return LaunchKernel("ArgmaxKernel", ArgmaxKernel, grid, kThreads, 0, stream, p);
}

}  // namespace mla::cuda
