// The lightning indexer's kernels (declared in indexer.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/cache_row.cuh"
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
constexpr int kSelectThreads = 512;
constexpr int kSelectWarps = kSelectThreads / 32;
constexpr int64_t kMaxGrid = 65535;

// Bytes of one block's key region (index_key_row.h).
__host__ __device__ int64_t KeyRegionBytes(const IndexerF32Params& p) {
  return int64_t{p.block_size} * (p.keys_fp8 ? p.dim + 4 : 2 * p.dim);
}

// Key `key` of a sequence whose block-table row is `blocks`: its values (bf16 or e4m3) and,
// for FP8, its scale.
__device__ __forceinline__ const uint8_t* KeyValues(const IndexerF32Params& p,
                                                    const int32_t* blocks, int64_t key) {
  const uint8_t* region =
      static_cast<const uint8_t*>(p.keys) + int64_t{blocks[key / p.block_size]} * KeyRegionBytes(p);
  return region + (key % p.block_size) * p.dim * (p.keys_fp8 ? 1 : 2);
}
__device__ __forceinline__ float KeyScale(const IndexerF32Params& p, const int32_t* blocks,
                                          int64_t key) {
  const uint8_t* region =
      static_cast<const uint8_t*>(p.keys) + int64_t{blocks[key / p.block_size]} * KeyRegionBytes(p);
  // Byte loads: a region of an odd width and block size starts at any byte.
  return LoadF32Bytes(region + int64_t{p.block_size} * p.dim + 4 * (key % p.block_size));
}

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
      const uint8_t* key = KeyValues(p, blocks, k);
      float kv[kMaxDimPerLane];
#pragma unroll
      for (int j = 0; j < kMaxDimPerLane; ++j) {
        const int i = lane + 32 * j;
        kv[j] = i >= p.dim   ? 0.0f
                : p.keys_fp8 ? Fp8E4M3Value(key[i])
                             : Bf16Bits(reinterpret_cast<const uint16_t*>(key)[i]);
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
      if (p.keys_fp8) acc = __fmul_rn(acc, KeyScale(p, blocks, k));
      if (lane == 0) p.scores[r * p.scores_stride + k] = acc;
    }
  }
}

// The tensor-core scores (index_key_dim a multiple of 16): one CTA of kScoreWarps warps
// scores a tile of up to row_tile step rows against chunks_per_cta chunks of 64 keys. Per
// (row, chunk) it computes S = Q · Kᵀ, heads × 64 keys, as m16n8k16 products (q rounded
// to bf16, as the model's indexer runs in bf16 in transformers; the keys are bf16 in the
// cache, or FP8 codes widened to bf16 as they are loaded), the warps taking the 16-head
// tiles in turn. Each product then goes through the CPU's roundings (scale · dot, relu,
// times weight_scale · w[h]); a warp sums its heads per key, and the warps' sums are added
// in warp order (then multiplied by an FP8 key's scale).
//
// What the tile saves: the rows' q is converted and stored once for all the CTA's chunks
// (a decode row's 32 KB of fp32 q used to be read for every 16 KB of keys), and the rows of
// one sequence in the tile (a prefill chunk's) share each chunk's key load.
struct MmaScoreShared {
  uint32_t* q;     // [row_tile, heads rounded up to 16, stride] bf16 pairs
  uint32_t* keys;  // [kKeysPerCta, stride]
  float* w;        // [row_tile, heads rounded up to 16]: weight_scale · w[h], 0 for padding
  float* sums;     // [row_tile, kScoreWarps, kKeysPerCta]
  // [2, kKeysPerCta]: the FP8 scales of the keys loaded, in two buffers taken in turn: a
  // load's scales are read after its barriers, and the load after next (which reuses the
  // buffer) comes after the next load's barriers, by which every reader is done.
  float* scales;
};

// Eight e4m3 codes as eight bf16 values (exact: bf16 spans e4m3's range with more bits).
__device__ __forceinline__ uint32_t Fp8PairToBf16(uint32_t word, int shift) {
  const uint32_t lo = ToBf16Bits(Fp8E4M3Value(static_cast<uint8_t>(word >> shift)));
  const uint32_t hi = ToBf16Bits(Fp8E4M3Value(static_cast<uint8_t>(word >> (shift + 8))));
  return lo | (hi << 16);
}
__device__ __forceinline__ uint4 Fp8CodesToBf16(uint2 codes) {
  return make_uint4(Fp8PairToBf16(codes.x, 0), Fp8PairToBf16(codes.x, 16),
                    Fp8PairToBf16(codes.y, 0), Fp8PairToBf16(codes.y, 16));
}

__host__ __device__ inline int PaddedHeads(int heads) { return (heads + 15) / 16 * 16; }

__host__ __device__ inline size_t MmaScoreSharedBytes(int heads, int dim, int row_tile) {
  const size_t stride = MmaRowStrideWords(dim), heads16 = PaddedHeads(heads);
  return sizeof(uint32_t) * (row_tile * heads16 + kKeysPerCta) * stride +
         sizeof(float) * (row_tile * (heads16 + kScoreWarps * kKeysPerCta) + 2 * kKeysPerCta);
}

// This warp's share of one row's scores for one chunk (keys and the row's q and w in
// shared memory), stored in sums[warp · kKeysPerCta + key].
__device__ void MmaRowScores(const IndexerF32Params& p, const uint32_t* q, const float* w,
                             const uint32_t* keys, float* sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int stride = MmaRowStrideWords(p.dim), heads16 = PaddedHeads(p.heads);
  const int words = p.dim / 2;
  // This warp's sums over its head tiles: lane (g, t) ends with keys 8n + 2t and
  // 8n + 2t + 1 of every n-tile n (valid in the lanes with g = 0).
  float key_sum[kKeysPerCta / 8][2] = {};
  for (int m0 = 16 * warp; m0 < heads16; m0 += 16 * kScoreWarps) {
    float acc[kKeysPerCta / 8][4] = {};
    for (int kw = 0; kw < words; kw += 8) {  // k-steps of 16 values
      const uint32_t* qa = q + m0 * stride;
      const uint32_t a0 = qa[MmaAWord(lane, 0, stride, kw)];
      const uint32_t a1 = qa[MmaAWord(lane, 1, stride, kw)];
      const uint32_t a2 = qa[MmaAWord(lane, 2, stride, kw)];
      const uint32_t a3 = qa[MmaAWord(lane, 3, stride, kw)];
#pragma unroll
      for (int n = 0; n < kKeysPerCta / 8; ++n) {
        Mma16816(acc[n], a0, a1, a2, a3, keys[MmaBWordOfRows(lane, 0, stride, 8 * n, kw)],
                 keys[MmaBWordOfRows(lane, 1, stride, 8 * n, kw)]);
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
          v = __fadd_rn(v, __fmul_rn(w[m0 + PtxCRow(lane, i)], relu));
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
      sums[warp * kKeysPerCta + 8 * n + 2 * lane] = key_sum[n][0];
      sums[warp * kKeysPerCta + 8 * n + 2 * lane + 1] = key_sum[n][1];
    }
  }
}

// Keys first .. first + 63 of a sequence (block-table row `blocks`) into shared memory as
// bf16 rows of `MmaRowStrideWords(dim)` words, zeros past `visible` (never written out):
// 16-byte pieces of bf16 keys, or 8-byte pieces of FP8 codes widened to bf16. A template
// per dtype keeps each loop's registers its own.
template <bool kFp8>
__device__ __forceinline__ void LoadKeyChunk(const IndexerF32Params& p, const int32_t* blocks,
                                             int64_t first, int64_t visible, uint32_t* keys,
                                             float* scales) {
  const int stride = MmaRowStrideWords(p.dim), vecs = p.dim / 8;
  const int key_bytes = kFp8 ? p.dim : 2 * p.dim;
  const int64_t region_bytes = int64_t{p.block_size} * (kFp8 ? p.dim + 4 : 2 * p.dim);
  const uint8_t* base = static_cast<const uint8_t*>(p.keys);
  for (int v = threadIdx.x; v < kKeysPerCta * vecs; v += blockDim.x) {
    const int k = v / vecs, piece = v - k * vecs;
    const int64_t key = first + k;
    uint4 value = make_uint4(0u, 0u, 0u, 0u);
    if (key < visible) {
      const uint8_t* row = base + int64_t{blocks[key / p.block_size]} * region_bytes +
                           (key % p.block_size) * key_bytes;
      value = kFp8 ? Fp8CodesToBf16(reinterpret_cast<const uint2*>(row)[piece])
                   : reinterpret_cast<const uint4*>(row)[piece];
    }
    reinterpret_cast<uint4*>(keys + k * stride)[piece] = value;
  }
  if constexpr (kFp8) {
    // The scales follow the block's codes (4-byte aligned where the codes are 8-byte aligned).
    for (int k = threadIdx.x; k < kKeysPerCta; k += blockDim.x) {
      const int64_t key = first + k;
      scales[k] = key < visible ? *reinterpret_cast<const float*>(
                                      base + int64_t{blocks[key / p.block_size]} * region_bytes +
                                      int64_t{p.block_size} * p.dim + 4 * (key % p.block_size))
                                : 0.0f;
    }
  }
}

// grid (row tiles, chunk groups). Every branch on a row's view below is the same for the
// whole CTA (its values come from global memory that no thread writes), so the barriers
// inside are reached by all threads. One instantiation per key dtype: ptxas spills when
// both loads and the FP8 scale share one body.
template <bool kFp8>
__global__ void __launch_bounds__(kScoreWarps * 32)
    IndexerScoresMmaKernel(IndexerF32Params p, int chunks_per_cta) {
  const int row_tile = p.row_tile;
  const int stride = MmaRowStrideWords(p.dim), heads16 = PaddedHeads(p.heads);
  const int words = p.dim / 2;  // bf16 pairs per row
  unsigned char* base = DynamicSharedMemory();
  MmaScoreShared s;
  s.q = reinterpret_cast<uint32_t*>(base);
  s.keys = s.q + row_tile * heads16 * stride;
  s.w = reinterpret_cast<float*>(s.keys + kKeysPerCta * stride);
  s.sums = s.w + row_tile * heads16;
  s.scales = s.sums + row_tile * kScoreWarps * kKeysPerCta;
  const int64_t first0 = int64_t{blockIdx.y} * chunks_per_cta * kKeysPerCta;
  int loads = 0;  // Key loads so far: the scales' buffer.
  for (int64_t r0 = int64_t{blockIdx.x} * row_tile; r0 < p.num_rows;
       r0 += int64_t{gridDim.x} * row_tile) {
    const int rows = static_cast<int>(min(int64_t{row_tile}, p.num_rows - r0));
    // A row's sequence and view, read again where needed (L1 hits): arrays of them here
    // would live in local memory.
    const auto seq = [&](int t) { return p.row_seq[p.first_row + r0 + t]; };
    const auto visible = [&](int t) { return Visible(p, p.first_row + r0 + t); };
    int64_t tile_visible = 0;
    for (int t = 0; t < rows; ++t) tile_visible = max(tile_visible, visible(t));
    if (first0 >= tile_visible) continue;
    // No barrier is needed before the stores below: every reader of q, w and the keys
    // (MmaRowScores) finished before the barrier that precedes the last sums' reads, and
    // the sums are next written after the barrier that follows the next key load.
    for (int i = threadIdx.x; i < rows * heads16 * words; i += blockDim.x) {
      const int t = i / (heads16 * words), hw = i - t * heads16 * words;
      const int h = hw / words, w = hw - h * words;
      uint32_t word = 0u;
      if (h < p.heads) {
        const float* q = p.q + ((p.first_row + r0 + t) * p.heads + h) * p.dim + 2 * w;
        word = uint32_t{ToBf16Bits(q[0])} | (uint32_t{ToBf16Bits(q[1])} << 16);
      }
      s.q[(t * heads16 + h) * stride + w] = word;
    }
    for (int i = threadIdx.x; i < rows * heads16; i += blockDim.x) {
      const int t = i / heads16, h = i - t * heads16;
      s.w[i] =
          h < p.heads ? __fmul_rn(p.weight_scale, p.w[(p.first_row + r0 + t) * p.heads + h]) : 0.0f;
    }
    for (int c = 0; c < chunks_per_cta; ++c) {
      const int64_t first = first0 + int64_t{c} * kKeysPerCta;
      if (first >= tile_visible) break;
      // The tile's rows by sequence (a step's rows come grouped by sequence): one key load
      // per run of rows of one sequence.
      for (int i = 0; i < rows;) {
        int j = i;
        int64_t run_visible = 0;
        for (; j < rows && seq(j) == seq(i); ++j) run_visible = max(run_visible, visible(j));
        if (first < run_visible) {
          const int32_t* blocks = p.block_table + int64_t{seq(i)} * p.max_blocks;
          float* scales = s.scales + (loads++ & 1) * kKeysPerCta;
          LoadKeyChunk<kFp8>(p, blocks, first, run_visible, s.keys, scales);
          __syncthreads();
          for (int t = i; t < j; ++t) {
            if (first >= visible(t)) continue;
            MmaRowScores(p, s.q + t * heads16 * stride, s.w + t * heads16, s.keys,
                         s.sums + t * kScoreWarps * kKeysPerCta);
          }
          __syncthreads();
          for (int e = threadIdx.x; e < (j - i) * kKeysPerCta; e += blockDim.x) {
            const int t = i + e / kKeysPerCta, k = e % kKeysPerCta;
            if (first + k >= visible(t)) continue;
            const float* sums = s.sums + t * kScoreWarps * kKeysPerCta;
            float total = 0.0f;
            for (int w = 0; w < kScoreWarps; ++w)
              total = __fadd_rn(total, sums[w * kKeysPerCta + k]);
            if (kFp8) total = __fmul_rn(total, scales[k]);
            p.scores[(r0 + t) * p.scores_stride + first + k] = total;
          }
        }
        i = j;
      }
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

__device__ uint32_t LanesBelow(int lane) { return (1u << lane) - 1u; }

// The selection's shared state.
struct SelectShared {
  unsigned hist[256];
  int warp_above[kSelectWarps], warp_equal[kSelectWarps];
  uint32_t prefix;  // The threshold's bits found so far (under `mask`).
  int remaining;    // Keys still to take among those matching the prefix.
  int done;         // The prefix's keys are exactly the ones still needed.
};

// Warp 0 finds the histogram's bin (from the top) that holds the remaining-th largest key
// and narrows the prefix to it. Each lane owns 8 bins, lane 0 the highest.
__device__ void NarrowPrefix(SelectShared& sh, int shift) {
  const int lane = threadIdx.x & 31;
  unsigned count[8], total = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    count[j] = sh.hist[255 - (8 * lane + j)];
    total += count[j];
  }
  unsigned inclusive = total;  // Keys in this lane's bins and every higher one.
  for (int offset = 1; offset < 32; offset <<= 1) {
    const unsigned v = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += v;
  }
  const unsigned before = inclusive - total;
  const unsigned remaining = static_cast<unsigned>(sh.remaining);
  __syncwarp();  // Every lane has read `remaining` before one writes it.
  if (before < remaining && remaining <= inclusive) {
    unsigned left = remaining - before;
    for (int j = 0; j < 8; ++j) {
      if (count[j] >= left) {
        sh.prefix |= static_cast<uint32_t>(255 - (8 * lane + j)) << shift;
        sh.remaining = static_cast<int>(left);
        sh.done = count[j] == left ? 1 : 0;
        break;
      }
      left -= count[j];
    }
  }
}

// A list the selection reads: entry i (0 ≤ i < m) has score scores[i] and position
// positions[i], or base + i when positions is null; an entry with a negative position is
// absent. Present entries' positions ascend with i.
struct SelectList {
  const float* scores;
  const int32_t* positions;
  int64_t base, m;
  __device__ bool Present(int64_t i) const {
    return i < m && (positions == nullptr || positions[i] >= 0);
  }
  __device__ int32_t Position(int64_t i) const {
    return positions != nullptr ? positions[i] : static_cast<int32_t>(base + i);
  }
};

// Positions base .. base + m − 1 (m ≤ k), then -1, into out[0, k); their scores into
// out_scores when given: a list the selection keeps whole.
__device__ void KeepAll(const float* scores, int64_t base, int64_t m, int k, int32_t* out,
                        float* out_scores) {
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    out[i] = i < m ? static_cast<int32_t>(base + i) : -1;
    if (out_scores != nullptr && i < m) out_scores[i] = scores[i];
  }
}

// The CTA keeps the k best present entries of `list` (ties: the lower index; at least k
// must be present) and writes their positions in ascending order to out[0, k), their
// scores to out_scores when given. The bits of the k-th largest score come from a radix
// select (8 bits a pass, from the top; it stops early once a digit's entries are exactly
// the ones still needed), then the entries above that threshold and, of those equal to
// it, the lowest indices still needed are compacted in order. Each warp compacts a
// contiguous segment of the list: a pass counts each warp's entries, one barrier, and a
// second pass writes them at the warp's offset (ballots order the lanes), where a scan per
// 256 entries used to take 36 barriers.
__device__ void SelectTopK(SelectShared& sh, const SelectList& list, int k, int32_t* out,
                           float* out_scores) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warps = static_cast<int>(blockDim.x) >> 5;
  const int64_t m = list.m;
  __syncthreads();  // The previous list is done with the shared state.
  if (tid == 0) {
    sh.prefix = 0u;
    sh.remaining = k;
    sh.done = 0;
  }
  uint32_t mask = 0u;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) sh.hist[i] = 0u;
    __syncthreads();
    const uint32_t prefix = sh.prefix;
    for (int64_t base = 0; base < m; base += blockDim.x) {  // The same trips for all lanes.
      const int64_t i = base + tid;
      const bool present = list.Present(i);
      const uint32_t u = present ? OrderedBits(list.scores[i]) : 0u;
      const bool in = present && (u & mask) == prefix;
      // Lanes with the same digit add once (a digit past 255 for lanes out of the count).
      const unsigned digit = in ? (u >> shift) & 0xffu : 256u + static_cast<unsigned>(lane);
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (in && (peers & LanesBelow(lane)) == 0u) {
        atomicAdd(&sh.hist[digit], static_cast<unsigned>(__popc(peers)));
      }
    }
    __syncthreads();
    if (warp == 0) NarrowPrefix(sh, shift);
    __syncthreads();
    mask |= 0xffu << shift;
    if (sh.done != 0) break;
  }
  const uint32_t threshold = sh.prefix;
  const int equal_needed = sh.remaining;  // Entries matching the threshold to keep, lowest first.
  const int64_t segment = (m + 32 * warps - 1) / (32 * warps) * 32;
  const int64_t begin = min(m, warp * segment), end = min(m, begin + segment);
  int above = 0, equal = 0;
  for (int64_t base = begin; base < end; base += 32) {
    const int64_t i = base + lane;
    const bool present = i < end && list.Present(i);
    const uint32_t u = present ? OrderedBits(list.scores[i]) & mask : 0u;
    above += __popc(__ballot_sync(0xffffffffu, present && u > threshold));
    equal += __popc(__ballot_sync(0xffffffffu, present && u == threshold));
  }
  if (lane == 0) {
    sh.warp_above[warp] = above;
    sh.warp_equal[warp] = equal;
  }
  __syncthreads();
  int at = 0, equal_rank = 0;  // This warp's first output and first equal entry's rank.
  for (int v = 0; v < warp; ++v) {
    at += sh.warp_above[v] + min(max(equal_needed - equal_rank, 0), sh.warp_equal[v]);
    equal_rank += sh.warp_equal[v];
  }
  for (int64_t base = begin; base < end; base += 32) {
    const int64_t i = base + lane;
    const bool present = i < end && list.Present(i);
    const float score = present ? list.scores[i] : 0.0f;
    const uint32_t u = present ? OrderedBits(score) & mask : 0u;
    const bool is_equal = present && u == threshold;
    const unsigned equals = __ballot_sync(0xffffffffu, is_equal);
    const bool take = (present && u > threshold) ||
                      (is_equal && equal_rank + __popc(equals & LanesBelow(lane)) < equal_needed);
    const unsigned takes = __ballot_sync(0xffffffffu, take);
    if (take) {
      const int to = at + __popc(takes & LanesBelow(lane));
      out[to] = list.Position(i);
      if (out_scores != nullptr) out_scores[to] = score;
    }
    at += __popc(takes);
    equal_rank += __popc(equals);
  }
}

// The split selection, for steps of few rows over many keys, where one CTA per row would
// leave most of the device idle: grid (rows, segments), each CTA keeping the top-k of one
// segment of seg_len keys (its scores and positions into the scratch), then one CTA per
// row keeping the top-k of the segments' candidates. Exact: an entry of the row's top-k
// is beaten by fewer than k keys of the row, so by fewer than k of its segment, and the
// candidates keep the row's position order (segments in order, each ascending).
struct SelectScratch {
  float* scores;       // [num_rows, segments · topk]
  int32_t* positions;  // [num_rows, segments · topk]; -1: no candidate
};

__device__ SelectScratch ScratchOf(const IndexerF32Params& p, int segments) {
  const int64_t entries = p.num_rows * segments * int64_t{p.topk};
  float* scores = static_cast<float*>(p.select_scratch);
  return {scores, reinterpret_cast<int32_t*>(scores + entries)};
}

__global__ void __launch_bounds__(kSelectThreads)
    IndexerSelectSegmentsKernel(IndexerF32Params p, int segments, int64_t seg_len) {
  __shared__ SelectShared sh;
  const SelectScratch scratch = ScratchOf(p, segments);
  const int64_t begin = int64_t{blockIdx.y} * seg_len;
  for (int64_t r = blockIdx.x; r < p.num_rows; r += gridDim.x) {
    const int64_t n = Visible(p, p.first_row + r);
    if (n <= p.topk) continue;  // The merge keeps the row whole.
    const int64_t len = min(seg_len, max(int64_t{0}, n - begin));
    const int64_t at = (r * segments + blockIdx.y) * int64_t{p.topk};
    const float* scores = p.scores + r * p.scores_stride + begin;
    if (len <= p.topk) {
      KeepAll(scores, begin, len, p.topk, scratch.positions + at, scratch.scores + at);
      continue;
    }
    SelectTopK(sh, {scores, nullptr, begin, len}, p.topk, scratch.positions + at,
               scratch.scores + at);
  }
}

// One CTA per row: the row's visible keys' scores whole (segments == 1), or the split
// selection's candidates.
__global__ void __launch_bounds__(kSelectThreads)
    IndexerSelectKernel(IndexerF32Params p, int segments) {
  __shared__ SelectShared sh;
  const int64_t m = int64_t{segments} * p.topk;
  for (int64_t r = blockIdx.x; r < p.num_rows; r += gridDim.x) {
    const int64_t n = Visible(p, p.first_row + r);
    int32_t* out = p.selected + (p.first_row + r) * p.topk;
    if (n <= p.topk) {
      KeepAll(nullptr, 0, n, p.topk, out, nullptr);
    } else if (segments == 1) {
      SelectTopK(sh, {p.scores + r * p.scores_stride, nullptr, 0, n}, p.topk, out, nullptr);
    } else {
      // At least topk candidates: every segment keeps min(topk, its keys), which add up to
      // at least min(topk, n).
      const SelectScratch scratch = ScratchOf(p, segments);
      SelectTopK(sh, {scratch.scores + r * m, scratch.positions + r * m, 0, m}, p.topk, out,
                 nullptr);
    }
  }
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("IndexerTopK: ", what));
}

absl::Status CheckShape(const IndexerF32Params& p) {
  if (p.num_rows < 0 || p.first_row < 0 || p.heads < 1 || p.dim < 1 ||
      p.dim > 32 * kMaxDimPerLane || int64_t{p.heads} * p.dim > kIndexerMaxQ || p.block_size < 1 ||
      p.max_blocks < 0 || p.topk < 1 || p.scores_stride < 0 || p.row_tile < 1 ||
      p.row_tile > kIndexerMaxRowTile || p.key_chunks_per_cta < 0) {
    return Invalid(absl::StrCat("shape outside the kernel's limits (", p.heads, " heads of ", p.dim,
                                ", top ", p.topk, ", row tile ", p.row_tile, ")"));
  }
  if (p.num_rows > 0 && (p.q_pos0 == nullptr || p.cu_seqlens_q == nullptr || p.row_seq == nullptr ||
                         p.scores == nullptr || p.selected == nullptr)) {
    return Invalid("null pointer");
  }
  return absl::OkStatus();
}

// Key chunks per tensor-core CTA: one while the grid is small (a CTA per chunk keeps the
// device busy), up to 4 as it grows past 1,024 CTAs (a decode row over 128K keys: 2), so
// that the tile's q is converted once per 128 or 256 keys rather than per 64.
int ChunksPerCta(int64_t row_tiles, int64_t chunks) {
  return static_cast<int>(std::clamp<int64_t>(row_tiles * chunks / 1024, 1, 4));
}

absl::Status LaunchScores(const IndexerF32Params& p, CudaStream stream) {
  const int64_t chunks = (p.scores_stride + kKeysPerCta - 1) / kKeysPerCta;
  if (chunks > kMaxGrid) return Invalid("too many keys for one row");
  if (chunks == 0) return absl::OkStatus();
  if (!IndexerUsesTensorCores(p)) {
    const dim3 grid(static_cast<unsigned>(std::min(p.num_rows, kMaxGrid)),
                    static_cast<unsigned>(chunks));
    return LaunchKernel("IndexerScores", IndexerScoresKernel, grid, kScoreWarps * 32, 0, stream, p);
  }
  const int64_t tiles = (p.num_rows + p.row_tile - 1) / p.row_tile;
  const int per_cta = static_cast<int>(std::min<int64_t>(
      p.key_chunks_per_cta > 0 ? p.key_chunks_per_cta : ChunksPerCta(tiles, chunks), chunks));
  const dim3 grid(static_cast<unsigned>(std::min(tiles, kMaxGrid)),
                  static_cast<unsigned>((chunks + per_cta - 1) / per_cta));
  const size_t smem = MmaScoreSharedBytes(p.heads, p.dim, p.row_tile);
  const auto launch = [&](auto kernel) -> absl::Status {
    if (absl::Status s = AllowDynamicSharedBytes(reinterpret_cast<const void*>(kernel), smem);
        !s.ok()) {
      return s;
    }
    return LaunchKernel("IndexerScoresMma", kernel, grid, kScoreWarps * 32, smem, stream, p,
                        per_cta);
  };
  return p.keys_fp8 ? launch(&IndexerScoresMmaKernel<true>)
                    : launch(&IndexerScoresMmaKernel<false>);
}

}  // namespace

bool IndexerUsesTensorCores(const IndexerF32Params& p) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(p.keys);
  const int64_t align = p.keys_fp8 ? 8 : 16;
  return p.kernel != IndexerKernel::kSimt && p.dim % 16 == 0 && base % align == 0 &&
         KeyRegionBytes(p) % align == 0;
}

absl::Status LaunchIndexerTopK(const IndexerF32Params& p, CudaStream stream) {
  if (absl::Status s = CheckShape(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  if (p.keys == nullptr || p.block_table == nullptr || p.q == nullptr || p.w == nullptr) {
    return Invalid("null pointer");
  }
  if (absl::Status s = LaunchScores(p, stream); !s.ok()) return s;
  return LaunchIndexerSelect(p, stream);
}

absl::Status LaunchIndexerSelect(const IndexerF32Params& p, CudaStream stream) {
  if (absl::Status s = CheckShape(p); !s.ok()) return s;
  if (p.num_rows == 0) return absl::OkStatus();
  const unsigned rows = static_cast<unsigned>(std::min(p.num_rows, kMaxGrid));
  const int segments = IndexerSelectSegments(p.num_rows, p.scores_stride, p.topk);
  if (segments == 1 || p.select_scratch == nullptr) {
    return LaunchKernel("IndexerSelect", IndexerSelectKernel, dim3(rows), kSelectThreads, 0, stream,
                        p, 1);
  }
  const int64_t seg_len = (p.scores_stride + segments - 1) / segments;
  if (absl::Status s = LaunchKernel("IndexerSelectSegments", IndexerSelectSegmentsKernel,
                                    dim3(rows, static_cast<unsigned>(segments)), kSelectThreads, 0,
                                    stream, p, segments, seg_len);
      !s.ok()) {
    return s;
  }
  return LaunchKernel("IndexerSelectMerge", IndexerSelectKernel, dim3(rows), kSelectThreads, 0,
                      stream, p, segments);
}

int IndexerSelectSegments(int64_t num_rows, int64_t scores_stride, int topk) {
  if (num_rows > kIndexerSplitSelectMaxRows || topk < 1) return 1;
  return static_cast<int>(
      std::clamp<int64_t>(scores_stride / (int64_t{4} * topk), 1, kIndexerMaxSelectSegments));
}

int64_t IndexerSelectScratchBytes(int64_t num_rows, int64_t scores_stride, int topk) {
  const int segments = IndexerSelectSegments(num_rows, scores_stride, topk);
  if (segments == 1) return 0;
  return num_rows * segments * int64_t{topk} * (sizeof(float) + sizeof(int32_t));
}

}  // namespace mla::cuda
