// DeepSeek-V3.2's lightning indexer on the CPU: per query row, a score for every key the
// row may see, then the top-k positions that sparse attention (sparse_mla_attention.h)
// restricts MLA to.
//
// The indexer keeps one small key per token (index_head_dim values, bf16 or FP8 with a
// scale per key: engine/kv_cache/index_key_row.h) in its own paged array beside the
// latent, same block ids and slots.
// For query row t of sequence j (position q_pos0[j] + i, causal: keys 0..position):
//   I[t, s] = Σ_h (weight_scale · w[t, h]) · relu(scale · q[t, h]·k_s)
// in fp32, as transformers' DeepseekV32Indexer computes it with bf16 keys (its Hadamard
// rotation and fp8 quantization are left out there too: the rotation preserves dot
// products). FP8 keys hold codes c and a scale σ per key; the row then scores
//   I[t, s] = σ_s · Σ_h (weight_scale · w[t, h]) · relu(scale · q[t, h]·c_s)
// (the dequantized keys' scores, as σ_s > 0). The row keeps the min(topk, position + 1)
// best keys; ties go to the lower position.
#ifndef MLA_ENGINE_BACKEND_CPU_INDEXER_H_
#define MLA_ENGINE_BACKEND_CPU_INDEXER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/bf16.h"
#include "engine/kv_cache/cache_layout.h"

namespace mla::cpu {

struct IndexerParams {
  int64_t batch = 0;               // sequences
  int64_t num_heads = 0;           // index_n_heads
  int64_t head_dim = 0;            // index_head_dim
  int64_t block_size = 0;          // tokens per cache block
  int64_t num_blocks = 0;          // blocks in key_cache; block ids must be below it
  int64_t max_blocks_per_seq = 0;  // row length of block_table
  int64_t topk = 0;                // index_topk (>= 1)
  float scale = 0.0f;              // index_head_dim^-0.5
  float weight_scale = 0.0f;       // index_n_heads^-0.5

  // [num_blocks] block regions of block_size keys in key_dtype's layout (index_key_row.h).
  const void* key_cache = nullptr;
  const int32_t* block_table = nullptr;   // [batch, max_blocks_per_seq]
  const int32_t* seq_lens = nullptr;      // [batch] keys valid
  const int32_t* q_pos0 = nullptr;        // [batch] position of the first query row
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1] query row offsets, [0] = 0
  const float* q = nullptr;               // [total_q, num_heads, head_dim]
  const float* weights = nullptr;         // [total_q, num_heads]
  int32_t* selected = nullptr;            // [total_q, topk]: positions ascending, then -1
  CacheDType key_dtype = CacheDType::kBF16;
};

// Checks shapes, pointers, row offsets, causal limits and block ids (INVALID_ARGUMENT
// naming the first problem).
absl::Status ValidateIndexerParams(const IndexerParams& params);

// Fills params.selected. Validates first and writes nothing on error. `pool` may be null.
absl::Status IndexerTopK(const IndexerParams& params, ThreadPool* pool);

// The scores I[row, 0..visible) of one query row of sequence j, in fp32 as IndexerTopK
// computes them (tests and telemetry).
std::vector<float> IndexerRowScores(const IndexerParams& params, int64_t seq, int64_t row);

// The plain definition in double precision, for tests.
std::vector<double> IndexerRowScoresReference(const IndexerParams& params, int64_t seq,
                                              int64_t row);

// The positions of the min(k, scores.size()) largest scores, ascending; ties go to the
// lower position. out must hold k entries; the ones past the selection get -1.
void SelectTopK(std::span<const float> scores, int64_t k, int32_t* out);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_INDEXER_H_
