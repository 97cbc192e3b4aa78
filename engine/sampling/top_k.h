// Partial selection of the largest values, shared by top-k sampling and top-N logprobs.
#ifndef MLA_ENGINE_SAMPLING_TOP_K_H_
#define MLA_ENGINE_SAMPLING_TOP_K_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace mla {

// NaN ranks as -inf everywhere in sampling: a broken logit can never be chosen.
inline float SortKey(float x) {
  return std::isnan(x) ? -std::numeric_limits<float>::infinity() : x;
}

// The indices of the min(k, size) largest values, largest first; equal values by lower
// index. A bounded heap, O(n log k), when k is small next to n; nth_element otherwise, so
// the full vocabulary is never sorted for a small k.
std::vector<int32_t> TopKIndices(std::span<const float> values, int64_t k);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_TOP_K_H_
