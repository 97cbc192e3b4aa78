// The model geometry read from a Hugging Face config.json (DeepSeek-V2, V2-Lite, V3).
#ifndef MLA_ENGINE_MODEL_CONFIG_H_
#define MLA_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace mla {

enum class ScoringFunc { kSoftmax, kSigmoid };
enum class TopkMethod { kGreedy, kGroupLimitedGreedy, kNoauxTc };

struct RopeScaling {
  bool yarn = false;  // false: plain RoPE, the fields below are unused.
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string architecture;  // architectures[0]
  std::string model_type;
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int q_lora_rank = 0;  // 0: plain q_proj (config.json null)
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  int intermediate_size = 0;
  int moe_intermediate_size = 0;
  int n_routed_experts = 0;  // 0: every layer is dense
  int n_shared_experts = 0;
  int num_experts_per_tok = 0;
  int first_k_dense_replace = 0;
  int moe_layer_freq = 1;
  double routed_scaling_factor = 1.0;
  TopkMethod topk_method = TopkMethod::kGreedy;
  int n_group = 1;
  int topk_group = 1;
  bool norm_topk_prob = false;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  int vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  std::string torch_dtype;
  bool fp8_weights = false;      // quantization_config.quant_method == "fp8"
  int fp8_block_rows = 128;      // weight_block_size[0]
  int fp8_block_cols = 128;      // weight_block_size[1]
  bool tie_word_embeddings = false;
  // DeepSeek-V3.2 sparse attention (model_type deepseek_v32): a lightning indexer of
  // index_n_heads heads of index_head_dim scores every cached token and each query attends
  // to its index_topk best. index_n_heads == 0: dense MLA (V2, V3).
  int index_n_heads = 0;
  int index_head_dim = 0;
  int index_topk = 0;

  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Values cached per token and layer: the latent plus the shared RoPE key.
  int latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }
  bool has_indexer() const { return index_n_heads > 0; }
  bool IsMoeLayer(int layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace &&
           layer % moe_layer_freq == 0;
  }
};

// Parses config.json text. Errors name the field and, when given, the file.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view file_name = "config.json");
// Reads and parses `<model_dir>/config.json`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// softmax_scale = (nope + rope)^-0.5 * m^2 with the YaRN mscale correction.
double SoftmaxScale(const ModelConfig& config);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_CONFIG_H_
