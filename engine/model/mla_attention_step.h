// Runs the paged absorbed MLA attention of one layer for every chunk of a forward step:
// gathers the chunks' block tables and positions into the kernel's batch parameters.
#ifndef MLA_ENGINE_MODEL_MLA_ATTENTION_STEP_H_
#define MLA_ENGINE_MODEL_MLA_ATTENTION_STEP_H_

#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/latent_cache.h"

namespace mla {

// The batch description shared by every layer of one step (block tables do not change
// between layers).
struct AttentionBatch {
  std::vector<int32_t> block_table;  // [batch, max_blocks]
  std::vector<int32_t> seq_lens, q_pos0, cu_seqlens_q;
  int64_t batch = 0;
  int64_t max_blocks = 0;
};

// `chunks` are (start_pos, n_tokens, table) per sequence; empty chunks are skipped.
struct ChunkRef {
  int64_t start_pos;
  int64_t num_tokens;
  const BlockTable* table;
};
AttentionBatch MakeAttentionBatch(std::span<const ChunkRef> chunks);

// q_abs: [T, heads, L + R] absorbed queries of all chunks' tokens in order;
// o_lat: [T, heads, L] output latents.
absl::Status RunMlaAttention(const AttentionBatch& batch, const LatentCache& cache, int layer,
                             int heads, float scale, const float* q_abs, float* o_lat,
                             std::vector<float>& lse, cpu::ThreadPool* pool,
                             cpu::MlaAttentionWorkspace* workspace);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_MLA_ATTENTION_STEP_H_
