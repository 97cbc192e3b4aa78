// Partial selection of the largest values, shared by top-k sampling and top-N logprobs.
#ifndef MLA_ENGINE_SAMPLING_TOP_K_H_
#define MLA_ENGINE_SAMPLING_TOP_K_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

namespace mla {

// NaN ranks as -inf everywhere in sampling: a broken logit can never be chosen.
inline float SortKey(float x) {
  return std::isnan(x) ? -std::numeric_limits<float>::infinity() : x;
}

// The sampling order (larger logit first, then lower id) as one unique, ascending
// 64-bit key: the logit's bits mapped to an order-preserving unsigned, inverted, then
// the id. -0 is folded into +0 so that the two compare equal, as floats do. The CUDA
// backend's draw kernel computes the same key (kernels/sampling.cu).
inline uint64_t RankKey(float logit, int32_t id) {
  float x = SortKey(logit);
  if (x == 0.0f) x = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(id);
}

// The indices of the min(k, size) largest values, largest first; equal values by lower
// index. A bounded heap, O(n log k), when k is small next to n; nth_element otherwise, so
// the full vocabulary is never sorted for a small k.
std::vector<int32_t> TopKIndices(std::span<const float> values, int64_t k);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_TOP_K_H_
