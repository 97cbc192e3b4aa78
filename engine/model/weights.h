// All weights of a DeepSeek-V2/V3 checkpoint, in the form the forward pass reads.
// Linear weights are Matrix [out, in]; norms and biases are fp32 vectors.
#ifndef MLA_ENGINE_MODEL_WEIGHTS_H_
#define MLA_ENGINE_MODEL_WEIGHTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/common/tensor.h"
#include "engine/model/config.h"

namespace mla {

struct MlpWeights {  // down(silu(gate(x)) * up(x))
  Matrix gate;       // [inter, hidden]
  Matrix up;         // [inter, hidden]
  Matrix down;       // [hidden, inter]
};

struct MoeWeights {
  Matrix gate;                         // router [n_routed_experts, hidden]
  std::vector<float> score_bias;       // e_score_correction_bias [n_routed_experts] (V3), else empty
  std::vector<MlpWeights> experts;     // n_routed_experts, each [moe_inter, hidden]
  MlpWeights shared;                   // [n_shared * moe_inter, hidden]; empty when n_shared == 0
};

// DeepSeek-V3.2's lightning indexer (transformers' DeepseekV32Indexer), per layer.
struct IndexerWeights {
  Matrix wq_b;                     // [index_n_heads*index_head_dim, q_lora_rank]
  Matrix wk;                       // [index_head_dim, hidden]
  std::vector<float> k_norm;       // LayerNorm weight [index_head_dim]
  std::vector<float> k_norm_bias;  // LayerNorm bias [index_head_dim]
  Matrix weights_proj;             // [index_n_heads, hidden]
};

struct AttentionWeights {
  Matrix q_proj;                      // [H*(nope+rope), hidden] when q_lora_rank == 0
  Matrix q_a_proj;                    // [q_lora_rank, hidden] when q_lora_rank > 0
  std::vector<float> q_a_layernorm;   // [q_lora_rank]
  Matrix q_b_proj;                    // [H*(nope+rope), q_lora_rank]
  Matrix kv_a_proj_with_mqa;          // [kv_lora_rank + rope, hidden]
  std::vector<float> kv_a_layernorm;  // [kv_lora_rank]
  Matrix kv_b_proj;                   // [H*(nope+v), kv_lora_rank]
  Matrix o_proj;                      // [hidden, H*v]
  IndexerWeights indexer;             // V3.2 only (config.has_indexer()); else empty
};

struct LayerWeights {
  std::vector<float> input_layernorm;           // [hidden]
  std::vector<float> post_attention_layernorm;  // [hidden]
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct ModelWeights {
  Matrix embed_tokens;      // [vocab, hidden]
  std::vector<LayerWeights> layers;  // num_hidden_layers (V3's MTP layer is not loaded)
  std::vector<float> norm;  // [hidden]
  Matrix lm_head;           // [vocab, hidden]
  DType dtype = DType::kBF16;  // Dtype the linear weights are served in.
  int64_t bytes = 0;           // Total bytes of weight storage.
};

// Loads every tensor the forward pass needs from the Hugging Face model directory
// (model.safetensors, or model.safetensors.index.json and its shards), checking each
// name, dtype and shape against `config`. Errors name the file and the tensor.
absl::StatusOr<ModelWeights> LoadModelWeights(const std::string& model_dir,
                                              const ModelConfig& config);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_WEIGHTS_H_
