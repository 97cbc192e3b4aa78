#include "server/proto_convert.h"

namespace mla {

void FillModelInfo(const EngineInfo& info, v1::ModelInfo* out) {
  const ModelConfig& c = info.config;
  out->set_model_name(info.model_name);
  out->set_architecture(c.architecture);
  out->set_model_type(c.model_type);
  out->set_hidden_size(c.hidden_size);
  out->set_num_hidden_layers(c.num_hidden_layers);
  out->set_num_attention_heads(c.num_attention_heads);
  out->set_q_lora_rank(c.q_lora_rank);
  out->set_kv_lora_rank(c.kv_lora_rank);
  out->set_qk_nope_head_dim(c.qk_nope_head_dim);
  out->set_qk_rope_head_dim(c.qk_rope_head_dim);
  out->set_v_head_dim(c.v_head_dim);
  out->set_vocab_size(c.vocab_size);
  out->set_max_context(static_cast<int32_t>(info.max_context));
  out->set_weight_dtype(info.weight_dtype);
  out->set_device(info.device);
  out->set_kv_block_size(info.kv_block_size);
  out->set_kv_num_blocks(info.kv_num_blocks);
  out->set_kv_cache_dtype(info.cache_dtype);
  out->set_kv_bytes_per_token(info.kv_bytes_per_token);
  out->set_mha_bytes_per_token(info.mha_bytes_per_token);
  out->set_n_routed_experts(c.n_routed_experts);
  out->set_num_experts_per_tok(c.num_experts_per_tok);
  out->set_n_shared_experts(c.n_shared_experts);
}

}  // namespace mla
