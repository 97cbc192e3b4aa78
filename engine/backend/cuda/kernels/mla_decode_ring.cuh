// The walk of the decode kernels that keep cache blocks in flight while they compute
// (mla_decode_ring.cu, mla_decode_rows64.cuh): a CTA's part of the plan as a list of
// blocks that two cursors walk (one issuing copies ahead, one computing), a block's
// cp.async copies into shared memory (bf16 rows swizzled by the key or in the 128-byte
// swizzle wgmma reads, mla_decode_mma_rule.h, or FP8 rows as stored; one copy group per
// block), and P·V over such a block with ldmatrix.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_RING_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_RING_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_metadata.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.cuh"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {

// One block of the CTA's walk: block `block` of sequence `seq`, whose piece (split `split`)
// ends before block_end.
struct RingItem {
  int seq;
  int block;
  int block_end;
  int split;
  int seq_len;
};

// The first block of the first non-empty piece of `part` at or after sequence `seq`.
__device__ inline bool RingFirstFrom(const MlaDecodeParams& p, const MlaDecodePart& part, int seq,
                                     RingItem& it) {
  for (; seq <= part.end_seq; ++seq) {
    const int seq_len = p.seq_lens[seq];
    const int blocks = (seq_len + kMlaBlockSize - 1) / kMlaBlockSize;
    const MlaDecodePieceRange range = MlaPieceOf(part, seq, blocks);
    const int block_end = min(range.block_end, blocks);  // Guards against a stale plan.
    if (range.block_begin < block_end) {
      it = {seq, range.block_begin, block_end, range.split, seq_len};
      return true;
    }
  }
  return false;
}

// The walk's next block after `it`; false past the part's end.
__device__ inline bool RingAdvance(const MlaDecodeParams& p, const MlaDecodePart& part,
                                   RingItem& it) {
  if (++it.block < it.block_end) return true;
  return RingFirstFrom(p, part, it.seq + 1, it);
}

// Every thread issues its cp.async copies of the item's block into `stage` (zeros for the
// slots at or past the sequence's length: their keys are masked, but their rows are still
// read, as V with p = 0 and by the FP8 dequantization, so they must not hold NaN): bf16 rows
// swizzled, FP8 rows (`row_bytes` each, a multiple of 16) as they are.
// kSw128: bf16 rows in PTX's canonical 128-byte swizzle instead (Sw128ChunkWord, the
// wgmma build of the 64-row kernel).
template <int kThreadCount, bool kFp8, bool kSw128 = false>
__device__ void IssueRingBlock(const MlaDecodeParams& p, const RingItem& it, int width,
                               int64_t row_bytes, uint32_t* stage) {
  const int32_t block_id =
      p.block_table[static_cast<int64_t>(it.seq) * p.max_blocks_per_seq + it.block];
  const uint4* src =
      reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(p.kv_cache) +
                                     static_cast<int64_t>(block_id) * kMlaBlockSize * row_bytes);
  const int chunks = static_cast<int>(row_bytes / 16);  // per row
  const int row_chunks = RingRowChunks(width);
  const int first_key = it.block * kMlaBlockSize;
  for (int i = threadIdx.x; i < kMlaBlockSize * chunks; i += kThreadCount) {
    const int key = i / chunks;
    const int c = i - key * chunks;
    uint32_t* dst = kFp8     ? stage + 4 * i
                    : kSw128 ? stage + Sw128ChunkWord(key, c)
                             : stage + RingChunkWord(key, c, row_chunks);
    CopyAsync16(dst, src + i, first_key + key < it.seq_len);
  }
}

// acc += P · V over a block of 64 swizzled key rows (V is their first `latent` values) for
// this warp's column pairs: pair i covers latent columns pair_column(i) .. + 15 (n-tiles
// 2i and 2i + 1; columns at or past `latent` skipped), P's A fragments from the warp's 16
// rows of p, `p_stride` words each; V's B fragments through ldmatrix.x4.trans.
template <int kTiles, typename PairColumn>
__device__ __forceinline__ void AccumulateSwizzledPV(const uint32_t* p_rows, int p_stride,
                                                     const uint32_t* keys, int row_chunks,
                                                     int latent, int lane, float (&acc)[kTiles][4],
                                                     PairColumn pair_column) {
#pragma unroll
  for (int ks = 0; ks < kMlaBlockSize / 16; ++ks) {
    uint32_t a[4];
    LoadPFragment(p_rows, p_stride, lane, ks, a);
    const int key = 16 * ks + MmaVKeyOfLane(lane);
#pragma unroll
    for (int i = 0; i < kTiles / 2; ++i) {
      const int col = pair_column(i);
      if (col < latent) {  // Uniform over the warp; no break, so acc stays in registers.
        uint32_t b[4];
        LdMatrixX4Trans(keys + RingChunkWord(key, (col + MmaVColumnOfLane(lane)) / 8, row_chunks),
                        b);
        Mma16816(acc[2 * i], a[0], a[1], a[2], a[3], b[0], b[1]);
        if (col + 8 < latent) Mma16816(acc[2 * i + 1], a[0], a[1], a[2], a[3], b[2], b[3]);
      }
    }
  }
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_RING_CUH_
