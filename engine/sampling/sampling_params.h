// Per-request sampling settings (the OpenAI / vLLM knobs the engine implements).
#ifndef MLA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define MLA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace mla {

struct SamplingParams {
  float temperature = 1.0f;  // >= 0; 0 = greedy (argmax, no randomness used).
  int32_t top_k = 0;         // >= 0; 0 = off. Values >= vocab size are off too.
  float top_p = 1.0f;        // (0, 1]; 1 = off.
  float min_p = 0.0f;        // [0, 1]; 0 = off. Relative to the most likely token.
  // Seeds the sequence's Rng. The engine picks one (and can report it) when the request
  // does not, so every run can be replayed.
  uint64_t seed = 0;

  bool greedy() const { return temperature == 0.0f; }
};

// INVALID_ARGUMENT naming the field when a value is out of range or NaN.
absl::Status ValidateSamplingParams(const SamplingParams& params);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
