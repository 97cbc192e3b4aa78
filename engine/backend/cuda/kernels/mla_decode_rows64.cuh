// The 64-row tensor-core MLA decode split kernel's code, shared by its two builds:
// mla_decode_rows64.cu (mma.sync, any sm_80+ device: MlaDecodeKernel::kMmaRows64) and
// mla_decode_rows64_wgmma.cu (wgmma, sm_90a only: kMmaWgmma), which differ in the layout
// of the q and key tiles in shared memory and in how the two products run. The design and
// the warps' roles: mla_decode_rows64.cu.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_ROWS64_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_ROWS64_CUH_

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.cuh"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_ring.cuh"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"
#include "engine/backend/cuda/kernels/mla_decode_wgmma.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda::rows64 {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = kRows64Rows;                 // 64: four row groups of 16
constexpr int kKeys = kMlaBlockSize;               // 64
constexpr int kStages = kRows64Stages;             // 2
constexpr int kMaxKSteps = kMlaRingMaxWidth / 16;  // 36
constexpr int kTiles = kMlaMaxLatent / 2 / 8;      // a half's latent n-tiles: 32
constexpr int kPStride = kRingPStride;             // words per row of p: 36
constexpr int kKeysPerHalf = kKeys / 2;            // 32: 4 n-tiles of scores
static_assert(kWarps == 8 && kRows == 4 * 16 && kKeys == kRingKeys);
static_assert(kMaxKSteps % 2 == 0, "k-steps are loaded in pairs");
// Lanes (g, t) store p words at 36·g + 16·half + 4·j + t: 36 ≡ 4 (mod 32), 32 banks.
static_assert(kPStride % 8 == 4);

// Where a tile's 64 rows keep their 16-byte chunks: rows of row_chunks chunks swizzled by
// the row (RingChunkWord, read with ldmatrix), or for wgmma PTX's canonical 128-byte
// swizzle in column blocks (Sw128ChunkWord, read by descriptor).
template <bool kWgmma>
__device__ __forceinline__ int TileChunkWord(int row, int chunk, int row_chunks) {
  if constexpr (kWgmma) {
    return Sw128ChunkWord(row, chunk);
  } else {
    return RingChunkWord(row, chunk, row_chunks);
  }
}

template <bool kWgmma>
__host__ __device__ inline int TileWords(int width) {
  return kWgmma ? Sw128TileWords(width) : RingStageWords(width);
}

struct Rows64Shared {
  uint32_t* q;         // [kRows] rows of bf16 pairs (TileChunkWord)
  uint32_t* stages;    // [kStages] blocks of kKeys rows of bf16 pairs (TileChunkWord)
  size_t stage_words;  // TileWords
  uint32_t* p;         // [kRows][kPStride] bf16 pairs
  float* red;          // [2][kRows]: each half's row maxima, at a piece's end its row sums

  __device__ uint32_t* stage(int i) const { return stages + i * stage_words; }
};

// wgmma's tiles start 1024-byte aligned (the swizzle's period; Rows64WgmmaSharedBytes
// counts the room to align).
template <bool kWgmma>
__device__ Rows64Shared CarveRows64Shared(unsigned char* base, int width) {
  Rows64Shared s;
  s.stage_words = static_cast<size_t>(TileWords<kWgmma>(width));
  if constexpr (kWgmma) {
    const uintptr_t shared = static_cast<uintptr_t>(__cvta_generic_to_shared(base));
    base += (1024 - (shared & 1023)) & 1023;
  }
  s.q = reinterpret_cast<uint32_t*>(base);
  s.stages = s.q + s.stage_words;
  s.p = s.stages + kStages * s.stage_words;
  s.red = reinterpret_cast<float*>(s.p + kRows * kPStride);
  return s;
}

// The two warps of a row group (w and w + 4) meet; barrier 0 is __syncthreads'.
__device__ __forceinline__ void RowGroupBarrier(int group) { NamedBarrierSync<64>(1 + group); }

// The 64-row q tile of sequence `seq` (rows past the end zero) into shared memory.
template <bool kWgmma>
__device__ void LoadQueryTile64(const MlaDecodeParams& p, const MlaSplitTile& t, int seq,
                                int row_chunks, uint32_t* q) {
  const int chunks = t.width / 8;
  const uint4* src = reinterpret_cast<const uint4*>(
      p.q + (static_cast<int64_t>(seq) * t.rows_total + t.row0) * t.width);
  const int valid_rows = min(kRows, t.rows_total - t.row0);
  for (int i = threadIdx.x; i < kRows * chunks; i += kThreads) {
    const int r = i / chunks;
    const uint4 v = r < valid_rows ? src[i] : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(q + TileChunkWord<kWgmma>(r, i - r * chunks, row_chunks)) = v;
  }
}

// One warp's state and steps; with kWgmma the two products run as wgmma on the warp's
// warpgroup (warps 4·half .. 4·half + 3, this half's warps: the accumulators land in the
// same registers as the mma.sync path's, mla_decode_wgmma.cuh).
template <bool kWgmma>
struct Rows64Warp {
  const MlaDecodeParams& p;
  Rows64Shared s;
  MlaSplitTile t;
  int lane, group, half;
  int row;  // the first of this lane's two rows in the tile: 16·group + g (then + 8)
  int row_chunks;
  float acc[kTiles][4];  // n-tile i: latent columns 256·half + 8·i ..
  float m[2];            // running max of rows row, row + 8 (log2 domain)
  float l[2];            // this lane's share of their running sums

  __device__ Rows64Warp(const MlaDecodeParams& params, unsigned char* smem)
      : p(params), t(MlaSplitTileOf(params, kRows)) {
    s = CarveRows64Shared<kWgmma>(smem, t.width);
    lane = static_cast<int>(threadIdx.x) & 31;
    const int warp = static_cast<int>(threadIdx.x) >> 5;
    group = warp & 3;
    half = warp >> 2;
    row = 16 * group + MmaGroup(lane);
    row_chunks = RingRowChunks(t.width);
    Reset();
  }

  __device__ void Reset() {
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[i][k] = 0.0f;
    }
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
  }

  // Step 1: scores of this warp's 16 rows and 32 keys, scaled to the log2 domain and masked.
  __device__ void Scores(const uint32_t* keys, const RingItem& it, float (&c)[4][4]) const {
    if constexpr (kWgmma) {
      WgmmaScores(s.q, keys, half, c);  // t.width is 576 (MlaDecodeWgmmaSupports)
    } else {
      MmaScores(keys, c);
    }
    const int first_key = it.block * kKeys;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = 16 * group + PtxCRow(lane, i);
        const int key = first_key + kKeysPerHalf * half + 8 * j + PtxCCol(lane, i);
        // Row r is query row (row0 + r) / heads of the sequence: it sees keys below its limit.
        const int limit = it.seq_len - p.q_rows_per_seq + 1 + (t.row0 + r) / p.num_heads;
        c[j][i] = key < limit ? c[j][i] * t.scale_log2 : -INFINITY;
      }
    }
  }

  // The scores with mma.sync: A (q) and B (keys) through ldmatrix.x4.
  __device__ void MmaScores(const uint32_t* keys, float (&c)[4][4]) const {
    const int ksteps = t.width / 16;
    const int a_row = 16 * group + Rows64ARowOfLane(lane);
    const int a_chunk = Rows64AChunkOfLane(lane);
    const int b_key = kKeysPerHalf * half + RingKKeyOfLane(lane);
    const int b_chunk = RingKChunkOfLane(lane);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) c[j][i] = 0.0f;
    }
#pragma unroll 6
    for (int kp = 0; kp < kMaxKSteps / 2; ++kp) {
      if (2 * kp < ksteps) {  // Uniform over the CTA.
        // With an odd k-step count the second A tile and B's registers 2, 3 of the last
        // pair lie in the rows' padding (RingRowChunks): read, never used.
        uint32_t a0[4], a1[4];
        LdMatrixX4(s.q + RingChunkWord(a_row, 4 * kp + a_chunk, row_chunks), a0);
        LdMatrixX4(s.q + RingChunkWord(a_row, 4 * kp + 2 + a_chunk, row_chunks), a1);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t b[4];
          LdMatrixX4(keys + RingChunkWord(b_key + 8 * j, 4 * kp + b_chunk, row_chunks), b);
          Mma16816(c[j], a0[0], a0[1], a0[2], a0[3], b[0], b[1]);
          if (2 * kp + 1 < ksteps) Mma16816(c[j], a1[0], a1[1], a1[2], a1[3], b[2], b[3]);
        }
      }
    }
  }

  // Steps 2 and 3: the rows' new max from both halves, alpha applied to the output and the
  // sums, p of this warp's keys into shared memory. Ends with both halves' p stored.
  __device__ void Softmax(float (&c)[4][4]) {
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) mx[i >> 1] = fmaxf(mx[i >> 1], c[j][i]);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the row's 4 lanes (t = 0 .. 3) are lanes 4g .. 4g + 3
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
    }
    if (MmaThreadInGroup(lane) == 0) {
      s.red[half * kRows + row] = mx[0];
      s.red[half * kRows + row + 8] = mx[1];
    }
    RowGroupBarrier(group);
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float other = s.red[(1 - half) * kRows + row + 8 * h];
      const float m_new = fmaxf(m[h], fmaxf(mx[h], other));
      // Both halves compute the same m_new from the same three values.
      alpha[h] = m_new == -INFINITY ? 1.0f : exp2f(m[h] - m_new);
      m[h] = m_new;
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {           // accumulators 2h, 2h + 1: row + 8h, two keys
        const bool none = m[h] == -INFINITY;  // Nothing visible yet: p = 0.
        const float p0 = none ? 0.0f : exp2f(c[j][2 * h] - m[h]);
        const float p1 = none ? 0.0f : exp2f(c[j][2 * h + 1] - m[h]);
        l[h] += p0 + p1;
        s.p[Rows64PWord(lane, group, half, j, h)] =
            uint32_t{ToBf16Bits(p0)} | (uint32_t{ToBf16Bits(p1)} << 16);
      }
    }
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[i][k] *= alpha[k >> 1];
    }
    RowGroupBarrier(group);
  }

  // Step 4: acc += P · V over the block's 64 keys, this half's latent columns.
  __device__ void Accumulate(const uint32_t* keys) {
    if constexpr (kWgmma) {
      WgmmaAccumulate(s.p + 16 * group * kPStride, kPStride, keys, half, lane, acc);
    } else {
      const int h = half;
      AccumulateSwizzledPV(s.p + 16 * group * kPStride, kPStride, keys, row_chunks, p.kv_lora_rank,
                           lane, acc, [h](int i) { return 256 * h + 16 * i; });
    }
  }

  // A finished piece: both halves' row sums added, this half's columns and (half 0) the
  // lse written, the state cleared.
  __device__ void FinishPiece(const RingItem& it) {
    float sum[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      sum[h] = l[h] + __shfl_xor_sync(0xffffffffu, l[h], 1);
      sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], 2);
    }
    // The other half read this half's maxima before the last RowGroupBarrier: free.
    if (MmaThreadInGroup(lane) == 0) {
      s.red[half * kRows + row] = sum[0];
      s.red[half * kRows + row + 8] = sum[1];
    }
    RowGroupBarrier(group);
#pragma unroll
    for (int h = 0; h < 2; ++h) sum[h] += s.red[(1 - half) * kRows + row + 8 * h];
    const MlaPieceOutput o = MlaPieceOutputOf(p, it.seq, it.split);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int i = 0; i < kTiles; ++i) {
        WritePieceOutputPair(p, o, t, row + 8 * h, 256 * half + 8 * i + PtxCCol(lane, 2 * h),
                             sum[h], acc[i][2 * h], acc[i][2 * h + 1]);
      }
    }
    if (half == 0 && MmaThreadInGroup(lane) == 0) {
      constexpr float kLn2 = 0.6931471805599453f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = t.row0 + row + 8 * h;
        if (r < t.rows_total) {
          float* dst = o.final_out ? p.lse : p.partial_lse;
          dst[o.base * t.rows_total + r] =
              sum[h] > 0.0f ? (m[h] + log2f(sum[h])) * kLn2 : -INFINITY;
        }
      }
    }
    Reset();
  }
};

// The kernel's body (each kernel file defines the __global__ that runs it).
template <bool kWgmma>
__device__ __forceinline__ void Rows64Body(const MlaDecodeParams& p, unsigned char* smem) {
  Rows64Warp<kWgmma> w(p, smem);
  const MlaDecodePart part = p.parts[blockIdx.y];
  const int64_t row_bytes = 2 * int64_t{w.t.width};
  // Two cursors over the same walk: `next` issues copies one block ahead of `cur`.
  RingItem next{};
  bool has_next = RingFirstFrom(p, part, part.begin_seq, next);
  RingItem cur = next;
  bool has_cur = has_next;
  if (has_next) {
    IssueRingBlock<kThreads, false, kWgmma>(p, next, w.t.width, row_bytes, w.s.stage(0));
    has_next = RingAdvance(p, part, next);
  }
  CommitCopies();
  int stage = 0;
  bool new_piece = true;
  while (has_cur) {               // Uniform over the CTA: every thread walks the same part.
    WaitCopiesExceptNewest<0>();  // This block's group, the only one in flight.
    // wgmma reads shared memory through the async proxy: order this thread's copies
    // before it (the barrier then orders everyone's).
    if constexpr (kWgmma) FenceProxyAsyncShared();
    // The block is in for every thread, and every warp is done with the previous block:
    // its stage (overwritten next), the q tile and p.
    __syncthreads();
    if (has_next) {  // Before a new piece's q tile, so that the copies overlap its loads.
      IssueRingBlock<kThreads, false, kWgmma>(p, next, w.t.width, row_bytes, w.s.stage(stage ^ 1));
      has_next = RingAdvance(p, part, next);
    }
    CommitCopies();
    if (new_piece) {
      LoadQueryTile64<kWgmma>(p, w.t, cur.seq, w.row_chunks, w.s.q);
      if constexpr (kWgmma) FenceProxyAsyncShared();
      __syncthreads();
      new_piece = false;
    }
    const uint32_t* keys = w.s.stage(stage);
    float c[4][4];
    w.Scores(keys, cur, c);
    w.Softmax(c);
    w.Accumulate(keys);
    if (cur.block + 1 == cur.block_end) {  // The piece's last block.
      w.FinishPiece(cur);
      new_piece = true;
    }
    has_cur = RingAdvance(p, part, cur);
    stage ^= 1;
  }
}

// Host: a 64-row kernel's CTAs per SM with `smem` bytes, and its launch over the plan's
// grid (tiles of 64 rows × parts).
inline absl::StatusOr<int> CtasPerSm(const void* kernel, size_t smem) {
  if (absl::Status s = AllowDynamicSharedBytes(kernel, smem); !s.ok()) return s;
  int ctas = 0;
  MLA_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, kThreads, smem));
  return ctas > 1 ? ctas : 1;
}

inline absl::Status Launch(void (*kernel)(MlaDecodeParams), size_t smem, const MlaDecodeParams& p,
                           CudaStream stream, const char* name) {
  if (absl::Status s = AllowDynamicSharedBytes(reinterpret_cast<const void*>(kernel), smem);
      !s.ok()) {
    return s;
  }
  const int rows_total = p.q_rows_per_seq * p.num_heads;
  const dim3 grid((rows_total + kRows - 1) / kRows, p.num_parts);
  return LaunchKernel(name, kernel, grid, dim3(kThreads), smem, stream, p);
}

}  // namespace mla::cuda::rows64

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_ROWS64_CUH_
