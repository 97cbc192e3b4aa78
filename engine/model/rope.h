// Decoupled RoPE with YaRN scaling, as DeepSeek-V2/V3 apply it to q_pe and k_pe.
#ifndef MLA_ENGINE_MODEL_ROPE_H_
#define MLA_ENGINE_MODEL_ROPE_H_

#include <cstdint>
#include <vector>

#include "engine/model/config.h"

namespace mla {

class Rope {
 public:
  explicit Rope(const ModelConfig& config);

  int dim() const { return dim_; }
  // YaRN's correction range (dimension-pair indices); 0/0 without YaRN.
  double low() const { return low_; }
  double high() const { return high_; }
  // The multiplier applied to cos/sin: m(factor, mscale) / m(factor, mscale_all_dim).
  float attention_factor() const { return attention_factor_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

  // Fills cos/sin [dim/2] for one position (already scaled by attention_factor); the
  // backend rotates interleaved pairs by them (Backend::Rope).
  void Angles(int64_t pos, float* cos_out, float* sin_out) const;

 private:
  int dim_;
  double low_ = 0.0;
  double high_ = 0.0;
  float attention_factor_ = 1.0f;
  std::vector<float> inv_freq_;  // [dim/2]
};

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_ROPE_H_
