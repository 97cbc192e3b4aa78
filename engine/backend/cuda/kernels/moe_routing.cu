// MoE routing, permutation plan, permute and unpermute (declared in moe_routing.h).
//
// Routing runs one warp per token: the token's scores and choice values sit in shared
// memory, every selection (groups, then experts) is k rounds of a warp-wide argmax that
// breaks ties on the lower index, as the CPU's partial sort does. Softmax sums in double
// and divides in double, as RouteToken does, so that near-equal scores rank the same way.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/moe_routing.h"

namespace mla::cuda {
namespace {

constexpr int kWarpsPerCta = 4;
constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;
constexpr unsigned kFull = 0xffffffffu;

int GridFor(int64_t units) {
  return static_cast<int>(std::max<int64_t>(1, std::min(units, kMaxGrid)));
}

// True when candidate (va, ia) beats (vb, ib): larger value, then lower index. Index −1
// is "nothing yet"; NaN never wins.
__device__ __forceinline__ bool Beats(float va, int ia, float vb, int ib) {
  if (ia < 0 || isnan(va)) return false;
  if (ib < 0 || isnan(vb)) return true;
  return va > vb || (va == vb && ia < ib);
}

// The warp's best (value, index) pair, returned to every lane.
__device__ __forceinline__ void WarpArgmax(float& v, int& i) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, offset);
    const int oi = __shfl_xor_sync(kFull, i, offset);
    if (Beats(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

__device__ __forceinline__ double WarpSumDouble(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFull, v, offset);
  return v;
}

// scores ← softmax or sigmoid of the logits; choice ← scores (+ bias).
__device__ void ScoreToken(const MoeRoutingParams& p, const float* logits, float* scores,
                           float* choice, int lane) {
  const int n = p.num_experts;
  if (p.sigmoid) {
    for (int e = lane; e < n; e += 32) scores[e] = 1.0f / (1.0f + expf(-logits[e]));
  } else {
    float max = -INFINITY;
    for (int e = lane; e < n; e += 32) max = fmaxf(max, logits[e]);
    max = WarpMax(max);
    double sum = 0.0;
    for (int e = lane; e < n; e += 32) {
      scores[e] = expf(logits[e] - max);
      sum += scores[e];
    }
    sum = WarpSumDouble(sum);
    for (int e = lane; e < n; e += 32) scores[e] = static_cast<float>(scores[e] / sum);
  }
  for (int e = lane; e < n; e += 32) {
    choice[e] = p.bias != nullptr ? scores[e] + p.bias[e] : scores[e];
  }
  __syncwarp();
}

// Sets choice to −inf outside the topk_group best groups (MaskGroups in layer_ops.cc).
__device__ void MaskGroups(const MoeRoutingParams& p, float* choice, int lane) {
  const int per_group = p.num_experts / p.n_group;
  float group = 0.0f;
  if (lane < p.n_group) {
    float top1 = -INFINITY;
    float top2 = -INFINITY;
    for (int e = lane * per_group; e < (lane + 1) * per_group; ++e) {
      const float v = choice[e];
      if (v > top1) {
        top2 = top1;
        top1 = v;
      } else if (v > top2) {
        top2 = v;
      }
    }
    const bool sum2 = p.group_score == MoeGroupScore::kSumTop2;
    group = sum2 ? top1 + (per_group > 1 ? top2 : 0.0f) : top1;
  }
  bool kept = false;
  for (int round = 0; round < p.topk_group; ++round) {
    float v = group;
    int i = lane < p.n_group && !kept ? lane : -1;
    WarpArgmax(v, i);
    if (lane == i) kept = true;
  }
  const unsigned kept_mask = __ballot_sync(kFull, kept);
  for (int e = lane; e < p.num_experts; e += 32) {
    if (((kept_mask >> (e / per_group)) & 1u) == 0) choice[e] = -INFINITY;
  }
  __syncwarp();
}

__global__ void __launch_bounds__(kWarpsPerCta * 32) RouteKernel(MoeRoutingParams p) {
  __shared__ float scores_s[kWarpsPerCta][kMoeMaxExperts];
  __shared__ float choice_s[kWarpsPerCta][kMoeMaxExperts];
  __shared__ int chosen_s[kWarpsPerCta][kMoeMaxTopK];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  float* scores = scores_s[warp];
  float* choice = choice_s[warp];
  int* chosen = chosen_s[warp];
  const int64_t stride = int64_t{gridDim.x} * kWarpsPerCta;
  for (int64_t t = int64_t{blockIdx.x} * kWarpsPerCta + warp; t < p.num_tokens; t += stride) {
    ScoreToken(p, p.logits + t * p.logits_stride, scores, choice, lane);
    if (p.group_score != MoeGroupScore::kNone && p.n_group > 1) MaskGroups(p, choice, lane);
    for (int j = 0; j < p.top_k; ++j) {
      float v = -INFINITY;
      int i = -1;
      for (int e = lane; e < p.num_experts; e += 32) {
        bool taken = false;
        for (int c = 0; c < j; ++c) taken |= chosen[c] == e;
        if (!taken && Beats(choice[e], e, v, i)) {
          v = choice[e];
          i = e;
        }
      }
      WarpArgmax(v, i);
      if (lane == 0) chosen[j] = i < 0 ? 0 : i;  // i < 0 only for all-NaN logits
      __syncwarp();
    }
    if (lane == 0) {
      float sum = 0.0f;
      for (int j = 0; j < p.top_k; ++j) sum += scores[chosen[j]];
      for (int j = 0; j < p.top_k; ++j) {
        float w = scores[chosen[j]];
        if (p.normalize) w /= (sum + 1e-20f);
        if (p.scaling != 1.0f) w *= p.scaling;
        p.expert_ids[t * p.top_k + j] = chosen[j];
        p.weights[t * p.top_k + j] = w;
      }
    }
    __syncwarp();  // The next token overwrites the shared rows.
  }
}

// Warp w counts the pairs routed to expert w (and, warp 0, the invalid ids).
__global__ void __launch_bounds__(kWarpsPerCta * 32) CountKernel(MoePlanParams p) {
  const int expert = blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (expert >= p.num_experts) return;
  const int64_t pairs = p.num_tokens * p.top_k;
  int32_t count = 0;
  int32_t invalid = 0;
  for (int64_t base = 0; base < pairs; base += 32) {
    const int32_t id = base + lane < pairs ? p.expert_ids[base + lane] : expert;
    count += __popc(__ballot_sync(kFull, base + lane < pairs && id == expert));
    invalid += __popc(__ballot_sync(kFull, id < 0 || id >= p.num_experts));
  }
  if (lane == 0) {
    p.counts[expert] = count;
    if (expert == 0 && p.num_invalid != nullptr) *p.num_invalid = invalid;
  }
}

// Warp w sums the counts below expert w for its offset, then places its pairs in pair
// order: a pair's row is the offset plus the number of earlier pairs of the same expert.
__global__ void __launch_bounds__(kWarpsPerCta * 32) PlaceKernel(MoePlanParams p) {
  const int expert = blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (expert >= p.num_experts) return;
  int32_t offset = 0;
  for (int e = lane; e < expert; e += 32) offset += p.counts[e];
  for (int s = 16; s > 0; s >>= 1) offset += __shfl_xor_sync(kFull, offset, s);
  if (lane == 0) {
    p.offsets[expert] = offset;
    if (expert == p.num_experts - 1) p.offsets[p.num_experts] = offset + p.counts[expert];
  }
  const int64_t pairs = p.num_tokens * p.top_k;
  int32_t row = offset;
  for (int64_t base = 0; base < pairs; base += 32) {
    const int64_t pair = base + lane;
    const bool mine = pair < pairs && p.expert_ids[pair] == expert;
    const unsigned ballot = __ballot_sync(kFull, mine);
    if (mine) {
      const int32_t r = row + __popc(ballot & ((1u << lane) - 1u));
      p.sorted_pairs[r] = static_cast<int32_t>(pair);
      p.pair_rows[pair] = r;
    }
    row += __popc(ballot);
  }
}

__global__ void __launch_bounds__(kThreads) PermuteKernel(MoePermuteParams p) {
  for (int64_t row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    const uint16_t* src = p.x + static_cast<int64_t>(p.sorted_pairs[row] / p.top_k) * p.x_stride;
    uint16_t* dst = p.out + row * p.hidden;
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) dst[i] = src[i];
  }
}

__global__ void __launch_bounds__(kThreads) UnpermuteKernel(MoeUnpermuteParams p) {
  for (int64_t t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
    const int32_t* rows = p.pair_rows + t * p.top_k;
    const float* weights = p.weights + t * p.top_k;
    uint16_t* out = p.out + t * p.hidden;
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) {
      float acc = p.shared != nullptr ? Bf16Bits(p.shared[t * p.hidden + i]) : 0.0f;
      for (int j = 0; j < p.top_k; ++j) {
        acc = fmaf(weights[j], Bf16Bits(p.expert_out[int64_t{rows[j]} * p.hidden + i]), acc);
      }
      out[i] = ToBf16Bits(acc);
    }
  }
}

}  // namespace

absl::Status LaunchMoeRouting(const MoeRoutingParams& p, CudaStream stream) {
  if (absl::Status s = ValidateMoeRoutingParams(p); !s.ok()) return s;
  if (p.num_tokens == 0) return absl::OkStatus();
  const int grid = GridFor((p.num_tokens + kWarpsPerCta - 1) / kWarpsPerCta);
  return LaunchKernel("RouteKernel", RouteKernel, grid, kWarpsPerCta * 32, 0, stream, p);
}

absl::Status LaunchMoePlan(const MoePlanParams& p, CudaStream stream) {
  if (absl::Status s = ValidateMoePlanParams(p); !s.ok()) return s;
  const int grid = (p.num_experts + kWarpsPerCta - 1) / kWarpsPerCta;
  const dim3 block(kWarpsPerCta * 32);
  if (absl::Status s = LaunchKernel("CountKernel", CountKernel, grid, block, 0, stream, p);
      !s.ok()) {
    return s;
  }
  return LaunchKernel("PlaceKernel", PlaceKernel, grid, block, 0, stream, p);
}

absl::Status LaunchMoePermute(const MoePermuteParams& p, CudaStream stream) {
  if (absl::Status s = ValidateMoePermuteParams(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  return LaunchKernel("PermuteKernel", PermuteKernel, GridFor(p.num_rows), kThreads, 0, stream, p);
}

absl::Status LaunchMoeUnpermute(const MoeUnpermuteParams& p, CudaStream stream) {
  if (absl::Status s = ValidateMoeUnpermuteParams(p); !s.ok()) return s;
  if (p.num_tokens == 0) return absl::OkStatus();
  return LaunchKernel("UnpermuteKernel", UnpermuteKernel, GridFor(p.num_tokens), kThreads, 0,
                      stream, p);
}

}  // namespace mla::cuda
