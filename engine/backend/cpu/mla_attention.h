// Paged, absorbed Multi-head Latent Attention on the CPU (decode and chunked prefill).
//
// The cache of one layer holds, per token, the latent c (L = kv_lora_rank values) and the
// rope key k_pe (R values), in blocks of block_size tokens (FlashMLA's layout): in bf16,
// or in DeepSeek's FP8 layout (engine/kv_cache/cache_row.h), which the kernels dequantize
// as they read; everything after the read is the same fp32 arithmetic.
// Queries arrive absorbed: per head q = [q_lat (L) | q_pe (R)] in fp32. For every query
// row and head:
//   score_s = (q_lat·c_s + q_pe·k_pe_s) · softmax_scale      for the keys s it may see
//   out     = Σ_s softmax(score)_s · c_s                     (V is the latent itself)
//   lse     = log Σ_s exp(score_s)                           (natural log)
// Sequence j has n_q_j = cu_seqlens_q[j+1] - cu_seqlens_q[j] query rows; row i sits at
// position q_pos0[j] + i and sees keys [0, q_pos0[j] + i] (causal). That covers decode
// (n_q = 1), speculative verification (a few rows) and chunked prefill (a chunk of rows
// in the middle of a sequence). Keys at or beyond a row's limit are never read, and no
// cache slot at or beyond seq_lens[j] is ever touched.
#ifndef MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_H_
#define MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/cpu/mla_split_plan.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/bf16.h"
#include "engine/common/tensor.h"
#include "engine/kv_cache/cache_layout.h"

namespace mla::cpu {

// All inputs of one attention call for one layer. Plain data; shapes in the comments
// (total_q = cu_seqlens_q[batch]).
struct MlaAttentionParams {
  int64_t batch = 0;               // b: sequences
  int64_t num_heads = 0;           // h_q
  int64_t kv_lora_rank = 0;        // L (512 for DeepSeek)
  int64_t rope_dim = 0;            // R (64 for DeepSeek)
  int64_t block_size = 0;          // tokens per cache block
  int64_t num_blocks = 0;          // blocks in kv_cache; block ids must be below it
  int64_t max_blocks_per_seq = 0;  // row length of block_table
  float softmax_scale = 0.0f;
  CacheDType kv_dtype = CacheDType::kBF16;  // element layout of kv_cache's token rows

  const void* kv_cache = nullptr;         // [num_blocks, block_size, row] (cache_row.h)
  const int32_t* block_table = nullptr;   // [batch, max_blocks_per_seq]
  const int32_t* seq_lens = nullptr;      // [batch] tokens cached (keys valid)
  const int32_t* q_pos0 = nullptr;        // [batch] position of the first query row
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1] query row offsets, [0] = 0
  const float* q = nullptr;               // [total_q, num_heads, L + R]
  float* out = nullptr;                   // [total_q, num_heads, L]
  float* lse = nullptr;                   // [total_q, num_heads]
};

struct MlaAttentionOptions {
  // Cut long sequences' keys over threads and merge the partial results (split-KV). Off
  // gives one item per query-row group; both compute the same function.
  bool split_kv = true;
  // Work items per thread (see MlaSplitOptions).
  int64_t items_per_worker = 2;
  int64_t min_keys_per_split = 512;
};

// Scratch memory reused across calls: the work plan, split-KV partial results and each
// thread's converted key block. Keep one per thread that calls MlaAttention; after the
// first few calls it stops allocating. Not thread-safe.
class MlaAttentionWorkspace {
 public:
  MlaAttentionWorkspace() = default;
  MlaAttentionWorkspace(const MlaAttentionWorkspace&) = delete;
  MlaAttentionWorkspace& operator=(const MlaAttentionWorkspace&) = delete;

  // The plan of the last call (for tests and diagnostics).
  const MlaSplitPlan& plan() const { return plan_; }
  // Bytes held by the reusable buffers (reported as workspace memory).
  size_t bytes() const {
    return partial_out_.size() + partial_lse_.size() + scratch_.size() +
           seqs_.capacity() * sizeof(MlaSeqWork);
  }

 private:
  friend absl::Status MlaAttention(const MlaAttentionParams&, ThreadPool*, MlaAttentionWorkspace*,
                                   const MlaAttentionOptions&);
  static void Reserve(AlignedBuffer& buffer, size_t bytes);

  MlaSplitPlan plan_;
  std::vector<MlaSeqWork> seqs_;
  AlignedBuffer partial_out_;  // [plan.num_partial_rows, num_heads, L]
  AlignedBuffer partial_lse_;  // [plan.num_partial_rows, num_heads]
  AlignedBuffer scratch_;      // per worker slot, see mla_attention.cc
};

// Checks every shape and pointer once, at the boundary: sizes non-negative (heads, L,
// block_size >= 1), pointers present where something is read or written, cu_seqlens_q
// starting at 0 and non-decreasing, q_pos0 + n_q <= seq_len for every sequence, block
// tables long enough for seq_len and every block id used in [0, num_blocks).
// INVALID_ARGUMENT naming the first problem.
absl::Status ValidateMlaAttentionParams(const MlaAttentionParams& params);

// Computes out and lse (see the top of this file). Validates first and touches nothing on
// error. `pool` may be null (single-threaded); `workspace` may be null (allocates).
absl::Status MlaAttention(const MlaAttentionParams& params, ThreadPool* pool,
                          MlaAttentionWorkspace* workspace = nullptr,
                          const MlaAttentionOptions& options = {});

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_H_
