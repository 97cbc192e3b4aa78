// The lightning indexer's kernels (declared in indexer.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/indexer.h"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {
namespace {

constexpr int kScoreWarps = 4;
constexpr int kKeysPerCta = 64;
constexpr int kMaxDimPerLane = 8;  // index_key_dim ≤ 256
constexpr int kSelectThreads = 256;
constexpr int64_t kMaxGrid = 65535;

// Keys row `row` of the step (numbered in the whole step) may see.
__device__ int64_t Visible(const IndexerF32Params& p, int64_t row) {
  const int s = p.row_seq[row];
  return int64_t{p.q_pos0[s]} + (row - p.cu_seqlens_q[s]) + 1;
}

// grid (rows, key chunks): each warp scores keys first + warp, first + warp + 4, ... of its
// chunk; per key the heads are summed in order, each term rounded as the CPU rounds it
// (only the dot products' summation order differs).
__global__ void __launch_bounds__(kScoreWarps * 32) IndexerScoresKernel(IndexerF32Params p) {
  __shared__ float q_s[kIndexerMaxQ];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int qn = p.heads * p.dim;
  for (int64_t r = blockIdx.x; r < p.num_rows; r += gridDim.x) {
    const int64_t row = p.first_row + r;
    const int64_t visible = Visible(p, row);
    const int64_t first = int64_t{blockIdx.y} * kKeysPerCta;
    if (first >= visible) continue;  // The same for the whole CTA.
    __syncthreads();                 // The previous row's readers of q_s are done.
    for (int i = threadIdx.x; i < qn; i += blockDim.x) q_s[i] = p.q[row * qn + i];
    __syncthreads();
    const int32_t* blocks = p.block_table + int64_t{p.row_seq[row]} * p.max_blocks;
    const float* w = p.w + row * p.heads;
    const int64_t last = min(visible, first + kKeysPerCta);
    for (int64_t k = first + warp; k < last; k += kScoreWarps) {
      const bf16_t* key =
          p.keys + (int64_t{blocks[k / p.block_size]} * p.block_size + k % p.block_size) * p.dim;
      float kv[kMaxDimPerLane];
#pragma unroll
      for (int j = 0; j < kMaxDimPerLane; ++j) {
        const int i = lane + 32 * j;
        kv[j] = i < p.dim ? Bf16Bits(key[i]) : 0.0f;
      }
      float acc = 0.0f;
      for (int h = 0; h < p.heads; ++h) {
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < kMaxDimPerLane; ++j) {
          const int i = lane + 32 * j;
          if (i < p.dim) dot = fmaf(q_s[h * p.dim + i], kv[j], dot);
        }
        const float x = __fmul_rn(p.scale, WarpSum(dot));
        const float relu = x < 0.0f ? 0.0f : x;  // std::max(x, 0.0f): keeps −0 and NaN
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(p.weight_scale, w[h]), relu));
      }
      if (lane == 0) p.scores[r * p.scores_stride + k] = acc;
    }
  }
}

// The tensor-core scores (index_key_dim a multiple of 16): per (row, 64-key chunk) one CTA
// of kScoreWarps warps computes S = Q · Kᵀ, heads × 64 keys, as m16n8k16 products (q
// rounded to bf16, as the model's indexer runs in bf16 in transformers; the keys are bf16
// in the cache), the warps taking the 16-head tiles in turn. Each product then goes
// through the CPU's roundings (scale · dot, relu, times weight_scale · w[h]); a warp sums
// its heads per key, and the warps' sums are added in warp order.
struct MmaScoreShared {
  uint32_t* q;     // [heads rounded up to 16, stride] bf16 pairs
  uint32_t* keys;  // [kKeysPerCta, stride]
  float* w;        // [heads rounded up to 16]: weight_scale · w[h], 0 for padding
  float* sums;     // [kScoreWarps, kKeysPerCta]
};

__host__ __device__ inline int PaddedHeads(int heads) { return (heads + 15) / 16 * 16; }

__host__ __device__ inline size_t MmaScoreSharedBytes(int heads, int dim) {
  const int stride = MmaRowStrideWords(dim);
  return sizeof(uint32_t) * size_t(PaddedHeads(heads) + kKeysPerCta) * stride +
         sizeof(float) * (PaddedHeads(heads) + kScoreWarps * kKeysPerCta);
}

__global__ void __launch_bounds__(kScoreWarps * 32) IndexerScoresMmaKernel(IndexerF32Params p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int stride = MmaRowStrideWords(p.dim), heads16 = PaddedHeads(p.heads);
  const int words = p.dim / 2;
  unsigned char* base = DynamicSharedMemory();
  MmaScoreShared s;
  s.q = reinterpret_cast<uint32_t*>(base);
  s.keys = s.q + heads16 * stride;
  s.w = reinterpret_cast<float*>(s.keys + kKeysPerCta * stride);
  s.sums = s.w + heads16;
  for (int64_t r = blockIdx.x; r < p.num_rows; r += gridDim.x) {
    const int64_t row = p.first_row + r;
    const int64_t visible = Visible(p, row);
    const int64_t first = int64_t{blockIdx.y} * kKeysPerCta;
    if (first >= visible) continue;  // The same for the whole CTA.
    __syncthreads();                 // The previous row's readers of shared memory are done.
    const float* q = p.q + row * p.heads * p.dim;
    for (int i = threadIdx.x; i < heads16 * words; i += blockDim.x) {
      const int h = i / words, w = i - h * words;
      uint32_t word = 0u;
      if (h < p.heads) {
        word = uint32_t{ToBf16Bits(q[h * p.dim + 2 * w])} |
               (uint32_t{ToBf16Bits(q[h * p.dim + 2 * w + 1])} << 16);
      }
      s.q[h * stride + w] = word;
    }
    for (int h = threadIdx.x; h < heads16; h += blockDim.x) {
      s.w[h] = h < p.heads ? __fmul_rn(p.weight_scale, p.w[row * p.heads + h]) : 0.0f;
    }
    const int32_t* blocks = p.block_table + int64_t{p.row_seq[row]} * p.max_blocks;
    for (int i = threadIdx.x; i < kKeysPerCta * words; i += blockDim.x) {
      const int k = i / words, w = i - k * words;
      const int64_t key = first + k;
      uint32_t word = 0u;  // Keys past the row's view: zeros, never written out.
      if (key < visible) {
        const bf16_t* row_ptr =
            p.keys +
            (int64_t{blocks[key / p.block_size]} * p.block_size + key % p.block_size) * p.dim;
        word = reinterpret_cast<const uint32_t*>(row_ptr)[w];
      }
      s.keys[k * stride + w] = word;
    }
    __syncthreads();
    // This warp's sums over its head tiles: lane (g, t) ends with keys 8n + 2t and
    // 8n + 2t + 1 of every n-tile n (valid in the lanes with g = 0).
    float key_sum[kKeysPerCta / 8][2] = {};
    for (int m0 = 16 * warp; m0 < heads16; m0 += 16 * kScoreWarps) {
      float acc[kKeysPerCta / 8][4] = {};
      for (int kw = 0; kw < words; kw += 8) {  // k-steps of 16 values
        const uint32_t* qa = s.q + m0 * stride;
        const uint32_t a0 = qa[MmaAWord(lane, 0, stride, kw)];
        const uint32_t a1 = qa[MmaAWord(lane, 1, stride, kw)];
        const uint32_t a2 = qa[MmaAWord(lane, 2, stride, kw)];
        const uint32_t a3 = qa[MmaAWord(lane, 3, stride, kw)];
#pragma unroll
        for (int n = 0; n < kKeysPerCta / 8; ++n) {
          Mma16816(acc[n], a0, a1, a2, a3, s.keys[MmaBWordOfRows(lane, 0, stride, 8 * n, kw)],
                   s.keys[MmaBWordOfRows(lane, 1, stride, 8 * n, kw)]);
        }
      }
#pragma unroll
      for (int n = 0; n < kKeysPerCta / 8; ++n) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          // Accumulators c and c + 2: heads g and g + 8 of the tile, key 8n + 2t + c.
          float v = 0.0f;
#pragma unroll
          for (int i = c; i < 4; i += 2) {
            const float x = __fmul_rn(p.scale, acc[n][i]);
            const float relu = x < 0.0f ? 0.0f : x;  // std::max(x, 0.0f), as the CPU
            v = __fadd_rn(v, __fmul_rn(s.w[m0 + PtxCRow(lane, i)], relu));
          }
          // The 8 lane groups' heads of this tile (lanes with the same t).
          for (int offset = 4; offset < 32; offset <<= 1) {
            v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, offset));
          }
          key_sum[n][c] = __fadd_rn(key_sum[n][c], v);
        }
      }
    }
    if (lane < 4) {
#pragma unroll
      for (int n = 0; n < kKeysPerCta / 8; ++n) {
        s.sums[warp * kKeysPerCta + 8 * n + 2 * lane] = key_sum[n][0];
        s.sums[warp * kKeysPerCta + 8 * n + 2 * lane + 1] = key_sum[n][1];
      }
    }
    __syncthreads();
    for (int k = threadIdx.x; k < kKeysPerCta; k += blockDim.x) {
      if (first + k >= visible) continue;
      float total = 0.0f;
      for (int w = 0; w < kScoreWarps; ++w) total = __fadd_rn(total, s.sums[w * kKeysPerCta + k]);
      p.scores[r * p.scores_stride + first + k] = total;
    }
  }
}

// Scores as unsigned integers in the order of the floats (larger float, larger integer);
// −0 counts as +0 (they compare equal), NaN below everything.
__device__ uint32_t OrderedBits(float f) {
  if (f != f) return 0u;
  if (f == 0.0f) f = 0.0f;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

// Exclusive prefix sum of v over the CTA; *total gets the sum of all. Every thread calls it.
__device__ int BlockExclusiveScan(int v, int* buf, int* total) {
  const int tid = threadIdx.x;
  buf[tid] = v;
  __syncthreads();
  for (int offset = 1; offset < static_cast<int>(blockDim.x); offset <<= 1) {
    const int add = tid >= offset ? buf[tid - offset] : 0;
    __syncthreads();
    buf[tid] += add;
    __syncthreads();
  }
  const int inclusive = buf[tid];
  *total = buf[blockDim.x - 1];
  __syncthreads();  // Every thread has read buf before the next scan writes it.
  return inclusive - v;
}

// One CTA per row. With more visible keys than topk: the topk-th largest score's bits by
// a radix select (8 bits a pass, from the top), then one pass in position order keeping
// every key above it and, of the keys equal to it, the lowest positions still needed.
__global__ void __launch_bounds__(kSelectThreads) IndexerSelectKernel(IndexerF32Params p) {
  __shared__ unsigned hist[256];
  __shared__ int scan_buf[kSelectThreads];
  __shared__ uint32_t prefix_s;
  __shared__ int remaining_s;
  const int tid = threadIdx.x;
  for (int64_t r = blockIdx.x; r < p.num_rows; r += gridDim.x) {
    const int64_t row = p.first_row + r;
    const int64_t n = Visible(p, row);
    int32_t* out = p.selected + row * p.topk;
    if (n <= p.topk) {
      for (int64_t i = tid; i < p.topk; i += blockDim.x)
        out[i] = i < n ? static_cast<int32_t>(i) : -1;
      continue;
    }
    const float* scores = p.scores + r * p.scores_stride;
    __syncthreads();  // The previous row is done with the shared state.
    if (tid == 0) {
      prefix_s = 0u;
      remaining_s = p.topk;
    }
    uint32_t mask = 0u;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0u;
      __syncthreads();
      const uint32_t prefix = prefix_s;
      for (int64_t s = tid; s < n; s += blockDim.x) {
        const uint32_t u = OrderedBits(scores[s]);
        if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 0xffu], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        int remaining = remaining_s;
        for (int b = 255; b >= 0; --b) {
          if (static_cast<int>(hist[b]) >= remaining) {
            prefix_s = prefix | (static_cast<uint32_t>(b) << shift);
            break;
          }
          remaining -= static_cast<int>(hist[b]);
        }
        remaining_s = remaining;
      }
      __syncthreads();
      mask |= 0xffu << shift;
    }
    const uint32_t threshold = prefix_s;
    const int equal_needed = remaining_s;  // Keys equal to the threshold to keep, lowest first.
    int taken = 0, equal_seen = 0;
    for (int64_t chunk = 0; chunk < n; chunk += blockDim.x) {
      const int64_t s = chunk + tid;
      const uint32_t u = s < n ? OrderedBits(scores[s]) : 0u;
      const bool equal = s < n && u == threshold;
      int equal_total = 0, take_total = 0;
      const int equal_rank = equal_seen + BlockExclusiveScan(equal ? 1 : 0, scan_buf, &equal_total);
      const bool take = s < n && (u > threshold || (equal && equal_rank < equal_needed));
      const int at = taken + BlockExclusiveScan(take ? 1 : 0, scan_buf, &take_total);
      if (take) out[at] = static_cast<int32_t>(s);
      taken += take_total;
      equal_seen += equal_total;
    }
  }
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("IndexerTopK: ", what));
}

}  // namespace

bool IndexerUsesTensorCores(const IndexerF32Params& p) {
  return p.kernel != IndexerKernel::kSimt && p.dim % 16 == 0;
}

absl::Status LaunchIndexerTopK(const IndexerF32Params& p, CudaStream stream) {
  if (p.num_rows < 0 || p.first_row < 0 || p.heads < 1 || p.dim < 1 ||
      p.dim > 32 * kMaxDimPerLane || int64_t{p.heads} * p.dim > kIndexerMaxQ || p.block_size < 1 ||
      p.max_blocks < 0 || p.topk < 1 || p.scores_stride < 0) {
    return Invalid(absl::StrCat("shape outside the kernel's limits (", p.heads, " heads of ", p.dim,
                                ", top ", p.topk, ")"));
  }
  if (p.num_rows == 0) return absl::OkStatus();
  if (p.keys == nullptr || p.block_table == nullptr || p.q_pos0 == nullptr ||
      p.cu_seqlens_q == nullptr || p.row_seq == nullptr || p.q == nullptr || p.w == nullptr ||
      p.scores == nullptr || p.selected == nullptr) {
    return Invalid("null pointer");
  }
  const int64_t chunks = (p.scores_stride + kKeysPerCta - 1) / kKeysPerCta;
  if (chunks > kMaxGrid) return Invalid("too many keys for one row");
  const unsigned rows = static_cast<unsigned>(std::min(p.num_rows, kMaxGrid));
  if (chunks > 0) {
    const dim3 grid(rows, static_cast<unsigned>(chunks));
    if (IndexerUsesTensorCores(p)) {
      const size_t smem = MmaScoreSharedBytes(p.heads, p.dim);
      const void* kernel = reinterpret_cast<const void*>(&IndexerScoresMmaKernel);
      if (absl::Status s = AllowDynamicSharedBytes(kernel, smem); !s.ok()) return s;
      if (absl::Status s = LaunchKernel("IndexerScoresMma", IndexerScoresMmaKernel, grid,
                                        kScoreWarps * 32, smem, stream, p);
          !s.ok()) {
        return s;
      }
    } else if (absl::Status s = LaunchKernel("IndexerScores", IndexerScoresKernel, grid,
                                             kScoreWarps * 32, 0, stream, p);
               !s.ok()) {
      return s;
    }
  }
  return LaunchKernel("IndexerSelect", IndexerSelectKernel, dim3(rows), kSelectThreads, 0, stream,
                      p);
}

}  // namespace mla::cuda
