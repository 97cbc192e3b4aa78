#include "engine/sampling/logit_adjustments.h"

#include <algorithm>
#include <limits>

namespace mla {

void TokenHistory::SetPrompt(std::span<const int32_t> prompt) {
  prompt_tokens_.assign(prompt.begin(), prompt.end());
  std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
  prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()),
                       prompt_tokens_.end());
}

void ApplyLogitAdjustments(const SamplingParams& params, const TokenHistory& history,
                           std::span<float> logits) {
  const auto in_row = [&](int32_t t) { return t >= 0 && static_cast<size_t>(t) < logits.size(); };
  if (history.num_output() < params.min_tokens) {
    for (int32_t t : history.stop_tokens()) {
      if (in_row(t)) logits[t] = -std::numeric_limits<float>::infinity();
    }
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (in_row(token)) logits[token] += bias;
  }
  const float r = params.repetition_penalty;
  if (r != 1.0f) {
    const auto penalize = [&](int32_t t) {
      float& l = logits[t];
      l = l > 0.0f ? l / r : l * r;
    };
    const std::span<const int32_t> prompt = history.prompt_tokens();
    for (int32_t t : prompt) {
      if (in_row(t)) penalize(t);
    }
    for (const auto& [t, count] : history.output_counts()) {
      // Each token once: the prompt's were penalized above.
      if (in_row(t) && !std::binary_search(prompt.begin(), prompt.end(), t)) penalize(t);
    }
  }
  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    for (const auto& [t, count] : history.output_counts()) {
      if (in_row(t)) {
        logits[t] -= params.frequency_penalty * static_cast<float>(count) + params.presence_penalty;
      }
    }
  }
}

}  // namespace mla
