#include "engine/backend/cpu/decompressed_attention_kernels.h"

#include <algorithm>
#include <cmath>

#include "engine/backend/cpu/simd_avx2.h"

namespace mla::cpu::internal {

float SoftmaxRowScalar(float* s, int64_t visible, int64_t nk, float scale, float* max, float* sum) {
  float peak = *max;
  for (int64_t t = 0; t < visible; ++t) {
    s[t] *= scale;
    peak = std::max(peak, s[t]);
  }
  const float alpha = std::exp(*max - peak);
  float total = 0.0f;
  for (int64_t t = 0; t < visible; ++t) {
    s[t] = std::exp(s[t] - peak);
    total += s[t];
  }
  std::fill(s + visible, s + nk, 0.0f);
  *sum = *sum * alpha + total;
  *max = peak;
  return alpha;
}

#ifdef MLA_HAVE_AVX2_KERNELS
namespace {

MLA_TARGET_AVX2 float SoftmaxRowAvx2Impl(float* s, int64_t visible, int64_t nk, float scale,
                                         float* max, float* sum) {
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(*max);
  int64_t t = 0;
  for (; t + 8 <= visible; t += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + t), vscale);
    _mm256_storeu_ps(s + t, x);
    vmax = _mm256_max_ps(vmax, x);
  }
  float peak = avx2::HorizontalMax(vmax);
  for (; t < visible; ++t) {
    s[t] *= scale;
    peak = std::max(peak, s[t]);
  }
  const __m256 vpeak = _mm256_set1_ps(peak);
  __m256 vsum = _mm256_setzero_ps();
  for (t = 0; t + 8 <= visible; t += 8) {
    const __m256 e = avx2::ExpNonPositive(_mm256_sub_ps(_mm256_loadu_ps(s + t), vpeak));
    _mm256_storeu_ps(s + t, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float total = avx2::HorizontalSum(vsum);
  for (; t < visible; ++t) {
    s[t] = std::exp(s[t] - peak);
    total += s[t];
  }
  std::fill(s + visible, s + nk, 0.0f);
  const float alpha = std::exp(*max - peak);
  *sum = *sum * alpha + total;
  *max = peak;
  return alpha;
}

}  // namespace

SoftmaxRowFn SoftmaxRowAvx2() { return &SoftmaxRowAvx2Impl; }
#else
SoftmaxRowFn SoftmaxRowAvx2() { return nullptr; }
#endif

}  // namespace mla::cpu::internal
