// The indexer keys' block layout and encodings (engine/kv_cache/index_key_row.h): where a
// slot's values and scale sit in its block, bf16 and FP8 round trips within their bounds,
// writes that touch only their own slot, and the Hadamard rotation against its matrix.
#include "engine/kv_cache/index_key_row.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/common/bf16.h"
#include "engine/kv_cache/cache_row.h"

namespace mla {
namespace {

std::vector<float> RandomKey(int64_t dim, std::mt19937& rng, float amplitude = 2.0f) {
  std::uniform_real_distribution<float> unit(-amplitude, amplitude);
  std::vector<float> key(static_cast<size_t>(dim));
  for (float& x : key) x = unit(rng);
  return key;
}

// Every slot of a NaN-poisoned block written in a shuffled order: each reads back within
// the dtype's bound, and the bytes sit where the layout says (FP8: codes at offset · dim,
// the scale after all the codes).
TEST(IndexKeyRowTest, BlockLayoutAndRoundTrip) {
  std::mt19937 rng(3);
  for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3}) {
    for (const int64_t dim : {16, 24, 128}) {
      for (const int64_t block_size : {1, 7, 64}) {
        SCOPED_TRACE(::testing::Message()
                     << CacheDTypeName(dtype) << " dim " << dim << " block " << block_size);
        const int64_t per_token = dtype == CacheDType::kBF16 ? 2 * dim : dim + 4;
        std::vector<uint8_t> block(static_cast<size_t>(block_size * per_token), kCacheNaNByte);
        std::vector<std::vector<float>> keys;
        for (int64_t o = 0; o < block_size; ++o) keys.push_back(RandomKey(dim, rng, 0.5f + o));
        std::vector<int64_t> order(static_cast<size_t>(block_size));
        for (int64_t o = 0; o < block_size; ++o) order[o] = (o * 5 + 3) % block_size;
        std::vector<float> back(static_cast<size_t>(dim));
        for (size_t n = 0; n < order.size(); ++n) {
          const int64_t o = order[n];
          EncodeIndexKey(dtype, dim, block_size, keys[o].data(), block.data(), o);
          // The slots not yet written still read NaN.
          for (size_t m = n + 1; m < order.size() && m < n + 3; ++m) {
            DecodeIndexKey(dtype, dim, block_size, block.data(), order[m], back.data());
            ASSERT_TRUE(std::isnan(back[0])) << "slot " << order[m] << " touched by " << o;
          }
        }
        for (int64_t o = 0; o < block_size; ++o) {
          DecodeIndexKey(dtype, dim, block_size, block.data(), o, back.data());
          float amax = 0.0f;
          for (float x : keys[o]) amax = std::max(amax, std::fabs(x));
          for (int64_t i = 0; i < dim; ++i) {
            const float x = keys[o][i];
            if (dtype == CacheDType::kBF16) {
              ASSERT_EQ(back[i], Bf16ToFloat(FloatToBf16(x)));
              continue;
            }
            // e4m3: half a step of 2^-3 relative, or of the subnormal step amax/448 · 2^-9.
            ASSERT_LE(std::fabs(back[i] - x),
                      std::max(std::fabs(x) * 0x1p-4f, amax / 448.0f * 0x1p-10f) * 1.0001f)
                << "slot " << o << " value " << i;
          }
          if (dtype == CacheDType::kFp8E4M3) {
            float scale;
            std::memcpy(&scale, block.data() + block_size * dim + 4 * o, sizeof(scale));
            EXPECT_EQ(scale, Fp8GroupScale(keys[o].data(), dim));
            for (int64_t i = 0; i < dim; ++i) {
              ASSERT_EQ(block[o * dim + i], FloatToFp8E4M3(keys[o][i] / scale)) << i;
            }
          }
        }
      }
    }
  }
}

TEST(IndexKeyRowTest, NonFiniteKeysStayVisible) {
  std::vector<float> key(16, 1.0f);
  key[3] = std::numeric_limits<float>::infinity();
  std::vector<uint8_t> block(20);
  EncodeIndexKey(CacheDType::kFp8E4M3, 16, 1, key.data(), block.data(), 0);
  std::vector<float> back(16);
  DecodeIndexKey(CacheDType::kFp8E4M3, 16, 1, block.data(), 0, back.data());
  for (float x : back) EXPECT_TRUE(std::isnan(x));
  // An all-zero key reads back zero (not 0/0).
  std::fill(key.begin(), key.end(), 0.0f);
  EncodeIndexKey(CacheDType::kFp8E4M3, 16, 1, key.data(), block.data(), 0);
  DecodeIndexKey(CacheDType::kFp8E4M3, 16, 1, block.data(), 0, back.data());
  for (float x : back) EXPECT_EQ(x, 0.0f);
}

// x ← H x / √n (H the Sylvester Walsh-Hadamard matrix), by its definition.
std::vector<float> Rotated(const std::vector<float>& x) {
  const size_t n = x.size();
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    double acc = 0;
    for (size_t j = 0; j < n; ++j) acc += (__builtin_popcountll(i & j) % 2 ? -1.0 : 1.0) * x[j];
    out[i] = static_cast<float>(acc / std::sqrt(double(n)));
  }
  return out;
}

// Why FP8 keys are not Hadamard-rotated first (index_key_row.h): e4m3 is a floating-point
// format, so a key's error follows each value; a rotation spreading a few large channels
// over all 128 values leaves a query's dot-product error no smaller. Gaussian keys whose
// first four channels are 1x, 5x and 20x the rest, Gaussian queries: the FP8 dot
// product's RMS error stays within 2^-4 of |q|·|k| / √dim-ish bounds, and the rotated one
// is not better.
TEST(IndexKeyRowTest, Fp8DotErrorIsRelativeAndARotationDoesNotShrinkIt) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  const int64_t dim = 128;
  for (const float large : {1.0f, 5.0f, 20.0f}) {
    double sq_plain = 0, sq_rotated = 0, sq_scale = 0;
    const int trials = 1000;
    for (int trial = 0; trial < trials; ++trial) {
      std::vector<float> key(dim), q(dim);
      for (int64_t i = 0; i < dim; ++i) {
        key[i] = normal(rng) * (i < 4 ? large : 1.0f);
        q[i] = normal(rng);
      }
      double exact = 0, kk = 0, qq = 0;
      for (int64_t i = 0; i < dim; ++i) {
        exact += double{q[i]} * key[i];
        kk += double{key[i]} * key[i];
        qq += double{q[i]} * q[i];
      }
      const auto stored_dot = [&](const std::vector<float>& k, const std::vector<float>& qv) {
        std::vector<uint8_t> block(static_cast<size_t>(dim + 4));
        std::vector<float> back(static_cast<size_t>(dim));
        EncodeIndexKey(CacheDType::kFp8E4M3, dim, 1, k.data(), block.data(), 0);
        DecodeIndexKey(CacheDType::kFp8E4M3, dim, 1, block.data(), 0, back.data());
        double dot = 0;
        for (int64_t i = 0; i < dim; ++i) dot += double{qv[i]} * back[i];
        return dot;
      };
      const double plain = stored_dot(key, q) - exact;
      const double rotated = stored_dot(Rotated(key), Rotated(q)) - exact;
      sq_plain += plain * plain;
      sq_rotated += rotated * rotated;
      sq_scale += qq * kk / dim;
    }
    const double plain = std::sqrt(sq_plain / trials), rotated = std::sqrt(sq_rotated / trials);
    const double scale = std::sqrt(sq_scale / trials);
    std::printf(
        "[ fp8 keys ] channels 0-3 at %gx: RMS dot error %.4f plain, %.4f rotated "
        "(|q||k|/sqrt(dim) %.2f)\n",
        large, plain, rotated, scale);
    EXPECT_LT(plain, 0x1p-4 * scale);
    EXPECT_GT(rotated, 0.9 * plain);
  }
}

}  // namespace
}  // namespace mla
