#include "engine/kv_cache/cache_row.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/common/bf16.h"

namespace mla {
namespace {

constexpr float kFp8Max = 448.0f;

void EncodeBf16(const float* src, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const bf16_t v = FloatToBf16(src[i]);
    std::memcpy(dst + 2 * i, &v, sizeof(v));
  }
}

void DecodeBf16(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    bf16_t v;
    std::memcpy(&v, src + 2 * i, sizeof(v));
    dst[i] = Bf16ToFloat(v);
  }
}

}  // namespace

int64_t CacheRowBytes(CacheDType dtype, int64_t latent, int64_t rope) {
  switch (dtype) {
    case CacheDType::kBF16:
      return (latent + rope) * 2;
    case CacheDType::kFp8E4M3:
      return latent + Fp8ScaleGroups(latent) * 4 + rope * 2;
  }
  return 0;
}

float Fp8GroupScale(const float* x, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (!std::isfinite(a)) return std::numeric_limits<float>::quiet_NaN();
    amax = a > amax ? a : amax;
  }
  // FLT_MIN as the floor: zeros quantize to 0 with a finite scale, and 448 / scale never
  // overflows.
  const float scale = amax / kFp8Max;
  return scale < FLT_MIN ? FLT_MIN : scale;
}

void QuantizeFp8Group(const float* x, int64_t n, uint8_t* codes, float* scale) {
  const float s = Fp8GroupScale(x, n);
  *scale = s;
  if (std::isnan(s)) {
    for (int64_t i = 0; i < n; ++i) codes[i] = 0;
    return;
  }
  // x / s, not x · (1/s): the division is what the reference simulation computes, and
  // amax / s lands on 448 (or a hair above, which the saturation takes back).
  for (int64_t i = 0; i < n; ++i) codes[i] = FloatToFp8E4M3(x[i] / s);
}

void EncodeCacheRow(CacheDType dtype, int64_t latent_dim, int64_t rope_dim, const float* latent,
                    const float* k_pe, uint8_t* dst) {
  if (dtype == CacheDType::kBF16) {
    EncodeBf16(latent, latent_dim, dst);
    EncodeBf16(k_pe, rope_dim, dst + 2 * latent_dim);
    return;
  }
  const int64_t groups = Fp8ScaleGroups(latent_dim);
  uint8_t* scales = dst + latent_dim;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t first = g * kFp8ScaleGroup;
    float scale;
    QuantizeFp8Group(latent + first, std::min<int64_t>(kFp8ScaleGroup, latent_dim - first),
                     dst + first, &scale);
    std::memcpy(scales + 4 * g, &scale, sizeof(scale));
  }
  EncodeBf16(k_pe, rope_dim, scales + 4 * groups);
}

void DecodeCacheRow(CacheDType dtype, int64_t latent_dim, int64_t rope_dim, const uint8_t* src,
                    float* latent, float* k_pe) {
  if (dtype == CacheDType::kBF16) {
    DecodeBf16(src, latent_dim, latent);
    DecodeBf16(src + 2 * latent_dim, rope_dim, k_pe);
    return;
  }
  const int64_t groups = Fp8ScaleGroups(latent_dim);
  const uint8_t* scales = src + latent_dim;
  for (int64_t g = 0; g < groups; ++g) {
    float scale;
    std::memcpy(&scale, scales + 4 * g, sizeof(scale));
    const int64_t end = std::min<int64_t>((g + 1) * kFp8ScaleGroup, latent_dim);
    for (int64_t i = g * kFp8ScaleGroup; i < end; ++i) latent[i] = Fp8E4M3ToFloat(src[i]) * scale;
  }
  DecodeBf16(scales + 4 * groups, rope_dim, k_pe);
}

}  // namespace mla
