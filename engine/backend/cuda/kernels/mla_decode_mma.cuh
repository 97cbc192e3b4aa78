// What the tensor-core MLA decode split kernels share (mla_decode_mma.cu: one block at a
// time, and its k-split variant; mla_decode_ring.cu: a ring of blocks in flight;
// mla_decode_rows64.cuh: 64 query rows per CTA): the m16n8k16 product, ldmatrix, one row's
// online-softmax step and the end of a piece.
// Fragment layouts: mla_decode_mma_rule.h.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_CUH_

#include <cmath>
#include <cstdint>

#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {

// The running state of a CTA's 16 query rows in shared memory.
struct MmaRowState {
  float* m;      // [16] running max, log2 domain
  float* l;      // [16] running sum of exp2(score - m)
  float* alpha;  // [16] rescale of the output for the current block
};

// The online softmax of one row's kValues scores at this thread (sub of the row's kLanes
// consecutive lanes, an aligned group of a warp), whose own max is mx: running max m and
// sum l, alpha for the output, p stored as bf16 pairs at p_row + sub · kValues / 2.
template <int kLanes, int kValues>
__device__ void OnlineSoftmaxRow(const MmaRowState& s, uint32_t* p_row, int r, int sub, float mx,
                                 float (&v)[kValues]) {
  static_assert(kValues % 2 == 0 && (kLanes & (kLanes - 1)) == 0 && kLanes <= 32);
  // xor by kLanes / 2, ..., 1 stays inside the row's aligned group.
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  const float m_old = s.m[r];
  const float m_new = fmaxf(m_old, mx);
  float alpha = 1.0f;
  float sum = 0.0f;
  if (m_new != -INFINITY) {  // Otherwise nothing was visible yet: keep zeros.
    alpha = exp2f(m_old - m_new);
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      v[i] = exp2f(v[i] - m_new);
      sum += v[i];
    }
  } else {
#pragma unroll
    for (int i = 0; i < kValues; ++i) v[i] = 0.0f;
  }
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  uint32_t* pr = p_row + sub * (kValues / 2);
#pragma unroll
  for (int i = 0; i < kValues / 2; ++i) {
    pr[i] = uint32_t{ToBf16Bits(v[2 * i])} | (uint32_t{ToBf16Bits(v[2 * i + 1])} << 16);
  }
  // The row's lanes have read m above; only its first lane reads l and writes the state.
  __syncwarp();
  if (sub == 0) {
    s.l[r] = s.l[r] * alpha + sum;
    s.m[r] = m_new;
    s.alpha[r] = alpha;
  }
}

// acc *= the rows' alpha of this block (accumulator i of a tile is row PtxCRow(lane, i)).
template <int kTiles>
__device__ __forceinline__ void RescaleOutput(const float* alpha_of_row, int lane,
                                              float (&acc)[kTiles][4]) {
  float alpha[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) alpha[i] = alpha_of_row[PtxCRow(lane, i)];
#pragma unroll
  for (int i = 0; i < kTiles; ++i) {
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[i][k] *= alpha[k];
  }
}

// P's A fragment for k-step ks (16 keys) from rows of p_stride words.
__device__ __forceinline__ void LoadPFragment(const uint32_t* p, int p_stride, int lane, int ks,
                                              uint32_t (&a)[4]) {
#pragma unroll
  for (int r = 0; r < 4; ++r) a[r] = p[MmaAWord(lane, r, p_stride, ks * 8)];
}

// One output pair of a finished piece: row r of the tile, columns col and col + 1, divided
// by the row's sum l, to the final output (bf16) or the piece's partial slot (fp32).
__device__ __forceinline__ void WritePieceOutputPair(const MlaDecodeParams& p,
                                                     const MlaPieceOutput& o, const MlaSplitTile& t,
                                                     int r, int col, float l, float x0, float x1) {
  const int latent = p.kv_lora_rank;
  const int row = t.row0 + r;
  if (col >= latent || row >= t.rows_total) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const int64_t at = (o.base * t.rows_total + row) * latent + col;
  if (o.final_out) {
    // latent and the column are even: a 4-byte aligned pair.
    *reinterpret_cast<uint32_t*>(p.out + at) =
        uint32_t{ToBf16Bits(x0 * inv)} | (uint32_t{ToBf16Bits(x1 * inv)} << 16);
  } else {
    *reinterpret_cast<float2*>(p.partial_out + at) = make_float2(x0 * inv, x1 * inv);
  }
}

// A finished piece's output (final or partial slot) from this thread's accumulators, whose
// n-tile i starts at latent column tile_column(i), then the accumulators cleared and the
// piece's lse written (every thread calls it).
template <int kTiles, typename TileColumn>
__device__ void FinishMmaPiece(const MlaDecodeParams& p, const MmaRowState& s,
                               const MlaSplitTile& t, int seq, int split, float (&acc)[kTiles][4],
                               TileColumn tile_column) {
  const MlaPieceOutput o = MlaPieceOutputOf(p, seq, split);
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int half = 0; half < 2; ++half) {  // accumulators 2·half and 2·half + 1: one row
    const int r = PtxCRow(lane, 2 * half);
    const float l = s.l[r];
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      const int col = tile_column(i) + PtxCCol(lane, 2 * half);
      WritePieceOutputPair(p, o, t, r, col, l, acc[i][2 * half], acc[i][2 * half + 1]);
      acc[i][2 * half] = 0.0f;
      acc[i][2 * half + 1] = 0.0f;
    }
  }
  FinishPieceLse<kMlaDecodeRowsPerCta>(p, o, t.row0, t.rows_total, s.m, s.l);
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_CUH_
