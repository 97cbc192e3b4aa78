// The tensor-core split kernel of the MLA decode (interface and math in mla_decode.h; the
// CUDA-core split kernel and the shared combine kernel are in mla_decode.cu). Same grid,
// plan, partial slots and outputs as the CUDA-core kernel. One CTA of 4 warps per (tile of
// 16 query rows, part), two CTAs per multiprocessor. A piece's keys go through in tiles of
// 32 (half a cache block), two tiles in shared memory: while one is computed on, the next
// is on its way (cp.async; FP8 rows are dequantized by plain loads instead). Per tile:
//   1. scores S = Q·Kᵀ with mma.m16n8k16 (M = the 16 rows, N = 8 keys, K = 16 dims), the
//      row's k-steps split over the 4 warps: each warp keeps its quarter of q as A
//      fragments in registers for the whole piece, reads its quarter of every key once,
//      and writes partial sums for all 32 keys to shared memory;
//   2. online softmax, 8 threads per row: the 4 partials summed, scaled (log2 domain) and
//      masked, running max m and sum l, probabilities p stored as bf16;
//   3. O = O·alpha + P·V with mma.m16n8k16 (M = the 16 rows, N = 8 latent columns, K = 16
//      keys): warp w owns the latent's column pairs w, w + 4, ... (16 columns each; 8 at
//      L = 512), four fp32 accumulators per n-tile and thread in registers. V is the key
//      rows' first L values, read from the same tile with ldmatrix.x4.trans.
// Fragment layouts are PTX's for m16n8k16 with bf16 inputs, lane = 4·g + t: A (16 × 16,
// row-major) registers {(g, 2t..2t+1), (g+8, 2t..2t+1), (g, 2t+8..2t+9), (g+8, 2t+8..2t+9)};
// B (16 × 8, column-major) registers {(k 2t..2t+1, n g), (k 2t+8..2t+9, n g)}; C {(g, 2t),
// (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}; the lower index in a register's low half
// (mla_decode_mma_rule.h has this arithmetic, replayed by a CPU test). Rows of q, keys and
// p in shared memory are a multiple of 8 words plus 4 (≡ 4 mod 8), so the 32 lanes'
// fragment loads, (g·stride + t) words apart, and ldmatrix's 8 row reads fall in 32
// different banks.
//
// What it does not do (docs/BENCHMARKS.md): TMA, wgmma, more than 16 rows per CTA (128
// heads read each key tile once per 16 heads).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"

namespace mla::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = kMlaDecodeRowsPerCta;  // 16: the MMA's M
constexpr int kTileKeys = 32;                // keys per stage: half a cache block
constexpr int kTilesPerBlock = kMlaBlockSize / kTileKeys;
constexpr int kScoreTiles = kTileKeys / 8;  // n-tiles of scores per tile: 4
constexpr int kMaxKSteps = (kMlaMaxLatent + kMlaMaxRope) / 16;
constexpr int kMaxKStepsPerWarp = (kMaxKSteps + kWarps - 1) / kWarps;  // 10
constexpr int kMaxPairs = kMlaMaxLatent / 16 / kWarps;  // latent column pairs per warp: 8
constexpr int kPartStride = kTileKeys + 4;              // floats per row of partial scores
constexpr int kPStride = MmaRowStrideWords(kTileKeys);  // words (bf16 pairs) per row of p
constexpr int kThreadsPerRow = kThreads / kRows;        // 8 in the softmax
constexpr int kKeysPerThread = kTileKeys / kThreadsPerRow;  // 4
static_assert(kRows == 16 && kTilesPerBlock == 2 && kThreadsPerRow == 8 && kKeysPerThread == 4);
static_assert(kPStride % 8 == 4 && kPartStride % 4 == 0);

__host__ __device__ inline size_t MmaSharedBytes(int width) {
  const size_t stride = static_cast<size_t>(MmaRowStrideWords(width));
  return sizeof(uint32_t) * (2 * size_t{kTileKeys} * stride + size_t{kRows} * stride +
                             size_t{kRows} * kPStride) +
         sizeof(float) * (size_t{kWarps} * kRows * kPartStride + 3 * size_t{kRows});
}

struct MmaShared {
  uint32_t* stages;  // [2][kTileKeys][stride] bf16 pairs (16-byte aligned for cp.async)
  uint32_t* q;         // [kRows][stride] bf16 pairs
  uint32_t* p;         // [kRows][kPStride] bf16 pairs
  float* part;         // [kWarps][kRows][kPartStride] partial scores
  float* m;            // [kRows] running max, log2 domain
  float* l;            // [kRows] running sum of exp2(score - m)
  float* alpha;        // [kRows] rescale of the output for the current tile
};

__device__ MmaShared CarveMmaShared(unsigned char* base, int stride) {
  MmaShared s;
  s.stages = reinterpret_cast<uint32_t*>(base);
  s.q = s.stages + 2 * kTileKeys * stride;
  s.p = s.q + kRows * stride;
  s.part = reinterpret_cast<float*>(s.p + kRows * kPStride);
  s.m = s.part + kWarps * kRows * kPartStride;
  s.l = s.m + kRows;
  s.alpha = s.l + kRows;
  return s;
}

// d += a · b for one m16n8k16 tile (bf16 inputs, fp32 accumulators).
__device__ __forceinline__ void Mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8 × 8 b16 matrices from shared memory, transposed (mla_decode_mma_rule.h).
__device__ __forceinline__ void LdMatrixX4Trans(const uint32_t* row, uint32_t (&r)[4]) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
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

// The 32 keys of tile `tile` (of a sequence of seq_len tokens) into `keys`: asynchronous
// 16-byte copies for bf16 rows, plain loads that dequantize FP8 ones. Keys at or past
// seq_len become zeros.
__device__ void IssueKeyTile(const MlaDecodeParams& p, const int32_t* table, int64_t block_bytes,
                             int tile, int seq_len, int width, int stride, uint32_t* keys) {
  const int block = tile / kTilesPerBlock;
  const int first_key = tile * kTileKeys;
  const int64_t row_bytes = CacheRowBytesOf(p.kv_fp8, p.kv_lora_rank, p.rope_dim);
  const uint8_t* rows = static_cast<const uint8_t*>(p.kv_cache) +
                        static_cast<int64_t>(table[block]) * block_bytes +
                        (tile % kTilesPerBlock) * kTileKeys * row_bytes;
  if (p.kv_fp8) {
    LoadFp8KeyBlock<kThreads>(rows, first_key, seq_len, p.kv_lora_rank, p.rope_dim, keys, stride,
                              kTileKeys);
    return;
  }
  const int chunks = width / 8;  // width is a multiple of 16 here
  const uint4* src = reinterpret_cast<const uint4*>(rows);
  for (int i = threadIdx.x; i < kTileKeys * chunks; i += kThreads) {
    const int key = i / chunks;
    CopyAsync16(keys + key * stride + (i - key * chunks) * 4, src + i, first_key + key < seq_len);
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// The kernel's per-thread constants.
struct MmaThread {
  int lane, warp;
  int k_begin, k_end;  // this warp's k-steps of the row
};

// Step 1: this warp's partial scores of the tile's 32 keys over its k-steps.
__device__ void TileScores(const MmaShared& s, const MmaThread& th, const uint32_t* keys,
                           int stride, const uint32_t (&qa)[kMaxKStepsPerWarp][4]) {
  float c[kScoreTiles][4] = {};
  const uint32_t* b = keys + MmaBWordOfRows(th.lane, 0, stride, 0, 0);
#pragma unroll
  for (int i = 0; i < kMaxKStepsPerWarp; ++i) {
    const int ks = th.k_begin + i;
    if (ks < th.k_end) {  // Uniform over the warp.
#pragma unroll
      for (int j = 0; j < kScoreTiles; ++j) {
        const uint32_t* bj = b + 8 * j * stride + 8 * ks;  // keys 8j .., dims 16·ks ..
        Mma16816(c[j], qa[i], bj[0], bj[4]);
      }
    }
  }
  float* part = s.part + th.warp * kRows * kPartStride;
#pragma unroll
  for (int j = 0; j < kScoreTiles; ++j) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // accumulators 2h, 2h + 1: one row, two keys
      *reinterpret_cast<float2*>(part + PtxCRow(th.lane, 2 * h) * kPartStride + 8 * j +
                                 PtxCCol(th.lane, 2 * h)) = make_float2(c[j][2 * h], c[j][2 * h + 1]);
    }
  }
}

// Step 2: online softmax over the tile, 8 consecutive lanes per row, 4 keys each.
__device__ void TileSoftmax(const MmaShared& s, const MlaSplitTile& t, int first_key,
                            int seq_len, int s_q, int heads) {
  const int r = threadIdx.x / kThreadsPerRow;
  const int sub = threadIdx.x % kThreadsPerRow;
  float v[kKeysPerThread] = {};
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const float4 x = *reinterpret_cast<const float4*>(s.part + (w * kRows + r) * kPartStride +
                                                      sub * kKeysPerThread);
    v[0] += x.x;
    v[1] += x.y;
    v[2] += x.z;
    v[3] += x.w;
  }
  // Row r is query row (row0 + r) / heads of the sequence: it sees keys below its limit.
  const int limit = seq_len - s_q + 1 + (t.row0 + r) / heads;
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < kKeysPerThread; ++i) {
    v[i] = first_key + sub * kKeysPerThread + i < limit ? v[i] * t.scale_log2 : -INFINITY;
    mx = fmaxf(mx, v[i]);
  }
  // The 8 lanes of a row are an aligned group: xor by 4, 2, 1 stays inside it.
#pragma unroll
  for (int o = kThreadsPerRow / 2; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  }
  const float m_old = s.m[r];
  const float m_new = fmaxf(m_old, mx);
  float alpha = 1.0f;
  float sum = 0.0f;
  if (m_new != -INFINITY) {  // Otherwise nothing was visible yet: keep zeros.
    alpha = exp2f(m_old - m_new);
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
      v[i] = exp2f(v[i] - m_new);
      sum += v[i];
    }
  } else {
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) v[i] = 0.0f;
  }
#pragma unroll
  for (int o = kThreadsPerRow / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  uint32_t* pr = s.p + r * kPStride + sub * (kKeysPerThread / 2);
  pr[0] = uint32_t{ToBf16Bits(v[0])} | (uint32_t{ToBf16Bits(v[1])} << 16);
  pr[1] = uint32_t{ToBf16Bits(v[2])} | (uint32_t{ToBf16Bits(v[3])} << 16);
  // The row's lanes have read m above; only lane 0 reads l and writes the state.
  __syncwarp();
  if (sub == 0) {
    s.l[r] = s.l[r] * alpha + sum;
    s.m[r] = m_new;
    s.alpha[r] = alpha;
  }
}

// Step 3: acc = acc · alpha + P · V over the tile's 32 keys, this warp's column pairs.
__device__ void TileAccumulate(const MmaShared& s, const MmaThread& th, const uint32_t* keys,
                               int stride, int latent, float (&acc)[2 * kMaxPairs][4]) {
  float alpha[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) alpha[i] = s.alpha[PtxCRow(th.lane, i)];
#pragma unroll
  for (int i = 0; i < 2 * kMaxPairs; ++i) {
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[i][k] *= alpha[k];
  }
  // This lane's ldmatrix row at k-step 0, column pair 0: a k-step adds 16 key rows, a pair
  // 16 columns (8 words).
  const uint32_t* v_row =
      keys + MmaVKeyOfLane(th.lane) * stride + (16 * th.warp + MmaVColumnOfLane(th.lane)) / 2;
#pragma unroll
  for (int ks = 0; ks < kTileKeys / 16; ++ks) {
    uint32_t a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = s.p[MmaAWord(th.lane, r, kPStride, ks * 8)];
#pragma unroll
    for (int i = 0; i < kMaxPairs; ++i) {
      const int col = 16 * (th.warp + kWarps * i);
      if (col < latent) {  // Uniform over the warp; no break, so acc stays in registers.
        uint32_t b[4];
        LdMatrixX4Trans(v_row + ks * 16 * stride + 8 * kWarps * i, b);
        Mma16816(acc[2 * i], a, b[0], b[1]);
        if (col + 8 < latent) Mma16816(acc[2 * i + 1], a, b[2], b[3]);
      }
    }
  }
}

// Writes one finished piece (final output or partial slot), then clears the state.
__device__ void FinishMmaPiece(const MlaDecodeParams& p, const MmaShared& s, const MmaThread& th,
                               const MlaSplitTile& t, int seq, int split,
                               float (&acc)[2 * kMaxPairs][4]) {
  const int latent = p.kv_lora_rank;
  const MlaPieceOutput o = MlaPieceOutputOf(p, seq, split);
#pragma unroll
  for (int half = 0; half < 2; ++half) {  // accumulators 2·half and 2·half + 1: one row
    const int r = PtxCRow(th.lane, 2 * half);
    const int row = t.row0 + r;
    const float l = s.l[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int i = 0; i < 2 * kMaxPairs; ++i) {
      const int col = 16 * (th.warp + kWarps * (i / 2)) + 8 * (i % 2) + PtxCCol(th.lane, 2 * half);
      if (col < latent && row < t.rows_total) {
        const int64_t at = (o.base * t.rows_total + row) * latent + col;
        const float x0 = acc[i][2 * half] * inv;
        const float x1 = acc[i][2 * half + 1] * inv;
        if (o.final_out) {
          // latent and the column are even: a 4-byte aligned pair.
          *reinterpret_cast<uint32_t*>(p.out + at) =
              uint32_t{ToBf16Bits(x0)} | (uint32_t{ToBf16Bits(x1)} << 16);
        } else {
          *reinterpret_cast<float2*>(p.partial_out + at) = make_float2(x0, x1);
        }
      }
      acc[i][2 * half] = 0.0f;
      acc[i][2 * half + 1] = 0.0f;
    }
  }
  FinishPieceLse<kRows>(p, o, t.row0, t.rows_total, s.m, s.l);
}

__global__ void __launch_bounds__(kThreads) MlaDecodeMmaSplitKernel(MlaDecodeParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int width = p.kv_lora_rank + p.rope_dim;
  const int stride = MmaRowStrideWords(width);
  const MmaShared s = CarveMmaShared(smem, stride);
  const MlaSplitTile t = MlaSplitTileOf(p);
  MmaThread th;
  th.lane = static_cast<int>(threadIdx.x) & 31;
  th.warp = static_cast<int>(threadIdx.x) >> 5;
  const int ksteps = width / 16;
  const int per_warp = (ksteps + kWarps - 1) / kWarps;
  th.k_begin = min(th.warp * per_warp, ksteps);
  th.k_end = min(th.k_begin + per_warp, ksteps);
  if (threadIdx.x < kRows) {
    s.m[threadIdx.x] = -INFINITY;
    s.l[threadIdx.x] = 0.0f;
  }
  float acc[2 * kMaxPairs][4] = {};
  uint32_t qa[kMaxKStepsPerWarp][4];
  const MlaDecodePart part = p.parts[blockIdx.y];
  const int64_t block_bytes =
      int64_t{kMlaBlockSize} * CacheRowBytesOf(p.kv_fp8, p.kv_lora_rank, p.rope_dim);
  for (int seq = part.begin_seq; seq <= part.end_seq; ++seq) {
    const int seq_len = p.seq_lens[seq];
    const int blocks = (seq_len + kMlaBlockSize - 1) / kMlaBlockSize;
    const MlaDecodePieceRange range = MlaPieceOf(part, seq, blocks);
    const int block_end = min(range.block_end, blocks);  // Guards against a stale plan.
    if (range.block_begin >= block_end) continue;        // Uniform over the CTA.
    const int tile_begin = range.block_begin * kTilesPerBlock;
    // A last block's second half past seq_len holds no key: not loaded.
    const int tile_end = min(block_end * kTilesPerBlock, (seq_len + kTileKeys - 1) / kTileKeys);
    const int32_t* table = p.block_table + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
    __syncthreads();  // The previous piece's readers of q and the stages are done.
    LoadQueryTile(p, seq, t.row0, t.rows_total, width, stride, s.q);
    IssueKeyTile(p, table, block_bytes, tile_begin, seq_len, width, stride, s.stages);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kMaxKStepsPerWarp; ++i) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        qa[i][r] = th.k_begin + i < th.k_end
                       ? s.q[MmaAWord(th.lane, r, stride, 8 * (th.k_begin + i))]
                       : 0u;
      }
    }
    for (int tile = tile_begin; tile < tile_end; ++tile) {
      // Tile i of the piece in stage i mod 2 (an offset, not an indexed array of pointers,
      // which would live in local memory).
      const int stage = (tile - tile_begin) & 1;
      const uint32_t* keys = s.stages + stage * kTileKeys * stride;
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
      // The tile's copies are in for every thread, and everyone is done with the other
      // stage, the partial scores and p of the previous tile.
      __syncthreads();
      if (tile + 1 < tile_end) {
        IssueKeyTile(p, table, block_bytes, tile + 1, seq_len, width, stride,
                     s.stages + (stage ^ 1) * kTileKeys * stride);
      }
      TileScores(s, th, keys, stride, qa);
      __syncthreads();
      TileSoftmax(s, t, tile * kTileKeys, seq_len, p.q_rows_per_seq, p.num_heads);
      __syncthreads();
      TileAccumulate(s, th, keys, stride, p.kv_lora_rank, acc);
    }
    FinishMmaPiece(p, s, th, t, seq, range.split, acc);
  }
}

}  // namespace

absl::StatusOr<int> MlaDecodeMmaCtasPerSm(int width) {
  const size_t smem = MmaSharedBytes(width);
  const void* kernel = reinterpret_cast<const void*>(&MlaDecodeMmaSplitKernel);
  if (absl::Status s = AllowDynamicSharedBytes(kernel, smem); !s.ok()) return s;
  int ctas = 0;
  MLA_CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &ctas, MlaDecodeMmaSplitKernel, kThreads, smem));
  return std::max(ctas, 1);
}

absl::Status LaunchMlaDecodeMmaSplit(const MlaDecodeParams& p, CudaStream stream) {
  const int width = p.kv_lora_rank + p.rope_dim;
  const size_t smem = MmaSharedBytes(width);
  const void* kernel = reinterpret_cast<const void*>(&MlaDecodeMmaSplitKernel);
  if (absl::Status s = AllowDynamicSharedBytes(kernel, smem); !s.ok()) return s;
  const int rows_total = p.q_rows_per_seq * p.num_heads;
  const dim3 grid((rows_total + kRows - 1) / kRows, p.num_parts);
  MlaDecodeMmaSplitKernel<<<grid, kThreads, smem, stream>>>(p);
  return CudaLaunchStatus("MlaDecodeMmaSplitKernel");
}

}  // namespace mla::cuda
