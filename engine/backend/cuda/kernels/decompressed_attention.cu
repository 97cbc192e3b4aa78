// Kernels of CudaBackend's decompressed attention (declared in decompressed_attention.h).
// Correct first: one CTA per (query row, head) walks the chunk's keys with four warps, as
// the absorbed kernel of forward_f32.cu does, but over nope + R score dimensions and v
// values per key (640 FLOP per head and key for DeepSeek instead of 2,176); tiling query
// rows per CTA so that a key is loaded once for many rows is the next step.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/cache_row.cuh"
#include "engine/backend/cuda/kernels/decompressed_attention.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"

namespace mla::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kVPerLane = kDecompressedMaxV / 32;
constexpr int64_t kMaxGrid = 65535;

__device__ __forceinline__ CacheRowView KeyRow(const void* cache, bool fp8, int latent, int rope,
                                               const int32_t* blocks, int block_size, int64_t key) {
  return CacheRowAt(cache, fp8, latent, rope,
                    int64_t{blocks[key / block_size]} * block_size + key % block_size);
}

__global__ void GatherLatentKernel(GatherLatentF32Params p) {
  for (int64_t i = blockIdx.x; i < p.out.rows; i += gridDim.x) {
    const CacheRowView row =
        KeyRow(p.cache, p.cache_fp8, p.latent, p.rope, p.blocks, p.block_size, p.first_key + i);
    float* out = p.out.data + i * p.out.stride;
    for (int c = threadIdx.x; c < p.latent; c += blockDim.x) out[c] = row.Latent(c);
  }
}

// One CTA per (row, head): q in shared memory, warp w takes the chunk's keys w, w + 4, ...
// that the row may see; each lane keeps v / 32 accumulators. The warps merge through
// shared memory, then with the state of the earlier chunks.
__global__ void __launch_bounds__(kWarps * 32)
    DecompressedChunkKernel(DecompressedChunkF32Params p) {
  __shared__ float q_s[kDecompressedMaxQk];
  __shared__ float acc_s[kWarps][kDecompressedMaxV];
  __shared__ float m_s[kWarps];
  __shared__ float l_s[kWarps];
  const int64_t row = blockIdx.x;
  const int head = blockIdx.y;
  const int qk = p.nope + p.rope, kv_width = p.nope + p.v;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float* q = p.q + row * p.q_stride + int64_t{head} * qk;
  for (int i = threadIdx.x; i < qk; i += blockDim.x) q_s[i] = q[i];
  float* state = p.state + (row * p.heads + head) * (int64_t{p.v} + 2);
  // Read before the barriers below; thread 0 rewrites them only after the last one.
  const float m_prev = p.first_chunk ? -INFINITY : state[p.v];
  const float l_prev = p.first_chunk ? 0.0f : state[p.v + 1];
  __syncthreads();
  const int64_t chunk_end = p.first_key + p.num_keys, visible_end = p.q_pos0 + row + 1;
  const int64_t end = chunk_end < visible_end ? chunk_end : visible_end;
  const int64_t kv_stride = int64_t{p.heads} * kv_width;
  float acc[kVPerLane];
#pragma unroll
  for (int j = 0; j < kVPerLane; ++j) acc[j] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t key = p.first_key + warp; key < end; key += kWarps) {
    const float* kv = p.kv + (key - p.first_key) * kv_stride + int64_t{head} * kv_width;
    const CacheRowView key_row =
        KeyRow(p.cache, p.cache_fp8, p.latent, p.rope, p.blocks, p.block_size, key);
    float dot = 0.0f;
    for (int i = lane; i < p.nope; i += 32) dot = fmaf(q_s[i], kv[i], dot);
    for (int i = lane; i < p.rope; i += 32) dot = fmaf(q_s[p.nope + i], key_row.Rope(i), dot);
    const float score = WarpSum(dot) * p.softmax_scale;
    const float m_new = fmaxf(m, score);
    const float correction = expf(m - m_new);  // 0 on the first key (m = −inf).
    const float w = expf(score - m_new);
    l = l * correction + w;
    m = m_new;
#pragma unroll
    for (int j = 0; j < kVPerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < p.v) acc[j] = fmaf(w, kv[p.nope + i], acc[j] * correction);
    }
  }
#pragma unroll
  for (int j = 0; j < kVPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i < p.v) acc_s[warp][i] = acc[j];
  }
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
  __syncthreads();
  // Merge the warps and the earlier chunks: every part is scaled to the common maximum; a
  // part that saw no key (m = −inf) weighs nothing.
  float m_all = m_prev;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, m_s[w]);
  float scale[kWarps];
  const float scale_prev = m_prev == -INFINITY ? 0.0f : expf(m_prev - m_all);
  float l_all = l_prev * scale_prev;
  for (int w = 0; w < kWarps; ++w) {
    scale[w] = m_s[w] == -INFINITY ? 0.0f : expf(m_s[w] - m_all);
    l_all += l_s[w] * scale[w];
  }
  float* out = p.out + row * p.out_stride + int64_t{head} * p.v;
  for (int i = threadIdx.x; i < p.v; i += blockDim.x) {
    float a = p.first_chunk ? 0.0f : state[i] * scale_prev;
    for (int w = 0; w < kWarps; ++w) a += acc_s[w][i] * scale[w];
    if (p.last_chunk) {
      out[i] = a / l_all;
    } else {
      state[i] = a;
    }
  }
  if (threadIdx.x == 0 && !p.last_chunk) {
    state[p.v] = m_all;
    state[p.v + 1] = l_all;
  }
}

}  // namespace

absl::Status LaunchGatherLatentF32(const GatherLatentF32Params& p, CudaStream stream) {
  if (absl::Status s = ValidateGatherLatentF32Params(p); !s.ok()) return s;
  if (p.out.rows == 0) return absl::OkStatus();
  const unsigned grid = static_cast<unsigned>(std::min(p.out.rows, kMaxGrid));
  return LaunchKernel("GatherLatentF32", GatherLatentKernel, grid, 128, 0, stream, p);
}

absl::Status LaunchDecompressedChunkF32(const DecompressedChunkF32Params& p, CudaStream stream) {
  if (absl::Status s = ValidateDecompressedChunkF32Params(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  const dim3 grid(static_cast<unsigned>(p.num_rows), static_cast<unsigned>(p.heads));
  return LaunchKernel("DecompressedChunkF32", DecompressedChunkKernel, grid, kWarps * 32, 0, stream,
                      p);
}

}  // namespace mla::cuda
