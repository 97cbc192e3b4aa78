// Per-instruction-set inner loops of MlaAttention (mla_attention.h). Internal to the CPU
// backend. Two ways through a block of keys:
//  - converted (any number of query vectors): the driver in mla_attention.cc converts
//    the block to fp32 once (convert_keys) and hands it, a few query vectors (heads ×
//    rows) at a time, to attend_tile, so that every key is loaded and converted once
//    per work item and then reused by all heads. Compute-bound with many heads.
//  - direct (few query vectors, optional, bf16 cache only): attend_rows reads the bf16
//    cache rows themselves and converts in registers. With one head the converted copy
//    would cost more than the arithmetic; this way the loop keeps up with memory.
// Cache rows arrive as byte addresses in the cache's element layout (cache_row.h); an FP8
// cache is dequantized by convert_keys_fp8 into the same fp32 block, so attend_tile does
// not know which dtype the cache holds.
#ifndef MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_KERNELS_H_
#define MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_KERNELS_H_

#include <cstdint>

#include "engine/common/bf16.h"

namespace mla::cpu::internal {

// Keys converted per step. 48 × 576 × 4 B = 108 KiB stays in L2 while every tile of
// query vectors streams over it.
inline constexpr int kMlaKeyBlock = 48;
// Query vectors (head, row pairs) per attend_tile call (the AVX2 variant works on register
// tiles of 4 inside it).
inline constexpr int kMlaTileVectors = 16;
// Items with at most this many query vectors take the direct path when available.
inline constexpr int kMlaDirectVectors = 3;

struct MlaTileArgs {
  const float* q = nullptr;      // [nqv, width], rows `width` apart
  int nqv = 0;                   // 1 .. kMlaTileVectors
  const float* block = nullptr;  // converted path: the key block, in the variant's layout
  // [rows_ahead] cache rows (row_bytes each, in the cache's layout): the block's nk, then
  // those of the next block of the item (only to prefetch). The direct path reads them
  // as bf16 rows of `width` values.
  const uint8_t* const* rows = nullptr;
  int rows_ahead = 0;
  int row_bytes = 0;
  // Converted path: lines [prefetch_begin, prefetch_end) of rows[nk ..] (each row counted
  // as ceil(row_bytes / 64) lines) to prefetch while computing, spread over the work so
  // that no burst of prefetches fills the miss buffers.
  int64_t prefetch_begin = 0;
  int64_t prefetch_end = 0;
  float* q_scratch = nullptr;   // direct path: scratch [kMlaDirectVectors, width]
  int nk = 0;                   // keys in the block, 1 .. kMlaKeyBlock
  const int* nvalid = nullptr;  // [nqv] query vector t sees keys [0, nvalid[t])
  int latent = 0;               // L: the value width (first L columns of each key)
  int width = 0;                // L + R
  float scale = 0.0f;
  float* m = nullptr;       // [nqv] running max of the scores seen so far (-inf at first)
  float* l = nullptr;       // [nqv] running Σ exp(score - m)
  float* o = nullptr;       // [nqv, L] running Σ exp(score - m)·c, rows L apart
  float* scores = nullptr;  // scratch [kMlaTileVectors, kMlaKeyBlock]
};

struct MlaKernelOps {
  // Floats (a multiple of 16) of the converted block that convert_keys writes.
  int64_t (*block_floats)(int width, int latent);
  // Converts the bf16 cache rows rows[0 .. nk) (each `width` values, the first `latent`
  // of them the latent c) to fp32 in `block` (64-byte aligned), laid out for attend_tile.
  void (*convert_keys)(const uint8_t* const* rows, int nk, int width, int latent, float* block);
  // The same for FP8 rows (cache_row.h): the values written are exactly DecodeCacheRow's,
  // code · scale in fp32.
  void (*convert_keys_fp8)(const uint8_t* const* rows, int nk, int width, int latent, float* block);
  // One online-softmax step of args.nqv query vectors over one converted key block.
  void (*attend_tile)(const MlaTileArgs& args);
  // The same step for args.nqv <= kMlaDirectVectors query vectors straight from
  // args.rows, when latent and width are multiples of 16. May be null.
  void (*attend_rows)(const MlaTileArgs& args);
};

const MlaKernelOps& MlaKernelOpsScalar();
// Null on targets without the AVX2 variant.
const MlaKernelOps* MlaKernelOpsAvx2();
// The opt-in bf16 level's variant (cpu_features.h, kAvx512Bf16): rounds the queries, the
// softmax weights and dequantized FP8 keys to bf16. Null on targets without it and for
// rows wider than it handles. Callers check the CPU.
const MlaKernelOps* MlaKernelOpsAvx512Bf16(int width);

}  // namespace mla::cpu::internal

#endif  // MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_KERNELS_H_
