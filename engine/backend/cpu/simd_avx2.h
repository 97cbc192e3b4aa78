// AVX2 + FMA building blocks shared by the kernel files that are compiled with
// MLA_TARGET_AVX2. Include only from those files: everything here carries the target
// attribute, so it can be inlined into AVX2 functions but must never run on a CPU
// without AVX2 (the dispatch in cpu_features.h guarantees that).
#ifndef MLA_ENGINE_BACKEND_CPU_SIMD_AVX2_H_
#define MLA_ENGINE_BACKEND_CPU_SIMD_AVX2_H_

#if defined(__x86_64__) || defined(__i386__)
#define MLA_HAVE_AVX2_KERNELS 1

#include <immintrin.h>

#include <cstdint>

#include "engine/common/bf16.h"

#define MLA_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace mla::cpu::avx2 {

// Eight bf16 values to eight floats: bf16 is the upper half of a float.
MLA_TARGET_AVX2 inline __m256 LoadBf16(const bf16_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

MLA_TARGET_AVX2 inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

MLA_TARGET_AVX2 inline float HorizontalMax(__m256 v) {
  const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
}

// Sums of four vectors in one: result lane i (i < 4) = HorizontalSum(v_i).
MLA_TARGET_AVX2 inline __m128 HorizontalSum4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  const __m256 a = _mm256_hadd_ps(v0, v1);  // v0 pairs, v1 pairs (per 128-bit half)
  const __m256 b = _mm256_hadd_ps(v2, v3);
  const __m256 c = _mm256_hadd_ps(a, b);  // [s0 s1 s2 s3] low half, same high half
  return _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
}

// sums[i] = HorizontalSum(acc[i]) for i < kCount, four accumulators per reduction where
// possible (the score tiles of the attention kernels end this way).
template <int kCount>
MLA_TARGET_AVX2 inline void HorizontalSums(const __m256* acc, float* sums) {
  constexpr int kQuads = kCount / 4 * 4;
#pragma GCC unroll 16
  for (int i = 0; i < kQuads; i += 4) {
    _mm_storeu_ps(sums + i, HorizontalSum4(acc[i], acc[i + 1], acc[i + 2], acc[i + 3]));
  }
#pragma GCC unroll 16
  for (int i = kQuads; i < kCount; ++i) sums[i] = HorizontalSum(acc[i]);
}

// In-place transpose of an 8x8 block held in eight registers.
MLA_TARGET_AVX2 inline void Transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]);
  const __m256 t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]);
  const __m256 t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]);
  const __m256 t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]);
  const __m256 t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44);
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44);
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44);
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44);
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// e^x for x <= 0 (softmax arguments): -inf and very negative inputs give +0, NaN stays
// NaN (so a poisoned input shows in the result).
// x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial: relative error ~2e-7,
// about 2 ulp, well inside the attention tolerance.
MLA_TARGET_AVX2 inline __m256 ExpNonPositive(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.0f);  // below this e^x underflows: clamp, flush
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(lo, x);  // max_ps returns its second operand for NaN
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n·ln2 in two steps (Cody-Waite) to keep r accurate.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i scale =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
  return _mm256_andnot_ps(underflow, result);
}

}  // namespace mla::cpu::avx2

#endif  // x86

#endif  // MLA_ENGINE_BACKEND_CPU_SIMD_AVX2_H_
