// Small per-token operations of the DeepSeek forward pass (fp32 throughout).
#ifndef MLA_ENGINE_MODEL_LAYER_OPS_H_
#define MLA_ENGINE_MODEL_LAYER_OPS_H_

#include <cstdint>
#include <vector>

#include "engine/model/config.h"

namespace mla {

// out[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps) for n rows of `dim`; out may alias x.
void RmsNorm(const float* x, int64_t x_stride, int64_t n, int dim, const float* w, float eps,
             float* out, int64_t out_stride);

// gate_up holds [n, 2*inter] as gate | up; writes silu(gate) ⊙ up into out [n, inter].
void SiluMul(const float* gate, const float* up, int64_t n, int64_t inter, int64_t in_stride,
             float* out);

// The experts chosen for one token and their combine weights.
struct ExpertChoice {
  std::vector<int> experts;   // num_experts_per_tok ids
  std::vector<float> weights;
};

// Routes one token from its router logits (fp32) following the config's scoring_func
// and topk_method; `bias` is e_score_correction_bias (noaux_tc) or empty.
ExpertChoice RouteToken(const float* logits, const ModelConfig& config,
                        const std::vector<float>& bias);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_LAYER_OPS_H_
