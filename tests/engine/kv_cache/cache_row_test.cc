// The FP8 quantizer and the cache row encodings (engine/kv_cache/cache_row.h): e4m3
// rounding against a brute-force search over every code, the per-128 scale (saturation,
// zeros, tiny and huge groups, NaN and infinities), round-trip bounds, and both layouts
// through LatentCache.
#include "engine/kv_cache/cache_row.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/common/bf16.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/latent_cache.h"

namespace mla {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The e4m3 code nearest to x by exhaustive search over the finite codes, ties to the even
// code (even mantissa), values beyond 448 saturating: the specification FloatToFp8E4M3
// implements with bit arithmetic.
uint8_t NearestCode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const double a = std::min(std::fabs(double{x}), 448.0);
  uint8_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (int c = 0; c <= 0x7e; ++c) {
    const double err = std::fabs(Fp8E4M3ToFloat(static_cast<uint8_t>(c)) - a);
    if (err < best_err || (err == best_err && c % 2 == 0)) {
      best = static_cast<uint8_t>(c);
      best_err = err;
    }
  }
  return sign | best;
}

TEST(Fp8E4M3Test, EveryCodeRoundTripsExactly) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN codes
    const float v = Fp8E4M3ToFloat(static_cast<uint8_t>(c));
    ASSERT_FALSE(std::isnan(v)) << c;
    const uint8_t back = FloatToFp8E4M3(v);
    // -0 and +0 are both zero; everything else must come back bit-exact.
    if (v == 0.0f) {
      EXPECT_EQ(back & 0x7f, 0) << c;
    } else {
      EXPECT_EQ(back, c) << "code " << c << " value " << v;
    }
  }
  EXPECT_EQ(Fp8E4M3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), 1.0f / 512.0f);  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), 1.0f / 64.0f);   // smallest normal
}

TEST(Fp8E4M3Test, RoundsToNearestEvenLikeAnExhaustiveSearch) {
  // Midpoints between neighbouring codes (the ties), a hair either side, and random
  // values over the whole range, subnormals included.
  std::vector<float> xs;
  for (int c = 0; c < 0x7e; ++c) {
    const double lo = Fp8E4M3ToFloat(static_cast<uint8_t>(c));
    const double hi = Fp8E4M3ToFloat(static_cast<uint8_t>(c + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    xs.insert(xs.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)});
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) xs.push_back(std::exp2(exponent(rng)));
  for (const float x : xs) {
    ASSERT_EQ(FloatToFp8E4M3(x), NearestCode(x)) << "x = " << x;
    ASSERT_EQ(FloatToFp8E4M3(-x), NearestCode(-x)) << "x = " << -x;
  }
  EXPECT_EQ(FloatToFp8E4M3(1.0f / 1024.0f), 0x00);  // tie between 0 and 2^-9: 0
  EXPECT_EQ(FloatToFp8E4M3(3.0f / 1024.0f), 0x02);  // tie between 1 and 2: 2
  EXPECT_EQ(FloatToFp8E4M3(1.0625f), 0x38);         // tie 1.0 / 1.125: 1.0 (even)
  EXPECT_EQ(FloatToFp8E4M3(1.1875f), 0x3a);         // tie 1.125 / 1.25: 1.25 (even)
}

TEST(Fp8E4M3Test, SaturatesInsteadOfOverflowingAndKeepsNaN) {
  for (const float x : {448.0f, 449.0f, 464.0f, 479.0f, 480.0f, 1e6f, FLT_MAX, kInf}) {
    EXPECT_EQ(FloatToFp8E4M3(x), 0x7e) << x;
    EXPECT_EQ(FloatToFp8E4M3(-x), 0xfe) << -x;
  }
  EXPECT_EQ(FloatToFp8E4M3(kNaN) & 0x7f, 0x7f);
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(FloatToFp8E4M3(kNaN))));
  EXPECT_EQ(FloatToFp8E4M3(1e-30f), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(-1e-30f), 0x80);
  EXPECT_EQ(FloatToFp8E4M3(FLT_TRUE_MIN), 0x00);
}

// The error bound of one value after quantize + dequantize: half an e4m3 step, i.e.
// 2^-4 of |x| in the normal range and 2^-10 of the scale in the subnormal range, plus
// the fp32 roundings of x / scale and code · scale.
void ExpectGroupWithinBounds(const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> codes(n);
  float scale = 0.0f;
  QuantizeFp8Group(x.data(), n, codes.data(), &scale);
  ASSERT_TRUE(std::isfinite(scale));
  ASSERT_GT(scale, 0.0f);
  float amax = 0.0f;
  for (const float v : x) amax = std::max(amax, std::fabs(v));
  EXPECT_EQ(scale, std::max(amax / 448.0f, FLT_MIN));
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_NE(codes[i] & 0x7f, 0x7f) << "the NaN code for a finite input at " << i;
    const double back = double{Fp8E4M3ToFloat(codes[i])} * scale;
    const double bound =
        std::max(std::fabs(double{x[i]}) * 0x1p-4, double{scale} * 0x1p-10) * (1 + 1e-6);
    ASSERT_LE(std::fabs(back - x[i]), bound) << "value " << x[i] << " at " << i;
    if (x[i] == 0.0f) {
      ASSERT_EQ(back, 0.0);
    }
  }
}

TEST(Fp8GroupTest, RoundTripErrorBoundsOnRandomGroups) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_magnitude(-20.0f, 20.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> x(kFp8ScaleGroup);
    for (float& v : x) {
      // Alternate plain normals with values over 40 binades (most of them flush).
      v = trial % 2 == 0 ? normal(rng) : std::copysign(std::exp2(log_magnitude(rng)), normal(rng));
    }
    if (trial % 5 == 0) x[trial % kFp8ScaleGroup] = 100.0f * (trial % 3 - 1);  // an outlier
    ExpectGroupWithinBounds(x);
  }
}

TEST(Fp8GroupTest, TheLargestValueLandsOn448) {
  std::vector<float> x(kFp8ScaleGroup, 0.25f);
  x[17] = -3.7f;
  std::vector<uint8_t> codes(x.size());
  float scale;
  QuantizeFp8Group(x.data(), kFp8ScaleGroup, codes.data(), &scale);
  EXPECT_EQ(codes[17], 0xfe);
  EXPECT_FLOAT_EQ(Fp8E4M3ToFloat(codes[17]) * scale, -3.7f);
}

TEST(Fp8GroupTest, ZerosTinyAndHugeGroupsNeverGiveNaN) {
  ExpectGroupWithinBounds(std::vector<float>(kFp8ScaleGroup, 0.0f));
  ExpectGroupWithinBounds(std::vector<float>(kFp8ScaleGroup, -0.0f));
  ExpectGroupWithinBounds(std::vector<float>(kFp8ScaleGroup, FLT_TRUE_MIN));
  std::vector<float> tiny(kFp8ScaleGroup, 0.0f);
  tiny[3] = 1e-39f;  // denormal: amax / 448 underflows, the FLT_MIN floor takes over
  tiny[4] = -FLT_MIN;
  ExpectGroupWithinBounds(tiny);
  std::vector<float> huge(kFp8ScaleGroup, 1e37f);
  huge[0] = -1e38f;
  ExpectGroupWithinBounds(huge);
  std::vector<float> one(1, 5.0f);  // a group of one value
  ExpectGroupWithinBounds(one);
}

TEST(Fp8GroupTest, NonFiniteInputPoisonsItsGroupOnly) {
  for (const float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> latent(2 * kFp8ScaleGroup, 0.5f);
    latent[kFp8ScaleGroup + 9] = bad;
    const std::vector<float> k_pe = {1.0f, 2.0f};
    std::vector<uint8_t> row(CacheRowBytes(CacheDType::kFp8E4M3, latent.size(), 2));
    EncodeCacheRow(CacheDType::kFp8E4M3, latent.size(), 2, latent.data(), k_pe.data(), row.data());
    std::vector<float> back(latent.size()), pe(2);
    DecodeCacheRow(CacheDType::kFp8E4M3, latent.size(), 2, row.data(), back.data(), pe.data());
    for (int i = 0; i < kFp8ScaleGroup; ++i) ASSERT_EQ(back[i], 0.5f) << i;
    for (int i = kFp8ScaleGroup; i < 2 * kFp8ScaleGroup; ++i) {
      ASSERT_TRUE(std::isnan(back[i])) << "bad " << bad << " at " << i;
    }
    EXPECT_EQ(pe, k_pe);
  }
}

TEST(CacheRowTest, DeepSeekRowSizesMatchTheLayout) {
  EXPECT_EQ(CacheRowBytes(CacheDType::kBF16, 512, 64), 1152);
  EXPECT_EQ(CacheRowBytes(CacheDType::kFp8E4M3, 512, 64), 656);
  for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3}) {
    const CacheLayout layout = *CacheLayout::Create({dtype, 256, 6, 16, 2});
    EXPECT_EQ(CacheRowBytes(dtype, 256, 6), layout.bytes_per_token_per_layer());
  }
}

TEST(CacheRowTest, RowsRoundTripInBothLayouts) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  constexpr int kL = 300, kR = 7;  // two whole scale groups and a short one of 44
  std::vector<float> latent(kL), k_pe(kR);
  for (float& v : latent) v = normal(rng);
  for (float& v : k_pe) v = normal(rng);
  for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3}) {
    std::vector<uint8_t> row(CacheRowBytes(dtype, kL, kR));
    EncodeCacheRow(dtype, kL, kR, latent.data(), k_pe.data(), row.data());
    std::vector<float> back(kL), pe(kR);
    DecodeCacheRow(dtype, kL, kR, row.data(), back.data(), pe.data());
    for (int i = 0; i < kR; ++i) EXPECT_EQ(pe[i], Bf16ToFloat(FloatToBf16(k_pe[i]))) << i;
    for (int g = 0; g < Fp8ScaleGroups(kL); ++g) {
      const float* x = latent.data() + g * kFp8ScaleGroup;
      const int n = std::min(kFp8ScaleGroup, kL - g * kFp8ScaleGroup);
      for (int i = 0; i < n; ++i) {
        float want = Bf16ToFloat(FloatToBf16(x[i]));
        if (dtype == CacheDType::kFp8E4M3) {
          const float scale = Fp8GroupScale(x, n);
          want = Fp8E4M3ToFloat(FloatToFp8E4M3(x[i] / scale)) * scale;
        }
        ASSERT_EQ(back[g * kFp8ScaleGroup + i], want) << CacheDTypeName(dtype) << " " << i;
      }
    }
  }
}

TEST(CacheRowTest, LatentCacheStoresFp8RowsThroughTheBlockTable) {
  constexpr int kL = 32, kR = 6, kBs = 4, kTokens = 11;  // one short scale group
  const CacheLayout layout = *CacheLayout::Create({CacheDType::kFp8E4M3, kL, kR, kBs, 2});
  EXPECT_EQ(layout.bytes_per_token_per_layer(), 32 + 4 + 12);
  absl::StatusOr<LatentCache> cache = LatentCache::CreateWithBlocks(layout, 8);
  ASSERT_TRUE(cache.ok()) << cache.status();
  cache->PoisonWithNaN();
  BlockPool pool(8);
  BlockTable table(kBs);
  ASSERT_TRUE(pool.Allocate(2).ok());  // the table does not start at block 0
  ASSERT_TRUE(table.Append(kTokens, pool).ok());
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> latent(kTokens * kL), k_pe(kTokens * kR);
  for (float& v : latent) v = normal(rng);
  for (float& v : k_pe) v = normal(rng);
  ASSERT_TRUE(cache->WriteTokens(1, table, 0, kTokens, latent.data(), kL, k_pe.data(), kR).ok());
  std::vector<float> back(kTokens * kL), pe(kTokens * kR);
  ASSERT_TRUE(cache->ReadTokens(1, table, 0, kTokens, back.data(), kL, pe.data(), kR).ok());
  for (int t = 0; t < kTokens; ++t) {
    std::vector<uint8_t> row(layout.bytes_per_token_per_layer());
    EncodeCacheRow(layout.dtype(), kL, kR, &latent[t * kL], &k_pe[t * kR], row.data());
    std::vector<float> want(kL), want_pe(kR);
    DecodeCacheRow(layout.dtype(), kL, kR, row.data(), want.data(), want_pe.data());
    for (int i = 0; i < kL; ++i) ASSERT_EQ(back[t * kL + i], want[i]) << t << " " << i;
    for (int i = 0; i < kR; ++i) ASSERT_EQ(pe[t * kR + i], want_pe[i]) << t << " " << i;
  }
  // Layer 0 was never written: reading it gives NaN everywhere (the poison).
  ASSERT_TRUE(cache->ReadTokens(0, table, 0, kTokens, back.data(), kL, pe.data(), kR).ok());
  for (const float v : back) ASSERT_TRUE(std::isnan(v));
  for (const float v : pe) ASSERT_TRUE(std::isnan(v));
}

TEST(CacheRowTest, ParsesTheDTypeNames) {
  EXPECT_EQ(*ParseCacheDType("bf16"), CacheDType::kBF16);
  EXPECT_EQ(*ParseCacheDType("fp8"), CacheDType::kFp8E4M3);
  EXPECT_EQ(*ParseCacheDType("fp8_e4m3"), CacheDType::kFp8E4M3);
  const absl::StatusOr<CacheDType> bad = ParseCacheDType("int4");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bf16, fp8"), std::string::npos);
}

}  // namespace
}  // namespace mla
