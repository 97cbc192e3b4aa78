#include "engine/backend/cpu/pointwise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace mla {

void RmsNorm(const float* x, int64_t x_stride, int64_t n, int dim, const float* w, float eps,
             float* out, int64_t out_stride) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * x_stride;
    float* o = out + t * out_stride;
    double sum = 0.0;
    for (int i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum / dim) + eps);
    for (int i = 0; i < dim; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

void SiluMul(const float* gate, const float* up, int64_t n, int64_t inter, int64_t in_stride,
             float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* g = gate + t * in_stride;
    const float* u = up + t * in_stride;
    float* o = out + t * inter;
    for (int64_t i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void RotateInterleaved(const float* cos, const float* sin, int half, float* x, int count,
                       int64_t stride) {
  for (int v = 0; v < count; ++v) {
    float* p = x + v * stride;
    for (int i = 0; i < half; ++i) {
      const float a = p[2 * i];
      const float b = p[2 * i + 1];
      p[2 * i] = a * cos[i] - b * sin[i];
      p[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  }
}

void RotateHalves(const float* cos, const float* sin, int half, float* x, int count,
                  int64_t stride) {
  for (int v = 0; v < count; ++v) {
    float* p = x + v * stride;
    for (int i = 0; i < half; ++i) {
      const float a = p[i];
      const float b = p[i + half];
      p[i] = a * cos[i] - b * sin[i];
      p[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void LayerNorm(const float* x, int64_t x_stride, int64_t n, int dim, const float* w, const float* b,
               float eps, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * x_stride;
    float* o = out + t * out_stride;
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < dim; ++i) sum += xr[i];
    const double mean = sum / dim;
    for (int i = 0; i < dim; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float inv = 1.0f / std::sqrt(static_cast<float>(sq / dim) + eps);
    const float m = static_cast<float>(mean);
    for (int i = 0; i < dim; ++i) o[i] = (xr[i] - m) * inv * w[i] + b[i];
  }
}

namespace {

// Indices of the k largest values (descending; lower index first on ties).
std::vector<int> TopK(const std::vector<float>& v, int k) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  idx.resize(k);
  return idx;
}

// Zeroes the choice scores of experts outside the `topk_group` best groups; a group
// scores by its max (group_limited_greedy) or the sum of its top two (noaux_tc).
void MaskGroups(std::vector<float>& choice, const MoeRoutingPolicy& c, bool sum_top2) {
  const int per_group = c.num_experts / c.n_group;
  std::vector<float> group_score(c.n_group);
  for (int g = 0; g < c.n_group; ++g) {
    std::vector<float> members(choice.begin() + g * per_group,
                               choice.begin() + (g + 1) * per_group);
    std::sort(members.begin(), members.end(), std::greater<float>());
    group_score[g] = sum_top2 ? members[0] + (per_group > 1 ? members[1] : 0.0f) : members[0];
  }
  std::vector<int> keep = TopK(group_score, c.topk_group);
  std::vector<bool> kept(c.n_group, false);
  for (int g : keep) kept[g] = true;
  for (int e = 0; e < c.num_experts; ++e) {
    // -inf, not 0: with a negative correction bias a masked expert must still lose.
    if (!kept[e / per_group]) choice[e] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace

ExpertChoice RouteToken(const float* logits, const MoeRoutingPolicy& c,
                        std::span<const float> bias) {
  const int n = c.num_experts;
  std::vector<float> scores(logits, logits + n);
  if (!c.sigmoid) {
    const float max = *std::max_element(scores.begin(), scores.end());
    double sum = 0.0;
    for (float& s : scores) sum += (s = std::exp(s - max));
    for (float& s : scores) s = static_cast<float>(s / sum);
  } else {
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
  }
  std::vector<float> choice = scores;
  if (c.use_bias && !bias.empty()) {
    for (int e = 0; e < n; ++e) choice[e] += bias[e];
  }
  if (c.group_score != MoeGroupScore::kNone) {
    MaskGroups(choice, c, /*sum_top2=*/c.group_score == MoeGroupScore::kSumTop2);
  }
  ExpertChoice out;
  out.experts = TopK(choice, c.top_k);
  for (int e : out.experts) out.weights.push_back(scores[e]);
  if (c.normalize) {
    float sum = 0.0f;
    for (float w : out.weights) sum += w;
    for (float& w : out.weights) w /= (sum + 1e-20f);
  }
  for (float& w : out.weights) w *= c.scaling;
  return out;
}

}  // namespace mla
