// What both MLA decode split kernels (mla_decode.cu: CUDA cores, mla_decode_mma.cu: tensor
// cores) share: the walk over a CTA's part of the plan, step 1 of every block (its 64 key
// rows into shared memory as bf16 pairs, `stride` 32-bit words per row; each kernel picks
// the stride its reads need to avoid bank conflicts; slots at or past the sequence's length
// are never read and become zeros, so NaN there cannot leak into p·v), and the lse of a
// finished piece. With a selection (MlaDecodeParams::selected) a "block" is 64 consecutive
// entries of the row's selection, each key row gathered from wherever its position lives.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_SPLIT_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_SPLIT_CUH_

#include <cstdint>

#include "engine/backend/cuda/kernels/cache_row.cuh"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {

// Where the 64 key rows of one step come from: consecutive rows of one cache block, or
// (gathered) rows at byte offsets from the layer's cache, −1 for a key not to read.
struct MlaKeyRows {
  const uint8_t* base;
  const int64_t* offsets;  // null: consecutive rows from base
  int64_t row_bytes;
  // (A key not to read gets base: an aligned address that no copy of it reads from.)
  __device__ const uint8_t* Row(int key) const {
    if (offsets == nullptr) return base + key * row_bytes;
    return offsets[key] >= 0 ? base + offsets[key] : base;
  }
  // Whether key `key` of the block starting at `first_key` is read (else zeros).
  __device__ bool Valid(int key, int first_key, int seq_len) const {
    return first_key + key < seq_len && (offsets == nullptr || offsets[key] >= 0);
  }
  // Every row starts 16-byte aligned.
  __device__ bool Aligned16() const {
    return (reinterpret_cast<uintptr_t>(base) & 15) == 0 &&
           (offsets == nullptr || row_bytes % 16 == 0);
  }
};

// Stores 4 words (16 bytes) of a key row in shared memory: one 16-byte store where the
// row keeps that alignment, four 4-byte ones otherwise (the CUDA-core kernel's odd stride).
__device__ __forceinline__ void StoreKeyWords4(uint32_t* dst, uint4 v, bool wide) {
  if (wide) {
    *reinterpret_cast<uint4*>(dst) = v;
  } else {
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
  }
}

// Two e4m3 codes (the low two bytes of `codes`, the lower first) times their group's
// scale, rounded to bf16: one word of a key row. Both codes in one conversion to a half
// pair (exact: every e4m3 value is a half), both products rounded in one conversion
// (round to nearest even, as ToBf16Bits); the bits are Fp8E4M3Value(code) · scale's.
__device__ __forceinline__ uint32_t DequantFp8Pair(uint32_t codes, float scale) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(__half2(h));
  const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * scale, f.y * scale);
  return uint32_t{__bfloat16_as_ushort(b.x)} | (uint32_t{__bfloat16_as_ushort(b.y)} << 16);
}

// FP8 rows: each value dequantized (code · its group's scale) and rounded to bf16, as the
// kernels compute on bf16 keys (they take q in bf16 as well). Where every part of a row
// starts 16-byte aligned (DeepSeek's 512 + 64: rows of 656 bytes, codes at 0, scales at
// 512, k_pe at 528, blocks from the 16-byte aligned pool), a thread takes 16 codes with one
// 16-byte load and their group's scale, or 8 k_pe values; otherwise value by value.
template <int kThreadCount>
__device__ void LoadFp8KeyBlock(const MlaKeyRows& src, int first_key, int seq_len, int latent,
                                int rope, uint32_t* keys, int stride) {
  const int64_t row_bytes = src.row_bytes;
  const int rope_at = latent + 4 * CacheFp8Groups(latent);
  if (latent % 16 == 0 && rope % 8 == 0 && row_bytes % 16 == 0 && rope_at % 16 == 0 &&
      src.Aligned16()) {
    const bool wide = stride % 4 == 0 && (reinterpret_cast<uintptr_t>(keys) & 15) == 0;
    const int code_chunks = latent / 16;  // 16 codes → 8 words
    const int chunks = code_chunks + rope / 8;
    for (int i = threadIdx.x; i < kMlaBlockSize * chunks; i += kThreadCount) {
      const int key = i / chunks;
      const int c = i - key * chunks;
      const bool valid = src.Valid(key, first_key, seq_len);
      const uint8_t* row = src.Row(key);
      uint32_t* dst = keys + key * stride;
      if (c < code_chunks) {
        uint4 codes = make_uint4(0, 0, 0, 0);
        float scale = 0.0f;  // Slots past the sequence: codes 0 × 0, zeros.
        if (valid) {
          codes = *reinterpret_cast<const uint4*>(row + 16 * c);
          scale = *reinterpret_cast<const float*>(row + latent + 4 * (16 * c / kCacheFp8Group));
        }
        StoreKeyWords4(
            dst + 8 * c,
            make_uint4(DequantFp8Pair(codes.x, scale), DequantFp8Pair(codes.x >> 16, scale),
                       DequantFp8Pair(codes.y, scale), DequantFp8Pair(codes.y >> 16, scale)),
            wide);
        StoreKeyWords4(
            dst + 8 * c + 4,
            make_uint4(DequantFp8Pair(codes.z, scale), DequantFp8Pair(codes.z >> 16, scale),
                       DequantFp8Pair(codes.w, scale), DequantFp8Pair(codes.w >> 16, scale)),
            wide);
      } else {
        const int r = c - code_chunks;  // k_pe values 8r .. 8r + 7, already bf16
        const uint4 v = valid ? *reinterpret_cast<const uint4*>(row + rope_at + 16 * r)
                              : make_uint4(0, 0, 0, 0);
        StoreKeyWords4(dst + latent / 2 + 4 * r, v, wide);
      }
    }
    return;
  }
  const int words = (latent + rope) / 2;
  for (int i = threadIdx.x; i < kMlaBlockSize * words; i += kThreadCount) {
    const int key = i / words;
    const int w = i - key * words;
    uint32_t word = 0u;
    if (src.Valid(key, first_key, seq_len)) {
      const CacheRowView row{src.Row(key), true, latent};
      word = uint32_t{ToBf16Bits(row.At(2 * w))} | (uint32_t{ToBf16Bits(row.At(2 * w + 1))} << 16);
    }
    keys[key * stride + w] = word;
  }
}

// bf16 rows of `width` values.
template <int kThreadCount>
__device__ void LoadBf16KeyBlock(const MlaKeyRows& src, int first_key, int seq_len, int width,
                                 uint32_t* keys, int stride) {
  // 16-byte copies when every block starts 16-byte aligned (cudaMalloc'd pool, rows a
  // multiple of 8 values). Where the rows in shared memory keep that alignment they are
  // asynchronous: each thread issues all of its block's copies (36 at 576 values and 128
  // threads) before waiting once, so a whole block is in flight instead of a load or a
  // few at a time (the kernels were bound by that latency, docs/BENCHMARKS.md).
  if (width % 8 == 0 && src.Aligned16()) {
    const int chunks = width / 8;
    const bool wide_stores = stride % 4 == 0 && (reinterpret_cast<uintptr_t>(keys) & 15) == 0;
    if (wide_stores) {
      for (int i = threadIdx.x; i < kMlaBlockSize * chunks; i += kThreadCount) {
        const int key = i / chunks, c = i - key * chunks;
        CopyAsync16(keys + key * stride + c * 4, reinterpret_cast<const uint4*>(src.Row(key)) + c,
                    src.Valid(key, first_key, seq_len));
      }
      WaitCopiesAsync();
      return;
    }
    for (int i = threadIdx.x; i < kMlaBlockSize * chunks; i += kThreadCount) {
      const int key = i / chunks, c = i - key * chunks;
      const uint4 v = src.Valid(key, first_key, seq_len)
                          ? reinterpret_cast<const uint4*>(src.Row(key))[c]
                          : make_uint4(0, 0, 0, 0);
      StoreKeyWords4(keys + key * stride + c * 4, v, false);
    }
  } else {
    const int words = width / 2;
    for (int i = threadIdx.x; i < kMlaBlockSize * words; i += kThreadCount) {
      const int key = i / words;
      const int w = i - key * words;
      keys[key * stride + w] = src.Valid(key, first_key, seq_len)
                                   ? reinterpret_cast<const uint32_t*>(src.Row(key))[w]
                                   : 0u;
    }
  }
}

// The block's keys [first_key, first_key + 64) of a sequence of seq_len tokens, from
// either cache layout.
template <int kThreadCount>
__device__ void LoadMlaKeyBlock(const MlaDecodeParams& p, const MlaKeyRows& src, int first_key,
                                int seq_len, uint32_t* keys, int stride) {
  if (p.kv_fp8) {
    LoadFp8KeyBlock<kThreadCount>(src, first_key, seq_len, p.kv_lora_rank, p.rope_dim, keys,
                                  stride);
  } else {
    LoadBf16KeyBlock<kThreadCount>(src, first_key, seq_len, p.kv_lora_rank + p.rope_dim, keys,
                                   stride);
  }
}

// What a CTA of either split kernel knows of its tile of query rows (grid x).
struct MlaSplitTile {
  int width;         // L + R, values per cache row
  int rows_total;    // s_q · heads, query rows per sequence
  int row0;          // the tile's first row
  float scale_log2;  // softmax_scale · log2(e): scores in the log2 domain
};

// `rows_per_cta`: the kernel's tile (kMlaDecodeRowsPerCta, or 64 for the 64-row kernel).
__device__ inline MlaSplitTile MlaSplitTileOf(const MlaDecodeParams& p,
                                              int rows_per_cta = kMlaDecodeRowsPerCta) {
  constexpr float kLog2e = 1.4426950408889634f;
  return {p.kv_lora_rank + p.rope_dim, p.q_rows_per_seq * p.num_heads,
          static_cast<int>(blockIdx.x) * rows_per_cta, p.softmax_scale * kLog2e};
}

// Where a finished piece goes: the sequence's final output when one part covers it, else
// the piece's partial slot.
struct MlaPieceOutput {
  bool final_out;
  int64_t base;  // the sequence (final) or the partial slot
};

__device__ inline MlaPieceOutput MlaPieceOutputOf(const MlaDecodeParams& p, int seq, int split) {
  const int first_slot = p.split_offsets[seq];
  const bool final_out = p.split_offsets[seq + 1] - first_slot == 1;
  return {final_out, final_out ? int64_t{seq} : int64_t{first_slot} + split};
}

// The lse of a finished piece's rows row0 .. row0 + kRowsPerCta − 1 (from the running max m,
// log2 domain, and sum l), then m and l reset for the next piece. Every thread calls it.
template <int kRowsPerCta>
__device__ void FinishPieceLse(const MlaDecodeParams& p, const MlaPieceOutput& o, int row0,
                               int rows_total, float* m, float* l) {
  constexpr float kLn2 = 0.6931471805599453f;
  const int r = static_cast<int>(threadIdx.x);
  if (r < kRowsPerCta && row0 + r < rows_total) {
    const float lse = l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
    float* dst = o.final_out ? p.lse : p.partial_lse;
    dst[o.base * rows_total + row0 + r] = lse;
  }
  __syncthreads();  // Everyone has read m and l.
  if (r < kRowsPerCta) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }
}

// One CTA's walk over its part of the plan (grid [head tiles, parts]) for a kernel object
// with members s.m and s.l (the running max and sum of its kMlaDecodeRowsPerCta rows, in
// shared memory), s.keys (shared memory) and stride (words per key row), and steps
// BeginPiece(seq) (after a barrier: nothing reads the previous piece's state), per block
// Scores(first_key, seq_len), Softmax() and Accumulate() (each after a barrier, the first
// after the block's keys are in), and FinishPiece(seq, split).
template <int kThreadCount, typename Kernel>
__device__ void WalkPart(const MlaDecodeParams& p, Kernel& kernel) {
  static_assert(kThreadCount >= kMlaBlockSize, "one thread per key finds the gathered rows");
  __shared__ int64_t gathered_s[kMlaBlockSize];  // a selection's block: its rows' offsets
  if (threadIdx.x < kMlaDecodeRowsPerCta) {
    kernel.s.m[threadIdx.x] = -INFINITY;
    kernel.s.l[threadIdx.x] = 0.0f;
  }
  const MlaDecodePart part = p.parts[blockIdx.y];
  const int64_t row_bytes = CacheRowBytesOf(p.kv_fp8, p.kv_lora_rank, p.rope_dim);
  const int64_t block_bytes = int64_t{kMlaBlockSize} * row_bytes;
  const uint8_t* cache = static_cast<const uint8_t*>(p.kv_cache);
  for (int seq = part.begin_seq; seq <= part.end_seq; ++seq) {
    // With a selection the "sequence" is its valid entries (the plan counted them so).
    const int seq_len = p.selected == nullptr ? p.seq_lens[seq] : min(p.topk, p.seq_lens[seq]);
    const int blocks = (seq_len + kMlaBlockSize - 1) / kMlaBlockSize;
    const MlaDecodePieceRange range = MlaPieceOf(part, seq, blocks);
    const int block_end = min(range.block_end, blocks);  // Guards against a stale plan.
    if (range.block_begin >= block_end) continue;        // Uniform over the CTA.
    __syncthreads();
    kernel.BeginPiece(seq);
    const int32_t* table =
        p.block_table +
        static_cast<int64_t>(p.seq_of == nullptr ? seq : p.seq_of[seq]) * p.max_blocks_per_seq;
    for (int b = range.block_begin; b < block_end; ++b) {
      __syncthreads();  // Keys and p of the previous block are consumed.
      MlaKeyRows src{cache + static_cast<int64_t>(table[b]) * block_bytes, nullptr, row_bytes};
      if (p.selected != nullptr) {
        // Entry k of the selection is a position; its row is found through the block
        // table. A position outside the sequence (a broken selection) is not read.
        if (threadIdx.x < kMlaBlockSize) {
          const int k = b * kMlaBlockSize + static_cast<int>(threadIdx.x);
          int64_t offset = -1;
          if (k < seq_len) {
            const int pos = p.selected[int64_t{seq} * p.topk + k];
            if (pos >= 0 && pos < p.seq_lens[seq]) {
              offset = (int64_t{table[pos / kMlaBlockSize]} * kMlaBlockSize + pos % kMlaBlockSize) *
                       row_bytes;
            }
          }
          gathered_s[threadIdx.x] = offset;
        }
        __syncthreads();
        src = {cache, gathered_s, row_bytes};
      }
      LoadMlaKeyBlock<kThreadCount>(p, src, b * kMlaBlockSize, seq_len, kernel.s.keys,
                                    kernel.stride);
      __syncthreads();
      kernel.Scores(b * kMlaBlockSize, seq_len);
      __syncthreads();
      kernel.Softmax();
      __syncthreads();
      kernel.Accumulate();
    }
    kernel.FinishPiece(seq, range.split);
  }
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_SPLIT_CUH_
