// Small per-token operations of the DeepSeek forward pass on the CPU (fp32 throughout):
// RMSNorm, SiLU-mul, interleaved RoPE, the MoE router.
#ifndef MLA_ENGINE_BACKEND_CPU_POINTWISE_H_
#define MLA_ENGINE_BACKEND_CPU_POINTWISE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend/moe_policy.h"

namespace mla {

// out[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps) for n rows of `dim`; out may alias x.
void RmsNorm(const float* x, int64_t x_stride, int64_t n, int dim, const float* w, float eps,
             float* out, int64_t out_stride);

// out[t] = silu(gate[t]) ⊙ up[t] for n rows of `inter` (gate and up rows in_stride apart).
void SiluMul(const float* gate, const float* up, int64_t n, int64_t inter, int64_t in_stride,
             float* out);

// Rotates interleaved pairs (x[2i], x[2i+1]) of `count` vectors of 2 · half floats, each
// `stride` floats apart, by one position's angles cos/sin [half].
void RotateInterleaved(const float* cos, const float* sin, int half, float* x, int count,
                       int64_t stride);

// Rotates the half-split pairs (x[i], x[i + half]) of `count` vectors (transformers'
// rotate_half layout, used by the V3.2 indexer), otherwise as RotateInterleaved.
void RotateHalves(const float* cos, const float* sin, int half, float* x, int count,
                  int64_t stride);

// out[t] = w ⊙ (x[t] − mean) / sqrt(var + eps) + b (torch LayerNorm; biased variance) for
// n rows of `dim`; out may alias x.
void LayerNorm(const float* x, int64_t x_stride, int64_t n, int dim, const float* w, const float* b,
               float eps, float* out, int64_t out_stride);

// The experts chosen for one token and their combine weights.
struct ExpertChoice {
  std::vector<int> experts;   // top_k ids
  std::vector<float> weights;
};

// Routes one token from its router logits (fp32) following `policy` (moe_policy.h);
// `bias` is e_score_correction_bias, used when policy.use_bias and not empty.
ExpertChoice RouteToken(const float* logits, const MoeRoutingPolicy& policy,
                        std::span<const float> bias);

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_CPU_POINTWISE_H_
