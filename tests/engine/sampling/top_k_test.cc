#include "engine/sampling/top_k.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/sampling/rng.h"

namespace mla {
namespace {

using ::testing::ElementsAre;

std::vector<int32_t> Reference(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> ids(v.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return SortKey(v[a]) > SortKey(v[b]); });
  ids.resize(std::clamp<int64_t>(k, 0, static_cast<int64_t>(v.size())));
  return ids;
}

TEST(TopKIndicesTest, MatchesAFullSortOnBothPaths) {
  Rng rng(11);
  for (int n : {1, 7, 100, 5000}) {
    std::vector<float> v(n);
    // Few distinct values, so ties are everywhere; a few NaN and infinities.
    for (float& x : v) x = static_cast<float>(rng.Next() % 17) - 8.0f;
    v[rng.Next() % n] = std::numeric_limits<float>::quiet_NaN();
    v[rng.Next() % n] = -std::numeric_limits<float>::infinity();
    v[rng.Next() % n] = std::numeric_limits<float>::infinity();
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{n / 16}, int64_t{n / 2},
                      int64_t{n - 1}, int64_t{n}, int64_t{n + 5}}) {
      EXPECT_EQ(TopKIndices(v, k), Reference(v, k)) << "n " << n << " k " << k;
    }
  }
}

TEST(TopKIndicesTest, TiesGoToTheLowerIndexAndNaNRanksLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> v = {nan, 1.0f, 3.0f, 1.0f, 3.0f, -1.0f};
  EXPECT_THAT(TopKIndices(v, 6), ElementsAre(2, 4, 1, 3, 5, 0));
  EXPECT_THAT(TopKIndices(v, 3), ElementsAre(2, 4, 1));
  EXPECT_TRUE(TopKIndices(v, -1).empty());
}

}  // namespace
}  // namespace mla
