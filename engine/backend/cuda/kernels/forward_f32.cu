// Kernels of CudaBackend's fp32 activations (declared in forward_f32.h). Pointwise kernels
// run one CTA per row; the attention kernels one CTA per (query row, head) with four warps
// walking the keys. They aim at being right first: the split-KV decode kernel of
// mla_decode.h and a decompressed prefill path are the fast paths to route to later.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/cache_row.cuh"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/backend/cuda/kernels/launch.cuh"

namespace mla::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kAttnWarps = 4;
constexpr int kLatentPerLane = kMlaF32MaxLatent / 32;
constexpr int64_t kMaxGrid = 65535;

unsigned GridFor(int64_t rows) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(rows, kMaxGrid)));
}

absl::Status Invalid(const char* kernel, const char* what) {
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", what));
}

bool Valid(const F32Matrix& m) {
  return m.rows >= 0 && m.cols >= 0 && (m.rows <= 1 || m.stride >= m.cols) &&
         (m.rows == 0 || m.cols == 0 || m.data != nullptr);
}

bool Empty(const F32Matrix& m) { return m.rows == 0 || m.cols == 0; }

__global__ void EmbedKernel(EmbedF32Params p) {
  for (int64_t t = blockIdx.x; t < p.out.rows; t += gridDim.x) {
    const int32_t id = p.ids[t];
    float* out = p.out.data + t * p.out.stride;
    const bool ok = id >= 0 && id < p.vocab;
    for (int64_t i = threadIdx.x; i < p.out.cols; i += blockDim.x) {
      float v = 0.0f;
      if (ok) {
        v = p.table_f32 != nullptr ? p.table_f32[id * p.table_stride + i]
                                   : Bf16Bits(p.table_bf16[id * p.table_stride + i]);
      }
      out[i] = v;
    }
  }
}

// A double-precision block sum (the CPU sums RMSNorm's squares in double).
__device__ double BlockSumDouble(double v) {
  __shared__ double partial[32];
  __shared__ double total;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double t = lane < static_cast<int>((blockDim.x + 31) >> 5) ? partial[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) t += __shfl_xor_sync(0xffffffffu, t, offset);
    if (lane == 0) total = t;
  }
  __syncthreads();
  const double result = total;
  __syncthreads();
  return result;
}

__device__ float WeightAt(const float* f32, const bf16_t* bf16, int64_t i) {
  return f32 != nullptr ? f32[i] : Bf16Bits(bf16[i]);
}

__global__ void RmsNormKernel(RmsNormF32Params p) {
  const int64_t dim = p.x.cols;
  for (int64_t r = blockIdx.x; r < p.x.rows; r += gridDim.x) {
    const float* x = p.x.data + r * p.x.stride;
    float* out = p.out.data + r * p.out.stride;
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      sum += static_cast<double>(x[i]) * x[i];
    }
    sum = BlockSumDouble(sum);  // Also orders every read of x before the writes.
    const float inv = 1.0f / sqrtf(static_cast<float>(sum / dim) + p.eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      out[i] = __fmul_rn(WeightAt(p.weight_f32, p.weight_bf16, i), __fmul_rn(x[i], inv));
    }
  }
}

// The CPU's arithmetic (engine/backend/cpu/pointwise.cc): the mean, then the squared
// deviations from it, in double; the output in fp32, never contracted to FMA.
__global__ void LayerNormKernel(LayerNormF32Params p) {
  const int64_t dim = p.x.cols;
  for (int64_t r = blockIdx.x; r < p.x.rows; r += gridDim.x) {
    const float* x = p.x.data + r * p.x.stride;
    float* out = p.out.data + r * p.out.stride;
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += x[i];
    const double mean = BlockSumDouble(sum) / dim;
    double sq = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const double d = x[i] - mean;
      sq += d * d;
    }
    sq = BlockSumDouble(sq);  // Also orders every read of x before the writes.
    const float inv = 1.0f / sqrtf(static_cast<float>(sq / dim) + p.eps);
    const float m = static_cast<float>(mean);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float y =
          __fmul_rn(__fmul_rn(__fsub_rn(x[i], m), inv), WeightAt(p.weight_f32, p.weight_bf16, i));
      out[i] = __fadd_rn(y, WeightAt(p.bias_f32, p.bias_bf16, i));
    }
  }
}

__global__ void AddKernel(F32Matrix x, F32Matrix y) {
  for (int64_t r = blockIdx.x; r < y.rows; r += gridDim.x) {
    for (int64_t i = threadIdx.x; i < y.cols; i += blockDim.x) {
      y.data[r * y.stride + i] += x.data[r * x.stride + i];
    }
  }
}

__global__ void FillKernel(F32Matrix t, float value) {
  for (int64_t r = blockIdx.x; r < t.rows; r += gridDim.x) {
    for (int64_t i = threadIdx.x; i < t.cols; i += blockDim.x) t.data[r * t.stride + i] = value;
  }
}

__global__ void SiluMulKernel(F32Matrix gate, F32Matrix up, F32Matrix out) {
  for (int64_t r = blockIdx.x; r < out.rows; r += gridDim.x) {
    for (int64_t i = threadIdx.x; i < out.cols; i += blockDim.x) {
      const float g = gate.data[r * gate.stride + i];
      // expf, not __expf: the CPU's std::exp to within an ulp or two.
      out.data[r * out.stride + i] =
          __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up.data[r * up.stride + i]);
    }
  }
}

__global__ void RopeKernel(RopeF32Params p) {
  const int64_t half = p.cos.cols;
  for (int64_t t = blockIdx.x; t < p.x.rows; t += gridDim.x) {
    const float* c = p.cos.data + t * p.cos.stride;
    const float* s = p.sin.data + t * p.sin.stride;
    for (int64_t k = threadIdx.x; k < p.heads * half; k += blockDim.x) {
      const int64_t v = k / half, i = k % half;
      float* x = p.x.data + t * p.x.stride + v * p.head_stride + (p.halves ? i : 2 * i);
      const int64_t second = p.halves ? half : 1;
      const float a = x[0], b = x[second];
      // Separate multiplies and adds, as the CPU rounds them (never contracted to FMA).
      x[0] = __fsub_rn(__fmul_rn(a, c[i]), __fmul_rn(b, s[i]));
      x[second] = __fadd_rn(__fmul_rn(a, s[i]), __fmul_rn(b, c[i]));
    }
  }
}

__global__ void ToBf16Kernel(F32Matrix x, uint16_t* out) {
  for (int64_t r = blockIdx.x; r < x.rows; r += gridDim.x) {
    for (int64_t i = threadIdx.x; i < x.cols; i += blockDim.x) {
      out[r * x.cols + i] = ToBf16Bits(x.data[r * x.stride + i]);
    }
  }
}

__global__ void IndexKeyWriteKernel(F32Matrix keys, const int64_t* slots, uint16_t* cache) {
  for (int64_t t = blockIdx.x; t < keys.rows; t += gridDim.x) {
    uint16_t* dst = cache + slots[t] * keys.cols;
    for (int64_t i = threadIdx.x; i < keys.cols; i += blockDim.x) {
      dst[i] = ToBf16Bits(keys.data[t * keys.stride + i]);
    }
  }
}

// FP8 keys: a warp per key, quantized in one group (index_key_row.h), codes at the slot's
// place in its block region and the scale after the block's codes.
__global__ void IndexKeyWriteFp8Kernel(F32Matrix keys, const int64_t* slots, uint8_t* cache,
                                       int block_size) {
  const int warps = static_cast<int>(blockDim.x) / 32;
  const int64_t dim = keys.cols;
  for (int64_t t = int64_t{blockIdx.x} * warps + threadIdx.x / 32; t < keys.rows;
       t += int64_t{gridDim.x} * warps) {
    const int64_t block = slots[t] / block_size, offset = slots[t] % block_size;
    uint8_t* region = cache + block * block_size * (dim + 4);
    QuantizeFp8GroupWarp(keys.data + t * keys.stride, static_cast<int>(dim), region + offset * dim,
                         region + block_size * dim + 4 * offset);
  }
}

__global__ void FromBf16Kernel(const uint16_t* x, F32Matrix out) {
  for (int64_t r = blockIdx.x; r < out.rows; r += gridDim.x) {
    for (int64_t i = threadIdx.x; i < out.cols; i += blockDim.x) {
      out.data[r * out.stride + i] = Bf16Bits(x[r * out.cols + i]);
    }
  }
}

__global__ void CacheWriteKernel(CacheWriteF32Params p) {
  const int lat = static_cast<int>(p.latent.cols), rope = static_cast<int>(p.k_pe.cols);
  const int64_t row_bytes = CacheRowBytesOf(p.cache_fp8, lat, rope);
  for (int64_t t = blockIdx.x; t < p.latent.rows; t += gridDim.x) {
    uint8_t* dst = static_cast<uint8_t*>(p.cache) + p.slots[t] * row_bytes;
    const float* latent = p.latent.data + t * p.latent.stride;
    const float* k_pe = p.k_pe.data + t * p.k_pe.stride;
    if (!p.cache_fp8) {
      uint16_t* row = reinterpret_cast<uint16_t*>(dst);
      for (int i = threadIdx.x; i < lat + rope; i += blockDim.x) {
        row[i] = ToBf16Bits(i < lat ? latent[i] : k_pe[i - lat]);
      }
      continue;
    }
    // A warp per group of 128, then k_pe in bf16 byte by byte (an fp8 row may be odd-sized).
    const int groups = CacheFp8Groups(lat), warps = static_cast<int>(blockDim.x) / 32;
    for (int g = threadIdx.x / 32; g < groups; g += warps) {
      const int first = g * kCacheFp8Group;
      QuantizeFp8GroupWarp(latent + first, min(kCacheFp8Group, lat - first), dst + first,
                           dst + lat + 4 * g);
    }
    uint8_t* rope_dst = dst + lat + 4 * groups;
    for (int i = threadIdx.x; i < rope; i += blockDim.x) {
      const uint32_t v = Bf16BitsAsInteger(k_pe[i]);
      rope_dst[2 * i] = static_cast<uint8_t>(v & 0xffu);
      rope_dst[2 * i + 1] = static_cast<uint8_t>(v >> 8);
    }
  }
}

// Online softmax state of one warp over its share of the keys.
struct WarpState {
  float m = -INFINITY;
  float l = 0.0f;
};

// One CTA per (row, head): q in shared memory, warp w takes keys w, w + 4, ...; each lane
// keeps L/32 output values. The four warps' states merge through shared memory at the end.
__global__ void __launch_bounds__(kAttnWarps * 32) MlaAttentionKernel(MlaAttentionF32Params p) {
  __shared__ float q_s[kMlaF32MaxWidth];
  __shared__ float acc_s[kAttnWarps][kMlaF32MaxLatent];
  __shared__ float m_s[kAttnWarps];
  __shared__ float l_s[kAttnWarps];
  __shared__ int seen_s[kAttnWarps];
  const int64_t row = blockIdx.x;
  const int head = blockIdx.y;
  const int width = p.latent + p.rope;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int s = p.row_seq[row];
  if (p.skip_seq != nullptr && p.skip_seq[s] != 0) return;  // The whole CTA, before any barrier.
  const float* q = p.q + row * int64_t{p.heads} * width + int64_t{head} * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) q_s[i] = q[i];
  __syncthreads();
  const int64_t visible = int64_t{p.q_pos0[s]} + (row - p.cu_seqlens_q[s]) + 1;
  // Dense: keys 0..visible−1. Sparse: the row's selected positions, in selection order.
  const int32_t* selected = p.selected != nullptr ? p.selected + row * p.topk : nullptr;
  const int64_t num_keys = selected != nullptr ? p.topk : visible;
  const int32_t* blocks = p.block_table + int64_t{s} * p.max_blocks;
  float acc[kLatentPerLane];
#pragma unroll
  for (int j = 0; j < kLatentPerLane; ++j) acc[j] = 0.0f;
  WarpState st;
  int seen = 0;  // Keys this warp attended to.
  for (int64_t i = warp; i < num_keys; i += kAttnWarps) {
    const int64_t k = selected != nullptr ? selected[i] : i;
    if (k < 0 || k >= visible) continue;  // Warp-uniform: one key per warp.
    ++seen;
    const CacheRowView key =
        CacheRowAt(p.cache, p.cache_fp8, p.latent, p.rope,
                   int64_t{blocks[k / p.block_size]} * p.block_size + k % p.block_size);
    float dot = 0.0f;
    for (int i = lane; i < width; i += 32) dot = fmaf(q_s[i], key.At(i), dot);
    const float score = WarpSum(dot) * p.softmax_scale;
    const float m_new = fmaxf(st.m, score);
    const float correction = expf(st.m - m_new);  // 0 on the first key (m = −inf).
    const float w = expf(score - m_new);
    st.l = st.l * correction + w;
    st.m = m_new;
#pragma unroll
    for (int j = 0; j < kLatentPerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < p.latent) acc[j] = fmaf(w, key.Latent(i), acc[j] * correction);
    }
  }
#pragma unroll
  for (int j = 0; j < kLatentPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i < p.latent) acc_s[warp][i] = acc[j];
  }
  if (lane == 0) {
    m_s[warp] = st.m;
    l_s[warp] = st.l;
    seen_s[warp] = seen;
  }
  __syncthreads();
  int attended = 0;
  for (int w = 0; w < kAttnWarps; ++w) attended += seen_s[w];
  float m = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) m = fmaxf(m, m_s[w]);
  float scale[kAttnWarps];
  float l = 0.0f;
  for (int w = 0; w < kAttnWarps; ++w) {
    scale[w] = m_s[w] == -INFINITY ? 0.0f : expf(m_s[w] - m);  // A warp that saw no key.
    l += l_s[w] * scale[w];
  }
  float* out = p.out + row * int64_t{p.heads} * p.latent + int64_t{head} * p.latent;
  for (int i = threadIdx.x; i < p.latent; i += blockDim.x) {
    float v = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) v += acc_s[w][i] * scale[w];
    // Tested on the key count, not on l: a NaN read from the cache must reach the output.
    out[i] = attended > 0 ? v / l : 0.0f;
  }
  if (threadIdx.x == 0) p.lse[row * p.heads + head] = attended > 0 ? m + logf(l) : -INFINITY;
}

// One CTA per head; each thread walks keys tid, tid + 256, ... keeping (m, Z, A), merged
// by thread 0 at the end (telemetry of one row: simplicity beats speed here).
__global__ void __launch_bounds__(kThreads) ProbeKernel(ProbeF32Params p) {
  __shared__ float q_s[kMlaF32MaxWidth];
  __shared__ float m_s[kThreads], z_s[kThreads], a_s[kThreads];
  const int width = p.latent + p.rope;
  const float* q = p.q + int64_t{blockIdx.x} * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) q_s[i] = q[i];
  __syncthreads();
  float m = -INFINITY, z = 0.0f, a = 0.0f;
  for (int64_t k = threadIdx.x; k < p.num_keys; k += blockDim.x) {
    const CacheRowView key =
        CacheRowAt(p.cache, p.cache_fp8, p.latent, p.rope,
                   int64_t{p.blocks[k / p.block_size]} * p.block_size + k % p.block_size);
    float dot = 0.0f;
    for (int i = 0; i < width; ++i) dot = fmaf(q_s[i], key.At(i), dot);
    const float s = dot * p.softmax_scale;
    const float m_new = fmaxf(m, s);
    const float c = expf(m - m_new), e = expf(s - m_new);
    z = z * c + e;
    a = a * c + e * s;
    m = m_new;
  }
  m_s[threadIdx.x] = m;
  z_s[threadIdx.x] = z;
  a_s[threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.x != 0) return;
  float M = -INFINITY;
  for (int t = 0; t < kThreads; ++t) M = fmaxf(M, m_s[t]);
  float Z = 0.0f, A = 0.0f;
  for (int t = 0; t < kThreads; ++t) {
    if (m_s[t] == -INFINITY) continue;
    const float c = expf(m_s[t] - M);
    Z += z_s[t] * c;
    A += a_s[t] * c;
  }
  p.stats[blockIdx.x * 3 + 0] = M;
  p.stats[blockIdx.x * 3 + 1] = Z;
  p.stats[blockIdx.x * 3 + 2] = A;
}

__global__ void GatherRowsKernel(F32Matrix x, const int32_t* sorted_pairs, int top_k,
                                 F32Matrix out) {
  for (int64_t r = blockIdx.x; r < out.rows; r += gridDim.x) {
    const float* src = x.data + int64_t{sorted_pairs[r] / top_k} * x.stride;
    for (int64_t i = threadIdx.x; i < out.cols; i += blockDim.x)
      out.data[r * out.stride + i] = src[i];
  }
}

__global__ void CombineKernel(F32Matrix expert_out, const int32_t* pair_rows, const float* weights,
                              int top_k, F32Matrix out) {
  for (int64_t t = blockIdx.x; t < out.rows; t += gridDim.x) {
    for (int64_t i = threadIdx.x; i < out.cols; i += blockDim.x) {
      float v = out.data[t * out.stride + i];
      for (int j = 0; j < top_k; ++j) {
        const int64_t pair = t * top_k + j;
        v = fmaf(weights[pair], expert_out.data[int64_t{pair_rows[pair]} * expert_out.stride + i],
                 v);
      }
      out.data[t * out.stride + i] = v;
    }
  }
}

}  // namespace

absl::Status LaunchEmbedF32(const EmbedF32Params& p, CudaStream stream) {
  if (!Valid(p.out) || p.vocab < 0 || p.table_stride < p.out.cols) {
    return Invalid("EmbedF32", "bad output or table shape");
  }
  if (Empty(p.out)) return absl::OkStatus();
  if (p.ids == nullptr || (p.table_bf16 == nullptr) == (p.table_f32 == nullptr)) {
    return Invalid("EmbedF32", "needs ids and exactly one of table_bf16, table_f32");
  }
  return LaunchKernel("EmbedF32", EmbedKernel, GridFor(p.out.rows), kThreads, 0, stream, p);
}

absl::Status LaunchRmsNormF32(const RmsNormF32Params& p, CudaStream stream) {
  if (!Valid(p.x) || !Valid(p.out) || p.x.rows != p.out.rows || p.x.cols != p.out.cols) {
    return Invalid("RmsNormF32", "x and out must have one shape");
  }
  if (Empty(p.x)) return absl::OkStatus();
  if ((p.weight_f32 == nullptr) == (p.weight_bf16 == nullptr)) {
    return Invalid("RmsNormF32", "needs exactly one of weight_f32, weight_bf16");
  }
  return LaunchKernel("RmsNormF32", RmsNormKernel, GridFor(p.x.rows), kThreads, 0, stream, p);
}

absl::Status LaunchLayerNormF32(const LayerNormF32Params& p, CudaStream stream) {
  if (!Valid(p.x) || !Valid(p.out) || p.x.rows != p.out.rows || p.x.cols != p.out.cols) {
    return Invalid("LayerNormF32", "x and out must have one shape");
  }
  if (Empty(p.x)) return absl::OkStatus();
  if ((p.weight_f32 == nullptr) == (p.weight_bf16 == nullptr) ||
      (p.bias_f32 == nullptr) == (p.bias_bf16 == nullptr)) {
    return Invalid("LayerNormF32",
                   "needs exactly one of weight_f32, weight_bf16 and of bias_f32, bias_bf16");
  }
  return LaunchKernel("LayerNormF32", LayerNormKernel, GridFor(p.x.rows), kThreads, 0, stream, p);
}

absl::Status LaunchAddF32(const F32Matrix& x, const F32Matrix& y, CudaStream stream) {
  if (!Valid(x) || !Valid(y) || x.rows != y.rows || x.cols != y.cols) {
    return Invalid("AddF32", "x and y must have one shape");
  }
  if (Empty(y)) return absl::OkStatus();
  return LaunchKernel("AddF32", AddKernel, GridFor(y.rows), kThreads, 0, stream, x, y);
}

absl::Status LaunchFillF32(const F32Matrix& t, float value, CudaStream stream) {
  if (!Valid(t)) return Invalid("FillF32", "bad shape");
  if (Empty(t)) return absl::OkStatus();
  return LaunchKernel("FillF32", FillKernel, GridFor(t.rows), kThreads, 0, stream, t, value);
}

absl::Status LaunchSiluMulF32(const F32Matrix& gate, const F32Matrix& up, const F32Matrix& out,
                              CudaStream stream) {
  if (!Valid(gate) || !Valid(up) || !Valid(out) || gate.rows != out.rows || up.rows != out.rows ||
      gate.cols != out.cols || up.cols != out.cols) {
    return Invalid("SiluMulF32", "gate, up and out must have one shape");
  }
  if (Empty(out)) return absl::OkStatus();
  return LaunchKernel("SiluMulF32", SiluMulKernel, GridFor(out.rows), kThreads, 0, stream, gate, up,
                      out);
}

absl::Status LaunchRopeF32(const RopeF32Params& p, CudaStream stream) {
  if (!Valid(p.cos) || !Valid(p.sin) || p.cos.rows < p.x.rows || p.sin.rows < p.x.rows ||
      p.cos.cols != p.sin.cols || p.heads < 0 || p.x.rows < 0 ||
      (p.heads > 1 && p.head_stride < 2 * p.cos.cols)) {
    return Invalid("RopeF32", "cos/sin must cover x's rows and heads must not overlap");
  }
  if (p.x.rows == 0 || p.heads == 0 || p.cos.cols == 0) return absl::OkStatus();
  if (p.x.data == nullptr) return Invalid("RopeF32", "x is null");
  if (p.halves && p.heads > 1 && p.head_stride < 2 * p.cos.cols) {
    return Invalid("RopeF32", "half-split heads must not overlap");
  }
  return LaunchKernel("RopeF32", RopeKernel, GridFor(p.x.rows), kThreads, 0, stream, p);
}

absl::Status LaunchToBf16(const F32Matrix& x, bf16_t* out, CudaStream stream) {
  if (!Valid(x)) return Invalid("ToBf16", "bad shape");
  if (Empty(x)) return absl::OkStatus();
  if (out == nullptr) return Invalid("ToBf16", "out is null");
  return LaunchKernel("ToBf16", ToBf16Kernel, GridFor(x.rows), kThreads, 0, stream, x, out);
}

absl::Status LaunchFromBf16(const bf16_t* x, const F32Matrix& out, CudaStream stream) {
  if (!Valid(out)) return Invalid("FromBf16", "bad shape");
  if (Empty(out)) return absl::OkStatus();
  if (x == nullptr) return Invalid("FromBf16", "x is null");
  return LaunchKernel("FromBf16", FromBf16Kernel, GridFor(out.rows), kThreads, 0, stream, x, out);
}

absl::Status LaunchCacheWriteF32(const CacheWriteF32Params& p, CudaStream stream) {
  if (!Valid(p.latent) || !Valid(p.k_pe) || p.latent.rows != p.k_pe.rows) {
    return Invalid("CacheWriteF32", "latent and k_pe must have the same rows");
  }
  if (p.latent.rows == 0) return absl::OkStatus();
  if (p.slots == nullptr || p.cache == nullptr) return Invalid("CacheWriteF32", "null pointer");
  return LaunchKernel("CacheWriteF32", CacheWriteKernel, GridFor(p.latent.rows), kThreads, 0,
                      stream, p);
}

absl::Status LaunchIndexKeyWriteF32(const F32Matrix& keys, const int64_t* slots, void* cache,
                                    bool fp8, int block_size, CudaStream stream) {
  if (!Valid(keys) || (fp8 && block_size < 1)) return Invalid("IndexKeyWriteF32", "bad shape");
  if (Empty(keys)) return absl::OkStatus();
  if (slots == nullptr || cache == nullptr) return Invalid("IndexKeyWriteF32", "null pointer");
  if (fp8) {
    return LaunchKernel("IndexKeyWriteFp8", IndexKeyWriteFp8Kernel,
                        GridFor((keys.rows + kThreads / 32 - 1) / (kThreads / 32)), kThreads, 0,
                        stream, keys, slots, static_cast<uint8_t*>(cache), block_size);
  }
  return LaunchKernel("IndexKeyWriteF32", IndexKeyWriteKernel, GridFor(keys.rows), kThreads, 0,
                      stream, keys, slots, static_cast<uint16_t*>(cache));
}

absl::Status LaunchMlaAttentionF32(const MlaAttentionF32Params& p, CudaStream stream) {
  if (p.num_rows < 0 || p.heads < 1 || p.heads > 65535 || p.latent < 1 ||
      p.latent > kMlaF32MaxLatent || p.rope < 0 || p.latent + p.rope > kMlaF32MaxWidth ||
      p.block_size < 1 || p.num_rows > (int64_t{1} << 31) - 1) {
    return Invalid("MlaAttentionF32", "shape outside the kernel's limits");
  }
  if (p.num_rows == 0) return absl::OkStatus();
  if (p.cache == nullptr || p.block_table == nullptr || p.q_pos0 == nullptr ||
      p.cu_seqlens_q == nullptr || p.row_seq == nullptr || p.q == nullptr || p.out == nullptr ||
      p.lse == nullptr) {
    return Invalid("MlaAttentionF32", "null pointer");
  }
  if (p.selected != nullptr && p.topk < 1) return Invalid("MlaAttentionF32", "topk must be >= 1");
  const dim3 grid(static_cast<unsigned>(p.num_rows), static_cast<unsigned>(p.heads));
  return LaunchKernel("MlaAttentionF32", MlaAttentionKernel, grid, kAttnWarps * 32, 0, stream, p);
}

absl::Status LaunchProbeF32(const ProbeF32Params& p, CudaStream stream) {
  if (p.heads < 1 || p.heads > 65535 || p.latent < 1 || p.rope < 0 ||
      p.latent + p.rope > kMlaF32MaxWidth || p.block_size < 1 || p.num_keys < 1) {
    return Invalid("ProbeF32", "shape outside the kernel's limits");
  }
  if (p.cache == nullptr || p.blocks == nullptr || p.q == nullptr || p.stats == nullptr) {
    return Invalid("ProbeF32", "null pointer");
  }
  return LaunchKernel("ProbeF32", ProbeKernel, static_cast<unsigned>(p.heads), kThreads, 0, stream,
                      p);
}

absl::Status LaunchGatherRowsF32(const F32Matrix& x, const int32_t* sorted_pairs, int top_k,
                                 const F32Matrix& out, CudaStream stream) {
  if (!Valid(x) || !Valid(out) || x.cols != out.cols || top_k < 1) {
    return Invalid("GatherRowsF32", "x and out must have the same columns, top_k >= 1");
  }
  if (Empty(out)) return absl::OkStatus();
  if (sorted_pairs == nullptr) return Invalid("GatherRowsF32", "sorted_pairs is null");
  return LaunchKernel("GatherRowsF32", GatherRowsKernel, GridFor(out.rows), kThreads, 0, stream, x,
                      sorted_pairs, top_k, out);
}

absl::Status LaunchCombineExpertsF32(const F32Matrix& expert_out, const int32_t* pair_rows,
                                     const float* weights, int top_k, const F32Matrix& out,
                                     CudaStream stream) {
  if (!Valid(expert_out) || !Valid(out) || expert_out.cols != out.cols || top_k < 1) {
    return Invalid("CombineExpertsF32", "expert_out and out must have the same columns");
  }
  if (Empty(out)) return absl::OkStatus();
  if (pair_rows == nullptr || weights == nullptr) {
    return Invalid("CombineExpertsF32", "null pointer");
  }
  return LaunchKernel("CombineExpertsF32", CombineKernel, GridFor(out.rows), kThreads, 0, stream,
                      expert_out, pair_rows, weights, top_k, out);
}

}  // namespace mla::cuda
