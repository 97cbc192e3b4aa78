#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

constexpr double kPi = 3.14159265358979323846;

double YarnMscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

// Dimension index whose wavelength makes `rotations` turns over the original context.
double CorrectionDim(double rotations, int dim, double base, double original_len) {
  return dim * std::log(original_len / (rotations * 2.0 * kPi)) / (2.0 * std::log(base));
}

}  // namespace

Rope::Rope(const ModelConfig& config) : dim_(config.qk_rope_head_dim) {
  const int half = dim_ / 2;
  const double base = config.rope_theta;
  inv_freq_.resize(half);
  // The reference computes base^(2i/dim) in float32; we keep float32 so that angles at
  // large positions round the same way.
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim_);
    inv_freq_[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  const RopeScaling& y = config.rope_scaling;
  if (!y.yarn) return;
  const double l0 = static_cast<double>(y.original_max_position_embeddings);
  low_ = std::max(std::floor(CorrectionDim(y.beta_fast, dim_, base, l0)), 0.0);
  high_ = std::min(std::ceil(CorrectionDim(y.beta_slow, dim_, base, l0)),
                   static_cast<double>(dim_ - 1));
  const double span = (low_ == high_) ? 0.001 : high_ - low_;
  for (int i = 0; i < half; ++i) {
    const double ramp = std::clamp((i - low_) / span, 0.0, 1.0);
    const float extra = inv_freq_[i];
    const float inter = extra / static_cast<float>(y.factor);
    // Low-frequency pairs (ramp 1) are interpolated, high-frequency ones kept.
    inv_freq_[i] = static_cast<float>(inter * ramp + extra * (1.0 - ramp));
  }
  attention_factor_ = static_cast<float>(YarnMscale(y.factor, y.mscale) /
                                         YarnMscale(y.factor, y.mscale_all_dim));
}

void Rope::Angles(int64_t pos, float* cos_out, float* sin_out) const {
  const float p = static_cast<float>(pos);
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    const float angle = p * inv_freq_[i];
    cos_out[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor_;
    sin_out[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor_;
  }
}

}  // namespace mla
