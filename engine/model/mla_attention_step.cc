#include "engine/model/mla_attention_step.h"

#include <algorithm>

namespace mla {

AttentionBatch MakeAttentionBatch(std::span<const ChunkRef> chunks) {
  AttentionBatch b;
  for (const ChunkRef& c : chunks) {
    if (c.num_tokens > 0) b.max_blocks = std::max(b.max_blocks, c.table->num_blocks());
  }
  b.cu_seqlens_q.push_back(0);
  for (const ChunkRef& c : chunks) {
    if (c.num_tokens == 0) continue;
    const std::vector<int32_t>& ids = c.table->block_ids();
    b.block_table.insert(b.block_table.end(), ids.begin(), ids.end());
    b.block_table.resize((b.batch + 1) * b.max_blocks, 0);
    b.seq_lens.push_back(static_cast<int32_t>(c.start_pos + c.num_tokens));
    b.q_pos0.push_back(static_cast<int32_t>(c.start_pos));
    b.cu_seqlens_q.push_back(b.cu_seqlens_q.back() + static_cast<int32_t>(c.num_tokens));
    ++b.batch;
  }
  return b;
}

absl::Status RunMlaAttention(const AttentionBatch& batch, const LatentCache& cache, int layer,
                             int heads, float scale, const float* q_abs, float* o_lat,
                             std::vector<float>& lse, cpu::ThreadPool* pool,
                             cpu::MlaAttentionWorkspace* workspace) {
  const CacheLayout& layout = cache.layout();
  lse.resize(static_cast<size_t>(batch.cu_seqlens_q.back()) * heads);
  cpu::MlaAttentionParams p;
  p.batch = batch.batch;
  p.num_heads = heads;
  p.kv_lora_rank = layout.latent_dim();
  p.rope_dim = layout.rope_dim();
  p.block_size = layout.block_size();
  p.num_blocks = cache.num_blocks();
  p.max_blocks_per_seq = batch.max_blocks;
  p.softmax_scale = scale;
  p.kv_cache = cache.LayerData(layer);
  p.block_table = batch.block_table.data();
  p.seq_lens = batch.seq_lens.data();
  p.q_pos0 = batch.q_pos0.data();
  p.cu_seqlens_q = batch.cu_seqlens_q.data();
  p.q = q_abs;
  p.out = o_lat;
  p.lse = lse.data();
  return cpu::MlaAttention(p, pool, workspace);
}

}  // namespace mla
