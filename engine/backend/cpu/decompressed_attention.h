// Decompressed (ordinary multi-head) attention over the paged latent cache, for long
// prefill chunks on the CPU.
//
// The absorbed kernel (mla_attention.h) spends 2·(L + R) + 2·L FLOP per head, query row
// and key (2,176 for DeepSeek's L = 512, R = 64) because it scores and sums in the latent
// space. A chunk of m query rows may instead up-project every key it sees once through
// kv_b_proj, per head h:
//   k_nope_s = W_UK[h] · c_s   (nope values)      v_s = W_UV[h] · c_s   (v values)
// and run plain causal attention with q = [q_nope | q_pe] against k = [k_nope_s | k_pe_s]
// (k_pe shared by all heads): 2·(nope + R) + 2·v FLOP per head, row and key (640 for
// DeepSeek) plus 2·L·(nope + v) per head and key for the up-projection, shared by the
// chunk's m rows. For every query row and head:
//   score_s = (q_nope·k_nope_s + q_pe·k_pe_s) · softmax_scale   for the keys s it may see
//   out     = Σ_s softmax(score)_s · v_s                        (v space: straight to o_proj)
// which is the absorbed kernel's output multiplied by W_UV[h]. Row i of sequence j sits
// at position q_pos0[j] + i and sees keys [0, q_pos0[j] + i] (causal). Cache rows are read
// through DecodeCacheRow, so any cache dtype works; slots at or beyond seq_lens[j] are
// never touched.
//
// The work runs key block by key block (kDecompressedKeyBlock keys): decode the block's
// latents once, then per head (heads spread over the pool's threads) up-project them,
// score every row of the chunk, update an online softmax and accumulate the values. All
// four matrix products are the backend's Gemm (single-threaded inside a head), so they
// use its instruction-set levels (cpu_features.h); at the inexact bf16 level the scores
// and the weighted sum run on bf16 copies of the block's keys and values as well.
#ifndef MLA_ENGINE_BACKEND_CPU_DECOMPRESSED_ATTENTION_H_
#define MLA_ENGINE_BACKEND_CPU_DECOMPRESSED_ATTENTION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/tensor.h"

namespace mla::cpu {

// Keys up-projected per step: per head the block's k_nope and vᵀ (256 · (192 + 128) · 4 B
// = 320 KiB for DeepSeek) stay in L2 while the chunk's rows stream over them, and one
// block's up-projection is a GEMM with enough rows to run at the packed kernel's speed.
inline constexpr int64_t kDecompressedKeyBlock = 256;

// All inputs of one call for one layer. `paged` describes the cache, the step's sequences
// and the block tables exactly as for MlaAttention (its q, out and lse are not used).
struct DecompressedAttentionParams {
  MlaAttentionParams paged;
  int64_t nope_dim = 0;  // qk_nope_head_dim (128 for DeepSeek)
  int64_t v_dim = 0;     // v_head_dim (128 for DeepSeek)
  // kv_b_proj: [num_heads · (nope + v), L], bf16 or f32; per head the nope rows of W_UK,
  // then the v rows of W_UV (Hugging Face's layout).
  MatrixView kv_b;
  // [batch] sequences to compute (nonzero); the rows of the others are not written. Null:
  // every sequence.
  const uint8_t* take = nullptr;
  const float* q = nullptr;  // [total_q, num_heads, nope + R], RoPE applied to q_pe
  float* out = nullptr;      // [total_q, num_heads, v]
};

// The shape and pointer checks of ValidateMlaAttentionParams on `paged`, plus kv_b's
// shape and dtype and nope, v >= 1. INVALID_ARGUMENT naming the first problem.
absl::Status ValidateDecompressedAttentionParams(const DecompressedAttentionParams& params);

// Computes out (see the top of this file). Validates first and touches nothing on error.
// `pool` may be null (single-threaded).
absl::Status DecompressedAttention(const DecompressedAttentionParams& params, ThreadPool* pool);

// The plain definition: per row, head and visible key, k_nope, v and the softmax in
// double precision, no blocking. Slow; for tests.
absl::Status DecompressedAttentionReference(const DecompressedAttentionParams& params);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_DECOMPRESSED_ATTENTION_H_
