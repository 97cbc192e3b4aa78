// The published geometry of DeepSeek-V2, V2-Lite and V3 (config.json values) as
// ModelConfig, for tests of the CUDA backend's planning and routing.
#ifndef MLA_TESTS_ENGINE_CUDA_HOST_DEEPSEEK_SHAPES_H_
#define MLA_TESTS_ENGINE_CUDA_HOST_DEEPSEEK_SHAPES_H_

#include "engine/model/config.h"

namespace mla::testing {

inline ModelConfig V2LiteShape() {
  ModelConfig c;
  c.hidden_size = 2048;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.q_lora_rank = 0;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.first_k_dense_replace = 1;
  c.routed_scaling_factor = 1.0;
  c.topk_method = TopkMethod::kGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.vocab_size = 102400;
  return c;
}

// DeepSeek-V2 (236B): group-limited greedy routing over 160 experts in 8 groups.
inline ModelConfig V2Shape() {
  ModelConfig c = V2LiteShape();
  c.hidden_size = 5120;
  c.num_hidden_layers = 60;
  c.num_attention_heads = 128;
  c.q_lora_rank = 1536;
  c.intermediate_size = 12288;
  c.moe_intermediate_size = 1536;
  c.n_routed_experts = 160;
  c.num_experts_per_tok = 6;
  c.topk_method = TopkMethod::kGroupLimitedGreedy;
  c.n_group = 8;
  c.topk_group = 3;
  c.routed_scaling_factor = 16.0;
  return c;
}

inline ModelConfig V3Shape() {
  ModelConfig c = V2LiteShape();
  c.hidden_size = 7168;
  c.num_hidden_layers = 61;
  c.num_attention_heads = 128;
  c.q_lora_rank = 1536;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.first_k_dense_replace = 3;
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.n_group = 8;
  c.topk_group = 4;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.vocab_size = 129280;
  c.fp8_weights = true;
  return c;
}

}  // namespace mla::testing

#endif  // MLA_TESTS_ENGINE_CUDA_HOST_DEEPSEEK_SHAPES_H_
