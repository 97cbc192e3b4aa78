// The tensor-core split kernel of the MLA decode (interface and math in mla_decode.h; the
// CUDA-core split kernel and the shared combine kernel are in mla_decode.cu). Same grid,
// plan, partial slots and outputs as the CUDA-core kernel. One CTA of 4 warps per (tile of
// 16 query rows, part); per cache block of 64 keys:
//   1. the keys into shared memory as bf16 pairs, kStride words per row;
//   2. scores S = Q·Kᵀ with mma.m16n8k16 (M = the 16 rows, N = 8 keys, K = 16 dims): warp w
//      takes keys 16w .. 16w + 15 (two n-tiles) over every k-step of the row and writes its
//      scaled scores (log2 domain, -inf where a row may not see the key) to shared memory;
//   3. online softmax, 8 threads per row: running max m and sum l, probabilities p stored
//      as bf16 for the next product;
//   4. O = O·alpha + P·V with mma.m16n8k16 (M = the 16 rows, N = 8 latent columns, K = 16
//      keys): warp w owns the latent's n-tiles w, w + 4, w + 8, ... (16 at L = 512), four
//      fp32 accumulators per tile and thread in registers. V is the key rows' first L
//      values: the same tile in shared memory.
// Fragment layouts are PTX's for m16n8k16 with bf16 inputs, lane = 4·g + t: A (16 × 16,
// row-major) registers {(g, 2t..2t+1), (g+8, 2t..2t+1), (g, 2t+8..2t+9), (g+8, 2t+8..2t+9)};
// B (16 × 8, column-major) registers {(k 2t..2t+1, n g), (k 2t+8..2t+9, n g)}; C {(g, 2t),
// (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}; the lower index in a register's low half
// (mla_decode_mma_rule.h has this arithmetic, replayed by a CPU test). Rows of q,
// keys and p in shared memory are a multiple of 8 words plus 4 (≡ 4 mod 8), so the 32
// lanes' fragment loads, (g·stride + t) words apart, fall in 32 different banks.
//
// A block goes into shared memory as cp.async copies all issued before one wait
// (mla_decode_split.cuh); the SM's second CTA overlaps one CTA's loads with its math.
//
// The k-split variant (MmaKSplit below, MlaDecodeKernel::kMmaKSplit, opt-in until a device
// has compared it) keeps q's fragments in registers and reads V with ldmatrix.x4.trans;
// the ring variant (mla_decode_ring.cu) keeps blocks in flight while it computes.
// More query rows per CTA and wgmma: mla_decode_rows64.cu, mla_decode_rows64_wgmma.cu.
// Not done (docs/BENCHMARKS.md): TMA.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.cuh"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = kMlaDecodeRowsPerCta;            // 16: the MMA's M
constexpr int kKeys = kMlaBlockSize;                   // 64
constexpr int kKeysPerWarp = kKeys / kWarps;           // 16: two n-tiles of scores
constexpr int kMaxTiles = kMlaMaxLatent / 8 / kWarps;  // latent n-tiles per warp: 16
constexpr int kScoreStride = kKeys + 4;                // floats per row of scores
constexpr int kPStride = MmaRowStrideWords(kKeys);     // words (bf16 pairs) per row of p: 36
constexpr int kThreadsPerRow = kThreads / kRows;       // 8 in the softmax
// The k-split variant: the row's k-steps over the 4 warps, each warp's share of q as A
// fragments in registers, latent columns in pairs of n-tiles per warp.
constexpr int kMaxKSteps = (kMlaMaxLatent + kMlaMaxRope) / 16;
constexpr int kMaxKStepsPerWarp = (kMaxKSteps + kWarps - 1) / kWarps;  // 10
constexpr int kMaxPairs = kMaxTiles / 2;                               // column pairs per warp: 8
constexpr int kScoreTiles = kKeys / 8;                                 // 8 n-tiles of scores
// Floats per row of a warp's partial scores: 8 mod 32, so that lanes (g, t) storing pairs at
// 72·g + 2·t (+ 8·j) hit different banks (68 would put g = 1, t = 0 on g = 0, t = 2).
constexpr int kPartStride = kKeys + 8;
static_assert(kRows == 16 && kKeys == 64 && kKeysPerWarp == 16 && kThreadsPerRow == 8);
static_assert(kPStride % 8 == 4 && kScoreStride % 4 == 0 && kPartStride % 32 == 8);

// Floats of the scores region: the block's scores, or the k-split variant's four warps'
// partial scores.
__host__ __device__ inline size_t MmaScoreFloats(bool ksplit) {
  return ksplit ? size_t{kWarps} * kRows * kPartStride : size_t{kRows} * kScoreStride;
}

__host__ __device__ inline size_t MmaSharedBytes(int width, bool ksplit) {
  const size_t stride = static_cast<size_t>(MmaRowStrideWords(width));
  return sizeof(uint32_t) *
             (size_t{kKeys} * stride + size_t{kRows} * stride + size_t{kRows} * kPStride) +
         sizeof(float) * (MmaScoreFloats(ksplit) + 3 * size_t{kRows});
}

struct MmaShared {
  uint32_t* keys;  // [kKeys][stride] bf16 pairs (first: 16-byte aligned for the loads)
  uint32_t* q;     // [kRows][stride] bf16 pairs
  uint32_t* p;     // [kRows][kPStride] bf16 pairs
  float* scores;   // [kRows][kScoreStride], or [kWarps][kRows][kPartStride] partial sums
  float* m;        // [kRows] running max, log2 domain
  float* l;        // [kRows] running sum of exp2(score - m)
  float* alpha;    // [kRows] rescale of the output for the current block

  __device__ MmaRowState rows() const { return {m, l, alpha}; }
};

__device__ MmaShared CarveMmaShared(unsigned char* base, int stride, bool ksplit) {
  MmaShared s;
  s.keys = reinterpret_cast<uint32_t*>(base);
  s.q = s.keys + kKeys * stride;
  s.p = s.q + kRows * stride;
  s.scores = reinterpret_cast<float*>(s.p + kRows * kPStride);
  s.m = s.scores + MmaScoreFloats(ksplit);
  s.l = s.m + kRows;
  s.alpha = s.l + kRows;
  return s;
}

// The query tile of one sequence as bf16 pairs: rows row0 .. row0 + 15 of its s_q · heads
// rows (rows past the end are zero).
__device__ void LoadQueryTile(const MlaDecodeParams& p, int seq, int row0, int rows_total,
                              int width, int stride, uint32_t* q) {
  const int words = width / 2;
  const uint32_t* src = reinterpret_cast<const uint32_t*>(
      p.q + (static_cast<int64_t>(seq) * rows_total + row0) * width);
  const int valid_rows = min(kRows, rows_total - row0);
  for (int i = threadIdx.x; i < kRows * words; i += kThreads) {
    const int r = i / words;
    const int w = i - r * words;
    q[r * stride + w] = r < valid_rows ? src[r * words + w] : 0u;
  }
}

// Step 2: warp w's 16 keys against the 16 rows, every k-step of the row.
__device__ void MmaScores(const MmaShared& s, int stride, int width, int first_key, int row0,
                          int seq_len, int s_q, int heads, float scale_log2) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  // Fragment addresses at k-step 0 (mla_decode_mma_rule.h); a k-step adds 8 words.
  const uint32_t* a[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) a[r] = s.q + MmaAWord(lane, r, stride, 0);
  const uint32_t* b[2][2];  // [n-tile][register]: keys 16w .. 16w + 7, 16w + 8 .. 16w + 15
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      b[j][r] = s.keys + MmaBWordOfRows(lane, r, stride, warp * kKeysPerWarp + 8 * j, 0);
    }
  }
  float c[2][4] = {};
  for (int kw = 0; kw < width / 2; kw += 8) {  // 16 dims = 8 words per k-step
    const uint32_t a0 = a[0][kw];
    const uint32_t a1 = a[1][kw];
    const uint32_t a2 = a[2][kw];
    const uint32_t a3 = a[3][kw];
    Mma16816(c[0], a0, a1, a2, a3, b[0][0][kw], b[0][1][kw]);
    Mma16816(c[1], a0, a1, a2, a3, b[1][0][kw], b[1][1][kw]);
  }
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = PtxCRow(lane, i);
      const int key = warp * kKeysPerWarp + 8 * j + PtxCCol(lane, i);
      // Row r is query row (row0 + r) / heads of the sequence: it sees keys below its limit.
      const int limit = seq_len - s_q + 1 + (row0 + r) / heads;
      s.scores[r * kScoreStride + key] = first_key + key < limit ? c[j][i] * scale_log2 : -INFINITY;
    }
  }
}

// Step 3: online softmax, 8 consecutive lanes per row, 8 keys each.
__device__ void MmaSoftmax(const MmaShared& s) {
  const int r = threadIdx.x / kThreadsPerRow;
  const int sub = threadIdx.x % kThreadsPerRow;
  const float* row = s.scores + r * kScoreStride + sub * 8;
  float v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = row[i];
  float mx = v[0];
#pragma unroll
  for (int i = 1; i < 8; ++i) mx = fmaxf(mx, v[i]);
  OnlineSoftmaxRow<kThreadsPerRow, 8>(s.rows(), s.p + r * kPStride, r, sub, mx, v);
}

// Step 4: acc = acc · alpha + P · V over the block's 64 keys, warp w's latent n-tiles.
__device__ void MmaAccumulate(const MmaShared& s, int stride, int latent,
                              float (&acc)[kMaxTiles][4]) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  RescaleOutput(s.alpha, lane, acc);
  const uint16_t* v = reinterpret_cast<const uint16_t*>(s.keys);
  // B's four values at k-step 0 and tile 0 (mla_decode_mma_rule.h): a k-step adds 16 key
  // rows, a tile 8 columns.
  int b_at[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) b_at[e] = MmaBValueOfColumns(lane, e, stride, 0, 0);
#pragma unroll
  for (int ks = 0; ks < kKeys / 16; ++ks) {
    uint32_t a[4];
    LoadPFragment(s.p, kPStride, lane, ks, a);
    const uint16_t* vk = v + ks * 16 * 2 * stride;
#pragma unroll
    for (int i = 0; i < kMaxTiles; ++i) {
      const int tile = warp + kWarps * i;
      if (tile * 8 < latent) {  // Uniform over the warp; no break, so acc stays in registers.
        const uint16_t* vt = vk + tile * 8;
        const uint32_t b0 = uint32_t{vt[b_at[0]]} | (uint32_t{vt[b_at[1]]} << 16);
        const uint32_t b1 = uint32_t{vt[b_at[2]]} | (uint32_t{vt[b_at[3]]} << 16);
        Mma16816(acc[i], a[0], a[1], a[2], a[3], b0, b1);
      }
    }
  }
}

// The tensor-core split kernel's state and steps, walked by WalkPart (mla_decode_split.cuh).
struct MmaSplit {
  const MlaDecodeParams& p;
  MmaShared s;
  MlaSplitTile t;
  int stride;  // words per key row in shared memory
  float acc[kMaxTiles][4];

  __device__ void BeginPiece(int seq) {
    LoadQueryTile(p, seq, t.row0, t.rows_total, t.width, stride, s.q);
  }

  __device__ void Scores(int first_key, int seq_len) {
    MmaScores(s, stride, t.width, first_key, t.row0, seq_len, p.q_rows_per_seq, p.num_heads,
              t.scale_log2);
  }
  __device__ void Softmax() { MmaSoftmax(s); }
  __device__ void Accumulate() { MmaAccumulate(s, stride, p.kv_lora_rank, acc); }

  // Writes one finished piece (final output or partial slot), then clears the state.
  __device__ void FinishPiece(int seq, int split) {
    const int warp = threadIdx.x >> 5;
    FinishMmaPiece(p, s.rows(), t, seq, split, acc,
                   [warp](int i) { return (warp + kWarps * i) * 8; });
  }
};

// The k-split variant (MlaDecodeKernel::kMmaKSplit): the same walk, block loads and
// softmax, with fewer instructions per block. Scores: warp w takes k-steps
// [w·⌈K/4⌉, (w+1)·⌈K/4⌉) of the row for all 64 keys (8 n-tiles), its q fragments held in
// registers for the whole piece (no q reads from shared memory per block), and writes
// partial sums; the softmax adds the 4 partials. Output: warp w owns the latent's column
// pairs w, w + 4, ... (16 columns each), V's B fragments for a pair coming from one
// ldmatrix.x4.trans instead of eight 16-bit loads and the packing.
struct MmaKSplit {
  const MlaDecodeParams& p;
  MmaShared s;
  MlaSplitTile t;
  int stride;  // words per key row in shared memory
  int lane, warp;
  int k_begin, k_end;       // this warp's k-steps
  int first_key = 0;        // the current block's
  int seq_len = 0;          // the current piece's
  bool need_q = false;      // the piece's q fragments are not in registers yet
  float acc[kMaxTiles][4];  // [2 · pair + tile of the pair]
  uint32_t qa[kMaxKStepsPerWarp][4];

  __device__ MmaKSplit(const MlaDecodeParams& params, const MmaShared& shared, int row_stride)
      : p(params), s(shared), t(MlaSplitTileOf(params)), stride(row_stride) {
    lane = static_cast<int>(threadIdx.x) & 31;
    warp = static_cast<int>(threadIdx.x) >> 5;
    const int ksteps = t.width / 16;
    const int per_warp = (ksteps + kWarps - 1) / kWarps;
    k_begin = min(warp * per_warp, ksteps);
    k_end = min(k_begin + per_warp, ksteps);
#pragma unroll
    for (int i = 0; i < kMaxTiles; ++i) {
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[i][k] = 0.0f;
    }
  }

  __device__ void BeginPiece(int seq) {
    LoadQueryTile(p, seq, t.row0, t.rows_total, t.width, stride, s.q);
    need_q = true;  // Read after the barrier that follows the block's load.
  }

  __device__ void Scores(int block_first_key, int piece_seq_len) {
    first_key = block_first_key;
    seq_len = piece_seq_len;
    if (need_q) {
#pragma unroll
      for (int i = 0; i < kMaxKStepsPerWarp; ++i) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          qa[i][r] = k_begin + i < k_end ? s.q[MmaAWord(lane, r, stride, 8 * (k_begin + i))] : 0u;
        }
      }
      need_q = false;
    }
    float c[kScoreTiles][4] = {};
    const uint32_t* b = s.keys + MmaBWordOfRows(lane, 0, stride, 0, 0);
#pragma unroll
    for (int i = 0; i < kMaxKStepsPerWarp; ++i) {
      const int ks = k_begin + i;
      if (ks < k_end) {  // Uniform over the warp.
#pragma unroll
        for (int j = 0; j < kScoreTiles; ++j) {
          const uint32_t* bj = b + 8 * j * stride + 8 * ks;  // keys 8j .., dims 16·ks ..
          Mma16816(c[j], qa[i][0], qa[i][1], qa[i][2], qa[i][3], bj[0], bj[4]);
        }
      }
    }
    float* part = s.scores + warp * kRows * kPartStride;
#pragma unroll
    for (int j = 0; j < kScoreTiles; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // accumulators 2h, 2h + 1: one row, two keys
        *reinterpret_cast<float2*>(part + PtxCRow(lane, 2 * h) * kPartStride + 8 * j +
                                   PtxCCol(lane, 2 * h)) =
            make_float2(c[j][2 * h], c[j][2 * h + 1]);
      }
    }
  }

  // The 4 partials summed, scaled to the log2 domain and masked, then as MmaSoftmax.
  __device__ void Softmax() {
    const int r = threadIdx.x / kThreadsPerRow;
    const int sub = threadIdx.x % kThreadsPerRow;
    float v[8] = {};
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* row = s.scores + (w * kRows + r) * kPartStride + sub * 8;
      const float4 x0 = *reinterpret_cast<const float4*>(row);
      const float4 x1 = *reinterpret_cast<const float4*>(row + 4);
      v[0] += x0.x;
      v[1] += x0.y;
      v[2] += x0.z;
      v[3] += x0.w;
      v[4] += x1.x;
      v[5] += x1.y;
      v[6] += x1.z;
      v[7] += x1.w;
    }
    // Row r is query row (row0 + r) / heads of the sequence: it sees keys below its limit.
    const int limit = seq_len - p.q_rows_per_seq + 1 + (t.row0 + r) / p.num_heads;
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      v[i] = first_key + sub * 8 + i < limit ? v[i] * t.scale_log2 : -INFINITY;
      mx = fmaxf(mx, v[i]);
    }
    OnlineSoftmaxRow<kThreadsPerRow, 8>(s.rows(), s.p + r * kPStride, r, sub, mx, v);
  }

  // acc = acc · alpha + P · V over the block's 64 keys, this warp's column pairs.
  __device__ void Accumulate() {
    RescaleOutput(s.alpha, lane, acc);
    // This lane's ldmatrix row at k-step 0, pair 0: a k-step adds 16 key rows, a pair 16
    // columns (8 words).
    const uint32_t* v_row =
        s.keys + MmaVKeyOfLane(lane) * stride + (16 * warp + MmaVColumnOfLane(lane)) / 2;
    const int latent = p.kv_lora_rank;
#pragma unroll
    for (int ks = 0; ks < kKeys / 16; ++ks) {
      uint32_t a[4];
      LoadPFragment(s.p, kPStride, lane, ks, a);
#pragma unroll
      for (int i = 0; i < kMaxPairs; ++i) {
        const int col = 16 * (warp + kWarps * i);
        if (col < latent) {  // Uniform over the warp; no break, so acc stays in registers.
          uint32_t b[4];
          LdMatrixX4Trans(v_row + ks * 16 * stride + 8 * kWarps * i, b);
          Mma16816(acc[2 * i], a[0], a[1], a[2], a[3], b[0], b[1]);
          if (col + 8 < latent) Mma16816(acc[2 * i + 1], a[0], a[1], a[2], a[3], b[2], b[3]);
        }
      }
    }
  }

  // Writes one finished piece (final output or partial slot), then clears the state.
  __device__ void FinishPiece(int seq, int split) {
    const int w = warp;
    FinishMmaPiece(p, s.rows(), t, seq, split, acc,
                   [w](int i) { return 16 * (w + kWarps * (i / 2)) + 8 * (i % 2); });
  }
};

template <bool kKSplit>
__global__ void __launch_bounds__(kThreads) MlaDecodeMmaSplitKernel(MlaDecodeParams p) {
  unsigned char* smem = DynamicSharedMemory();
  const int width = p.kv_lora_rank + p.rope_dim;
  const int stride = MmaRowStrideWords(width);
  if constexpr (kKSplit) {
    MmaKSplit k(p, CarveMmaShared(smem, stride, true), stride);
    WalkPart<kThreads>(p, k);
  } else {
    MmaSplit k{p, CarveMmaShared(smem, stride, false), MlaSplitTileOf(p), stride, {}};
    WalkPart<kThreads>(p, k);
  }
}

// The variant's kernel and its shared memory.
struct MmaVariant {
  void (*kernel)(MlaDecodeParams);
  size_t smem;
  const void* address() const { return reinterpret_cast<const void*>(kernel); }
};

MmaVariant MmaVariantOf(int width, bool ksplit) {
  return {ksplit ? &MlaDecodeMmaSplitKernel<true> : &MlaDecodeMmaSplitKernel<false>,
          MmaSharedBytes(width, ksplit)};
}

}  // namespace

absl::StatusOr<int> MlaDecodeMmaCtasPerSm(int width, bool ksplit) {
  const MmaVariant v = MmaVariantOf(width, ksplit);
  if (absl::Status s = AllowDynamicSharedBytes(v.address(), v.smem); !s.ok()) return s;
  int ctas = 0;
  MLA_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, v.address(), kThreads, v.smem));
  return std::max(ctas, 1);
}

absl::Status LaunchMlaDecodeMmaSplit(const MlaDecodeParams& p, bool ksplit, CudaStream stream) {
  const MmaVariant v = MmaVariantOf(p.kv_lora_rank + p.rope_dim, ksplit);
  if (absl::Status s = AllowDynamicSharedBytes(v.address(), v.smem); !s.ok()) return s;
  const int rows_total = p.q_rows_per_seq * p.num_heads;
  const dim3 grid((rows_total + kRows - 1) / kRows, p.num_parts);
  return LaunchKernel(ksplit ? "MlaDecodeMmaSplitKernel<k-split>" : "MlaDecodeMmaSplitKernel",
                      v.kernel, grid, dim3(kThreads), v.smem, stream, p);
}

}  // namespace mla::cuda
