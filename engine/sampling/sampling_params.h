// Per-request sampling settings (the OpenAI / vLLM knobs the engine implements).
#ifndef MLA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define MLA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace mla {

// The most logit_bias entries a request may carry.
inline constexpr int kMaxLogitBiasEntries = 1024;

struct SamplingParams {
  float temperature = 1.0f;  // >= 0; 0 = greedy (argmax, no randomness used).
  int32_t top_k = 0;         // >= 0; 0 = off. Values >= vocab size are off too.
  float top_p = 1.0f;        // (0, 1]; 1 = off.
  float min_p = 0.0f;        // [0, 1]; 0 = off. Relative to the most likely token.
  // Seeds the sequence's Rng. The engine picks one (and can report it) when the request
  // does not, so every run can be replayed.
  uint64_t seed = 0;
  // Adjustments of the logits before everything above (logit_adjustments.h).
  float presence_penalty = 0.0f;    // [-2, 2]; 0 = off.
  float frequency_penalty = 0.0f;   // [-2, 2]; 0 = off.
  float repetition_penalty = 1.0f;  // > 0 and finite; 1 = off.
  // (token id, bias in [-100, 100]), at most kMaxLogitBiasEntries, each token once. The
  // ids are checked against the vocabulary where it is known (the engine's Submit).
  std::vector<std::pair<int32_t, float>> logit_bias;
  // >= 0: the sequence's stop tokens (TokenHistory::SetStopTokens) cannot be sampled
  // before this many tokens were generated. 0 = off.
  int32_t min_tokens = 0;

  bool greedy() const { return temperature == 0.0f; }
  bool adjusts_logits() const {
    return presence_penalty != 0.0f || frequency_penalty != 0.0f || repetition_penalty != 1.0f ||
           !logit_bias.empty() || min_tokens > 0;
  }
};

// INVALID_ARGUMENT naming the field when a value is out of range or NaN.
absl::Status ValidateSamplingParams(const SamplingParams& params);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
