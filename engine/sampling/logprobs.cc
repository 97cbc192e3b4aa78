#include "engine/sampling/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/sampling/top_k.h"

namespace mla {

std::vector<float> LogSoftmax(std::span<const float> logits) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float max = -kInf;
  for (float x : logits) max = std::max(max, SortKey(x));
  std::vector<float> out(logits.size());
  if (max == -kInf) {
    std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
    return out;
  }
  if (max == kInf) {
    const auto count = std::count(logits.begin(), logits.end(), kInf);
    const float share = static_cast<float>(-std::log(static_cast<double>(count)));
    for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] == kInf ? share : -kInf;
    return out;
  }
  double sum = 0.0;
  for (float x : logits) sum += std::exp(SortKey(x) - max);
  const double log_sum = std::log(sum);  // >= 0: the maximum contributes exp(0) = 1.
  for (size_t i = 0; i < logits.size(); ++i) out[i] = LogprobFromLogSum(logits[i], max, log_sum);
  return out;
}

float LogprobFromLogSum(float logit, float max, double log_sum) {
  return static_cast<float>(static_cast<double>(SortKey(logit) - max) - log_sum);
}

std::vector<TokenLogprob> TopN(std::span<const float> logprobs, int n) {
  std::vector<TokenLogprob> out;
  for (int32_t id : TopKIndices(logprobs, n)) out.push_back({id, logprobs[id]});
  return out;
}

}  // namespace mla
