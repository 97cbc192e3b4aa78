#include "engine/sampling/rng.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

namespace mla {
namespace {

using ::testing::ElementsAre;

TEST(RngTest, SplitMix64MatchesTheReferenceStream) {
  // Published first outputs of splitmix64 started at 0.
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(state), 0xe220a8397b1dcdafull);
  EXPECT_EQ(SplitMix64(state), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(SplitMix64(state), 0x06c45d188009454full);
  EXPECT_EQ(SplitMix64(state), 0xf88bb8a8724c81ecull);
}

// Golden outputs pin the bit stream across compilers and machines.
TEST(RngTest, GoldenStream) {
  Rng zero(0);
  std::vector<uint64_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(zero.Next());
  EXPECT_THAT(got, ElementsAre(0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
                               0x6aa594f1262d2d2cull));
  Rng answer(42);
  got.clear();
  for (int i = 0; i < 4; ++i) got.push_back(answer.Next());
  EXPECT_THAT(got, ElementsAre(0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
                               0xecb8ad4703b360a1ull));
  Rng seven(7);
  EXPECT_DOUBLE_EQ(seven.NextDouble(), 0.7005764821796896);
  EXPECT_DOUBLE_EQ(seven.NextDouble(), 0.2787512294737843);
  EXPECT_DOUBLE_EQ(seven.NextDouble(), 0.8396274618764198);
}

TEST(RngTest, FloatsAreBuiltFromTheTopBits) {
  Rng a(123);
  Rng b(123);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a.NextDouble(), static_cast<double>(b.Next() >> 11) / 9007199254740992.0);
    EXPECT_EQ(a.NextFloat(), static_cast<float>(b.Next() >> 40) / 16777216.0f);
  }
}

TEST(RngTest, SameSeedSameStreamDifferentSeedDifferentStream) {
  Rng a(2024);
  Rng b(2024);
  Rng c(2025);
  int equal_to_c = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    equal_to_c += x == c.Next();
  }
  EXPECT_EQ(equal_to_c, 0);
  EXPECT_EQ(a.state(), b.state());
}

TEST(RngTest, DoublesAreUniformInUnitInterval) {
  Rng rng(9);
  std::array<int, 16> buckets{};
  constexpr int kDraws = 64000;
  for (int i = 0; i < kDraws; ++i) {
    const double u = rng.NextDouble();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    ++buckets[static_cast<int>(u * 16)];
  }
  // Expected 4000 per bucket, sigma ~61: 6 sigma never trips for a fixed seed by chance.
  for (int n : buckets) EXPECT_NEAR(n, kDraws / 16, 370);
}

}  // namespace
}  // namespace mla
