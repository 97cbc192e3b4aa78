#include "engine/sampling/top_k.h"

#include <algorithm>
#include <numeric>

namespace mla {

std::vector<int32_t> TopKIndices(std::span<const float> values, int64_t k) {
  const int64_t n = static_cast<int64_t>(values.size());
  k = std::clamp<int64_t>(k, 0, n);
  // A strict total order: larger value first, then lower index.
  const auto better = [values](int32_t a, int32_t b) {
    const float ka = SortKey(values[a]);
    const float kb = SortKey(values[b]);
    return ka > kb || (ka == kb && a < b);
  };
  std::vector<int32_t> ids;
  if (k == 0) return ids;
  if (k * 16 <= n) {
    // With `better` as the heap's "less", the front is the worst of the kept ids.
    ids.resize(k);
    std::iota(ids.begin(), ids.end(), 0);
    std::make_heap(ids.begin(), ids.end(), better);
    float worst = SortKey(values[ids.front()]);
    for (int32_t i = static_cast<int32_t>(k); i < n; ++i) {
      // Ids arrive in ascending order, so an equal value never beats a kept one, and
      // a NaN (ranked as -inf) fails the comparison as it should.
      if (!(values[i] > worst)) continue;
      std::pop_heap(ids.begin(), ids.end(), better);
      ids.back() = i;
      std::push_heap(ids.begin(), ids.end(), better);
      worst = SortKey(values[ids.front()]);
    }
  } else {
    ids.resize(n);
    std::iota(ids.begin(), ids.end(), 0);
    std::nth_element(ids.begin(), ids.begin() + (k - 1), ids.end(), better);
    ids.resize(k);
  }
  std::sort(ids.begin(), ids.end(), better);
  return ids;
}

}  // namespace mla
