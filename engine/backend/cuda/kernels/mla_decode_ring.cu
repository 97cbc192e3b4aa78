// The ring variant of the tensor-core MLA decode split kernel (MlaDecodeKernel::kMmaRing,
// opt-in until a device has measured it): same grid, plan, partial slots and outputs as the
// other split kernels, the same math as mla_decode_mma.cu, a different memory schedule.
//
// Why: the default tensor-core kernel loads a block, waits, computes, and relies on the
// SM's second CTA to overlap its loads with the first one's math; on an H200 it reached 67%
// of HBM (docs/BENCHMARKS.md, ncu: DRAM 64%, shared-memory-limited occupancy). Each CTA has
// one block in flight only while it is not computing, so an SM's bytes in flight fall to
// zero whenever both CTAs compute, and every block pays a full memory latency. Here one CTA
// of 8 warps per SM keeps a ring of three 64-key blocks in shared memory: while it computes
// block i, blocks i + 1 and i + 2 are on their way (cp.async groups, one per block), so two
// blocks (144 KiB at DeepSeek's 576) are always in flight, across piece and sequence
// boundaries of the CTA's part.
//
// The room for three blocks (216 KiB; 223 KiB in all, of the 227 KiB a CTA may have) comes from:
//   - q's fragments in registers, loaded from global memory once per piece (no q tile in
//     shared memory): each warp holds all of the row's k-steps (36 × 4 registers at 576);
//   - key rows without padding words: 16-byte chunks swizzled by the key (chunk c of key k
//     at c ^ (k mod 8), mla_decode_mma_rule.h), read with ldmatrix, conflict-free;
// so the ring takes rows of at most kMlaRingMaxWidth values.
//
// An FP8 cache (DeepSeek's 656-byte rows, MlaDecodeRingTakesCache) goes through the ring
// as stored: three stages of FP8 rows (41 KiB each), copied with cp.async like bf16 ones,
// and one block of bf16 rows that each block is dequantized into (code · its group's
// scale, rounded to bf16, as the other kernels do) before its scores; 202 KiB in all.
//
// Per block of 64 keys (barriers between the steps):
//   1. wait for the block's copies, then issue the copies of the block two ahead into the
//      stage the previous block used (FP8: then dequantize the block into the bf16 rows);
//   2. scores: warp w takes keys 8w .. 8w + 7 (one n-tile) over every k-step, B from one
//      ldmatrix.x4 per two k-steps, scaled to the log2 domain and masked into shared memory;
//   3. online softmax, 16 threads per row, 4 keys each (OnlineSoftmaxRow);
//   4. O = O·alpha + P·V: warp w owns the latent's column pairs w, w + 8, ... (16 columns
//      each), V's B fragments from ldmatrix.x4.trans, as in the k-split variant.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/cache_row.cuh"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.cuh"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_ring.cuh"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = kRingRows;                        // 16: the MMA's M
constexpr int kKeys = kRingKeys;                        // 64: one cache block per stage
constexpr int kStages = kRingStages;                    // 3
constexpr int kMaxKSteps = kMlaRingMaxWidth / 16;       // 36
constexpr int kMaxPairs = kMlaMaxLatent / 16 / kWarps;  // latent column pairs per warp: 4
constexpr int kScoreStride = kRingScoreStride;          // floats per row of scores
constexpr int kPStride = kRingPStride;                  // words per row of p
constexpr int kLanesPerRow = kThreads / kRows;          // 16 in the softmax
constexpr int kKeysPerLane = kKeys / kLanesPerRow;      // 4
static_assert(kRows == kMlaDecodeRowsPerCta && kKeys == kMlaBlockSize);
static_assert(kKeys / 8 == kWarps, "one n-tile of scores per warp");
static_assert(kMaxKSteps % 2 == 0, "k-steps are loaded in pairs");
// Lanes (g, t) store score pairs at 72·g + 8·w + 2·t: 72 ≡ 8 (mod 32) puts a half warp's
// four rows in four different groups of 8 banks.
static_assert(kScoreStride % 32 == 8 && kPStride == MmaRowStrideWords(kKeys));
static_assert(kKeysPerLane == 4);

struct RingShared {
  // [kStages] blocks as copied (16-byte aligned): bf16 rows of row_chunks · 4 words,
  // swizzled, or FP8 rows as stored.
  uint32_t* stages;
  size_t stage_words;     // RingStageWords or RingFp8StageWords (mla_decode_mma_rule.h)
  uint32_t* dequantized;  // FP8 only: [kKeys][row_chunks · 4] swizzled bf16 pairs
  uint32_t* p;            // [kRows][kPStride] bf16 pairs
  float* scores;          // [kRows][kScoreStride]
  float* m;               // [kRows] running max, log2 domain
  float* l;               // [kRows] running sum of exp2(score - m)
  float* alpha;           // [kRows] rescale of the output for the current block

  __device__ uint32_t* stage(int i) const { return stages + i * stage_words; }
  __device__ MmaRowState rows() const { return {m, l, alpha}; }
};

// `fp8_row_bytes`: 0 for a bf16 cache.
__device__ RingShared CarveRingShared(unsigned char* base, int width, int fp8_row_bytes) {
  RingShared s;
  s.stages = reinterpret_cast<uint32_t*>(base);
  s.stage_words = static_cast<size_t>(fp8_row_bytes == 0 ? RingStageWords(width)
                                                         : RingFp8StageWords(fp8_row_bytes));
  s.dequantized = s.stages + kStages * s.stage_words;
  s.p = s.dequantized + (fp8_row_bytes == 0 ? 0 : RingStageWords(width));
  s.scores = reinterpret_cast<float*>(s.p + kRows * kPStride);
  s.m = s.scores + kRows * kScoreStride;
  s.l = s.m + kRows;
  s.alpha = s.l + kRows;
  return s;
}

// An FP8 block as copied (rows of `row_bytes`: codes, scales from byte `latent`, k_pe from
// `rope_at`, all 16-byte aligned) into the swizzled bf16 rows the products read.
// Zero-filled slots (codes and scales 0) become zeros.
__device__ void DequantizeRingBlock(const uint32_t* stage, int latent, int rope, int row_bytes,
                                    int rope_at, int row_chunks, uint32_t* keys) {
  const uint8_t* raw = reinterpret_cast<const uint8_t*>(stage);
  const int code_chunks = latent / 8;  // 8 codes → 8 values, one 16-byte chunk
  const int chunks = code_chunks + rope / 8;
  for (int i = threadIdx.x; i < kKeys * chunks; i += kThreads) {
    const int key = i / chunks;
    const int c = i - key * chunks;
    const uint8_t* row = raw + key * row_bytes;
    uint4 v;
    if (c < code_chunks) {
      const uint2 codes = *reinterpret_cast<const uint2*>(row + 8 * c);
      const float scale =
          *reinterpret_cast<const float*>(row + latent + 4 * (8 * c / kCacheFp8Group));
      v = make_uint4(DequantFp8Pair(codes.x, scale), DequantFp8Pair(codes.x >> 16, scale),
                     DequantFp8Pair(codes.y, scale), DequantFp8Pair(codes.y >> 16, scale));
    } else {
      v = *reinterpret_cast<const uint4*>(row + rope_at + 16 * (c - code_chunks));
    }
    *reinterpret_cast<uint4*>(keys + RingChunkWord(key, c, row_chunks)) = v;
  }
}

// q's A fragments of every k-step for the tile's 16 rows of sequence `seq`, straight from
// global memory (rows past the end and k-steps past the row are zero).
__device__ void LoadQueryFragments(const MlaDecodeParams& p, const MlaSplitTile& t, int seq,
                                   int lane, uint32_t (&qa)[kMaxKSteps][4]) {
  const int words = t.width / 2;  // q's rows are contiguous: stride = words
  const uint32_t* src = reinterpret_cast<const uint32_t*>(
      p.q + (static_cast<int64_t>(seq) * t.rows_total + t.row0) * t.width);
  const int valid_rows = min(kRows, t.rows_total - t.row0);
  const int ksteps = t.width / 16;
#pragma unroll
  for (int ks = 0; ks < kMaxKSteps; ++ks) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = MmaGroup(lane) + ((r & 1) != 0 ? 8 : 0);
      qa[ks][r] = ks < ksteps && row < valid_rows ? src[MmaAWord(lane, r, words, 8 * ks)] : 0u;
    }
  }
}

// The ring kernel's state and steps.
struct MmaRing {
  const MlaDecodeParams& p;
  RingShared s;
  MlaSplitTile t;
  int lane, warp;
  int row_chunks;
  float acc[2 * kMaxPairs][4];  // [2 · pair + tile of the pair]
  uint32_t qa[kMaxKSteps][4];

  __device__ MmaRing(const MlaDecodeParams& params, unsigned char* smem, int fp8_row_bytes)
      : p(params), t(MlaSplitTileOf(params)) {
    s = CarveRingShared(smem, t.width, fp8_row_bytes);
    lane = static_cast<int>(threadIdx.x) & 31;
    warp = static_cast<int>(threadIdx.x) >> 5;
    row_chunks = RingRowChunks(t.width);
#pragma unroll
    for (int i = 0; i < 2 * kMaxPairs; ++i) {
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[i][k] = 0.0f;
    }
  }

  // Step 2: this warp's 8 keys against the 16 rows, every k-step.
  __device__ void Scores(const uint32_t* keys, const RingItem& it) {
    const int ksteps = t.width / 16;
    const int key = 8 * warp + RingKKeyOfLane(lane);
    const int lane_chunk = RingKChunkOfLane(lane);
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int kp = 0; kp < kMaxKSteps / 2; ++kp) {
      if (2 * kp < ksteps) {  // Uniform over the warp.
        // Chunks 4kp .. 4kp + 3; with an odd k-step count the last two lie in the row's
        // padding (RingRowChunks rounds up to 8): read, never used.
        uint32_t b[4];
        LdMatrixX4(keys + RingChunkWord(key, 4 * kp + lane_chunk, row_chunks), b);
        Mma16816(c, qa[2 * kp][0], qa[2 * kp][1], qa[2 * kp][2], qa[2 * kp][3], b[0], b[1]);
        if (2 * kp + 1 < ksteps) {
          Mma16816(c, qa[2 * kp + 1][0], qa[2 * kp + 1][1], qa[2 * kp + 1][2], qa[2 * kp + 1][3],
                   b[2], b[3]);
        }
      }
    }
    const int first_key = it.block * kKeys;
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // accumulators 2h, 2h + 1: one row, two keys
      const int r = PtxCRow(lane, 2 * h);
      const int k0 = 8 * warp + PtxCCol(lane, 2 * h);
      // Row r is query row (row0 + r) / heads of the sequence: it sees keys below its limit.
      const int limit = it.seq_len - p.q_rows_per_seq + 1 + (t.row0 + r) / p.num_heads;
      const float x0 = first_key + k0 < limit ? c[2 * h] * t.scale_log2 : -INFINITY;
      const float x1 = first_key + k0 + 1 < limit ? c[2 * h + 1] * t.scale_log2 : -INFINITY;
      *reinterpret_cast<float2*>(s.scores + r * kScoreStride + k0) = make_float2(x0, x1);
    }
  }

  // Step 3: online softmax, kLanesPerRow consecutive lanes per row.
  __device__ void Softmax() {
    const int r = static_cast<int>(threadIdx.x) / kLanesPerRow;
    const int sub = static_cast<int>(threadIdx.x) % kLanesPerRow;
    const float4 x = *reinterpret_cast<const float4*>(s.scores + r * kScoreStride + sub * 4);
    float v[kKeysPerLane] = {x.x, x.y, x.z, x.w};
    const float mx = fmaxf(fmaxf(v[0], v[1]), fmaxf(v[2], v[3]));
    OnlineSoftmaxRow<kLanesPerRow, kKeysPerLane>(s.rows(), s.p + r * kPStride, r, sub, mx, v);
  }

  // Step 4: acc = acc · alpha + P · V over the block's 64 keys, this warp's column pairs.
  __device__ void Accumulate(const uint32_t* keys) {
    RescaleOutput(s.alpha, lane, acc);
    const int w = warp;
    AccumulateSwizzledPV(s.p, kPStride, keys, row_chunks, p.kv_lora_rank, lane, acc,
                         [w](int i) { return 16 * (w + kWarps * i); });
  }

  __device__ void FinishPiece(const RingItem& it) {
    const int w = warp;
    FinishMmaPiece(p, s.rows(), t, it.seq, it.split, acc,
                   [w](int i) { return 16 * (w + kWarps * (i / 2)) + 8 * (i % 2); });
  }
};

template <bool kFp8>
__global__ void __launch_bounds__(kThreads, 1) MlaDecodeRingKernel(MlaDecodeParams p) {
  unsigned char* smem = DynamicSharedMemory();
  const int64_t row_bytes = CacheRowBytesOf(kFp8, p.kv_lora_rank, p.rope_dim);
  MmaRing k(p, smem, kFp8 ? static_cast<int>(row_bytes) : 0);
  if (threadIdx.x < kRows) {
    k.s.m[threadIdx.x] = -INFINITY;
    k.s.l[threadIdx.x] = 0.0f;
  }
  const MlaDecodePart part = p.parts[blockIdx.y];
  // Two cursors over the same walk: `next` issues copies kStages - 1 blocks ahead of `cur`.
  RingItem next{};
  bool has_next = RingFirstFrom(p, part, part.begin_seq, next);
  RingItem cur = next;
  bool has_cur = has_next;
  // One copy group per stage, empty past the walk's end, so that the wait below counts
  // groups the same way on every iteration.
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (has_next) {
      IssueRingBlock<kThreads, kFp8>(p, next, k.t.width, row_bytes, k.s.stage(i));
      has_next = RingAdvance(p, part, next);
    }
    CommitCopies();
  }
  int stage = 0;
  bool new_piece = true;
  while (has_cur) {  // Uniform over the CTA: every thread walks the same part.
    if (new_piece) LoadQueryFragments(p, k.t, cur.seq, k.lane, k.qa);
    new_piece = false;
    WaitCopiesExceptNewest<kStages - 2>();  // This block's group is complete.
    // The block is in for every thread, and every warp is done with the previous block:
    // its stage (overwritten next), its p and its scores.
    __syncthreads();
    if (has_next) {
      IssueRingBlock<kThreads, kFp8>(p, next, k.t.width, row_bytes,
                                     k.s.stage((stage + kStages - 1) % kStages));
      has_next = RingAdvance(p, part, next);
    }
    CommitCopies();
    if constexpr (kFp8) {
      // The previous block's products are done (barrier above): its bf16 rows are free.
      DequantizeRingBlock(k.s.stage(stage), p.kv_lora_rank, p.rope_dim, static_cast<int>(row_bytes),
                          static_cast<int>(row_bytes) - 2 * p.rope_dim, k.row_chunks,
                          k.s.dequantized);
      __syncthreads();
    }
    const uint32_t* keys = kFp8 ? k.s.dequantized : k.s.stage(stage);
    k.Scores(keys, cur);
    __syncthreads();
    k.Softmax();
    __syncthreads();
    k.Accumulate(keys);
    if (cur.block + 1 == cur.block_end) {  // The piece's last block.
      k.FinishPiece(cur);
      new_piece = true;
    }
    has_cur = RingAdvance(p, part, cur);
    stage = stage + 1 == kStages ? 0 : stage + 1;
  }
}

// The ring kernel for a cache and its shared memory.
struct RingVariant {
  void (*kernel)(MlaDecodeParams);
  size_t smem;
  const void* address() const { return reinterpret_cast<const void*>(kernel); }
};

RingVariant RingVariantOf(int latent, int rope, bool fp8) {
  const int fp8_row_bytes = fp8 ? static_cast<int>(CacheRowBytesOf(true, latent, rope)) : 0;
  return {fp8 ? &MlaDecodeRingKernel<true> : &MlaDecodeRingKernel<false>,
          static_cast<size_t>(RingSharedBytes(latent + rope, fp8_row_bytes))};
}

}  // namespace

bool MlaDecodeRingRuns(int kv_lora_rank, int rope_dim, bool kv_fp8) {
  return MlaDecodeRingTakesCache(kv_lora_rank, rope_dim, kv_fp8) &&
         CurrentDeviceAllowsSharedBytes(RingVariantOf(kv_lora_rank, rope_dim, kv_fp8).smem);
}

absl::StatusOr<int> MlaDecodeRingCtasPerSm(int kv_lora_rank, int rope_dim, bool kv_fp8) {
  const RingVariant v = RingVariantOf(kv_lora_rank, rope_dim, kv_fp8);
  if (absl::Status s = AllowDynamicSharedBytes(v.address(), v.smem); !s.ok()) return s;
  int ctas = 0;
  MLA_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, v.address(), kThreads, v.smem));
  return std::max(ctas, 1);
}

absl::Status LaunchMlaDecodeRingSplit(const MlaDecodeParams& p, CudaStream stream) {
  const RingVariant v = RingVariantOf(p.kv_lora_rank, p.rope_dim, p.kv_fp8);
  if (absl::Status s = AllowDynamicSharedBytes(v.address(), v.smem); !s.ok()) return s;
  const int rows_total = p.q_rows_per_seq * p.num_heads;
  const dim3 grid((rows_total + kRows - 1) / kRows, p.num_parts);
  return LaunchKernel(p.kv_fp8 ? "MlaDecodeRingKernel<fp8>" : "MlaDecodeRingKernel", v.kernel, grid,
                      dim3(kThreads), v.smem, stream, p);
}

}  // namespace mla::cuda
