#include "engine/runner/memory_plan.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/backend.h"
#include "engine/kv_cache/cache_row.h"

namespace mla {
namespace {

std::string GiB(int64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Sums a model's tensors: linear weights (which fp8 checkpoints quantize) apart from the
// rest (embeddings, norms, router), which stays bf16.
class WeightTally {
 public:
  WeightTally(const ModelConfig& c, WeightFormat format) : config_(c), format_(format) {}

  void Linear(int64_t out_features, int64_t in_features, int64_t copies = 1) {
    params_ += copies * out_features * in_features;
    if (format_ == WeightFormat::kFp8) {
      const int64_t scales = CeilDiv(out_features, config_.fp8_block_rows) *
                             CeilDiv(in_features, config_.fp8_block_cols);
      bytes_ += copies * (out_features * in_features + scales * 4);
    } else {
      bytes_ += copies * out_features * in_features * 2;
    }
  }
  void Other(int64_t count) {
    params_ += count;
    bytes_ += count * 2;
  }
  int64_t params() const { return params_; }
  int64_t bytes() const { return bytes_; }

 private:
  const ModelConfig& config_;
  WeightFormat format_;
  int64_t params_ = 0;
  int64_t bytes_ = 0;
};

void TallyLayer(const ModelConfig& c, int layer, WeightTally& t) {
  const int64_t hidden = c.hidden_size;
  const int64_t heads = c.num_attention_heads;
  t.Other(2 * hidden);  // input and post-attention RMSNorm
  if (c.q_lora_rank > 0) {
    t.Linear(c.q_lora_rank, hidden);
    t.Other(c.q_lora_rank);
    t.Linear(heads * c.qk_head_dim(), c.q_lora_rank);
  } else {
    t.Linear(heads * c.qk_head_dim(), hidden);
  }
  t.Linear(c.kv_lora_rank + c.qk_rope_head_dim, hidden);
  t.Other(c.kv_lora_rank);
  t.Linear(heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
  t.Linear(hidden, heads * c.v_head_dim);
  if (c.has_indexer()) {  // V3.2: wq_b, wk, k_norm (weight and bias), weights_proj.
    t.Linear(int64_t{c.index_n_heads} * c.index_head_dim, c.q_lora_rank);
    t.Linear(c.index_head_dim, hidden);
    t.Other(2 * int64_t{c.index_head_dim});
    t.Other(int64_t{c.index_n_heads} * hidden);
  }
  if (!c.IsMoeLayer(layer)) {
    t.Linear(c.intermediate_size, hidden, 3);  // gate, up, down (same element count)
    return;
  }
  t.Other(int64_t{c.n_routed_experts} * hidden);  // router
  if (c.topk_method == TopkMethod::kNoauxTc) t.Other(c.n_routed_experts);
  t.Linear(c.moe_intermediate_size, hidden, 3 * int64_t{c.n_routed_experts + c.n_shared_experts});
}

WeightTally Tally(const ModelConfig& c, WeightFormat format) {
  WeightTally t(c, format);
  const int64_t embed = int64_t{c.vocab_size} * c.hidden_size;
  t.Other(c.tie_word_embeddings ? embed : 2 * embed);
  t.Other(c.hidden_size);  // final norm
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) TallyLayer(c, layer, t);
  return t;
}

}  // namespace

absl::StatusOr<MemoryPlan> PlanDeviceMemory(const MemoryPlanInput& in) {
  if (in.total_bytes <= 0 || in.free_bytes < 0 || in.free_bytes > in.total_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("device memory: need 0 <= free (", in.free_bytes,
                                                   ") <= total (", in.total_bytes, ")"));
  }
  if (!(in.memory_fraction > 0.0 && in.memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory fraction must be in (0, 1], got ", in.memory_fraction));
  }
  if (in.weight_bytes < 0 || in.workspace_bytes < 0 || in.bytes_per_block <= 0 ||
      in.min_blocks < 0) {
    return absl::InvalidArgumentError(
        "need weight and workspace bytes >= 0, bytes_per_block > 0, min_blocks >= 0");
  }
  const int64_t allowed =
      static_cast<int64_t>(std::floor(in.memory_fraction * static_cast<double>(in.total_bytes)));
  const int64_t in_use = in.total_bytes - in.free_bytes;
  const std::string terms =
      absl::StrCat("fraction ", in.memory_fraction, " of ", GiB(in.total_bytes), " total allows ",
                   GiB(allowed), "; in use ", GiB(in_use), ", weights ", GiB(in.weight_bytes));
  if (in_use + in.weight_bytes > allowed) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model weights do not fit on the device: ", terms));
  }
  const int64_t budget = allowed - in_use - in.weight_bytes - in.workspace_bytes;
  if (budget < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "weights and workspace do not fit: ", terms, ", workspace ", GiB(in.workspace_bytes),
        " (lower max_batch_tokens or raise the memory fraction)"));
  }
  MemoryPlan plan;
  plan.budget_bytes = budget;
  plan.num_blocks = budget / in.bytes_per_block;
  plan.cache_bytes = plan.num_blocks * in.bytes_per_block;
  plan.unused_bytes = budget - plan.cache_bytes;
  if (plan.num_blocks < in.min_blocks) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the latent cache gets ", plan.num_blocks, " blocks of ", in.bytes_per_block,
                     " bytes, fewer than the ", in.min_blocks, " needed: ", terms, ", workspace ",
                     GiB(in.workspace_bytes), ", leaving ", GiB(budget)));
  }
  return plan;
}

int64_t CountModelParams(const ModelConfig& config) {
  return Tally(config, WeightFormat::kBf16).params();
}

int64_t EstimateWeightBytes(const ModelConfig& config, WeightFormat format) {
  return Tally(config, format).bytes();
}

int64_t LatentCacheBlockBytes(const ModelConfig& config, int block_size, CacheDType dtype) {
  return int64_t{config.num_hidden_layers} * block_size *
         CacheRowBytes(dtype, config.kv_lora_rank, config.qk_rope_head_dim);
}

absl::StatusOr<int64_t> EstimateWorkspaceBytes(const ModelConfig& c, const WorkspaceShape& s) {
  if (s.max_batch_tokens < 1 || s.max_batch_seqs < 1 || s.num_parts < 1) {
    return absl::InvalidArgumentError(
        "workspace: max_batch_tokens, max_batch_seqs and num_parts must be >= 1");
  }
  const int64_t heads = c.num_attention_heads;
  // bf16 values per token: hidden states (input, normed, attention and MLP outputs),
  // the query path, the compressed KV, absorbed queries and the attention output.
  int64_t per_token = 4 * int64_t{c.hidden_size} + c.q_lora_rank + heads * c.qk_head_dim() +
                      c.latent_dim() + heads * c.latent_dim() + heads * c.kv_lora_rank +
                      heads * c.v_head_dim;
  per_token += 3 * int64_t{c.intermediate_size};  // dense gate | up, activation
  if (c.n_routed_experts > 0) {
    const int64_t k = c.num_experts_per_tok;
    // Permuted expert rows (input, gate | up, activation, output), shared experts.
    per_token += k * (2 * int64_t{c.hidden_size} + 3 * int64_t{c.moe_intermediate_size});
    per_token += 3 * int64_t{c.n_shared_experts} * c.moe_intermediate_size;
    per_token += 2 * int64_t{c.n_routed_experts} + 4 * k;  // fp32 logits, int32 ids, fp32 weights
  }
  if (c.has_indexer()) {
    // V3.2's indexer: keys, queries, head weights, and the selection (int32: two units).
    per_token += int64_t{c.index_n_heads} * c.index_head_dim + c.index_n_heads + c.index_head_dim +
                 2 * int64_t{c.index_topk};
  }
  int64_t bytes = 2 * per_token * s.max_batch_tokens;
  bytes += 4 * int64_t{c.hidden_size} * s.max_batch_tokens;  // fp32 residual stream
  bytes += 4 * int64_t{c.vocab_size} * s.max_batch_seqs;     // fp32 logits
  // At most batch + num_parts − 1 partial slots (host/mla_decode_plan.h), each one output
  // row of kv_lora_rank floats and one LSE per head.
  bytes += 4 * (s.max_batch_seqs + s.num_parts) * heads * (c.kv_lora_rank + 1);
  // Decompressed prefill: the up-projected keys of one chunk, and the fp32 softmax state
  // of every row ((m, l) and a v-wide accumulator per head).
  bytes += kMaxDecompressedChunkBytes + 4 * s.max_batch_tokens * heads * (c.v_head_dim + 2);
  if (c.has_indexer()) {
    bytes += kMaxIndexerScoreBytes;   // The indexer's scores and top-k candidates.
    bytes += kMaxSparsePrefillBytes;  // A group of sparse prefill rows on the split kernels.
  }
  return bytes;
}

}  // namespace mla
