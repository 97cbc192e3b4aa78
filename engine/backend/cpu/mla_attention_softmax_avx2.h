// The online-softmax step shared by the AVX2 and AVX512_BF16 MLA attention kernels
// (mla_attention_kernels_*.cc): both compute a block's scores in fp32 and differ only in
// how they multiply. Include only from files whose kernels run behind the AVX2 dispatch
// (see simd_avx2.h).
#ifndef MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_SOFTMAX_AVX2_H_
#define MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_SOFTMAX_AVX2_H_

#include "engine/backend/cpu/mla_attention_kernels.h"
#include "engine/backend/cpu/simd_avx2.h"

#ifdef MLA_HAVE_AVX2_KERNELS

#include <algorithm>
#include <cmath>
#include <limits>

namespace mla::cpu::internal::avx2_softmax {

static_assert(kMlaKeyBlock % 8 == 0, "the softmax reads whole vectors of scores");

// Lanes [0, n) set (n clamped to [0, 8]).
MLA_TARGET_AVX2 inline __m256i LaneMask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Turns vector t's scores into probabilities relative to the new running max and
// updates m and l. Returns the factor exp(m_old - m_new) to rescale o by. Scores past
// nvalid[t] become 0, up to nk rounded up to 8.
MLA_TARGET_AVX2 inline float SoftmaxRow(const MlaTileArgs& a, int t, int nk) {
  float* p = a.scores + t * kMlaKeyBlock;
  const int nv = a.nvalid[t];
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  if (nv == 0) {  // Sees nothing of this block: zero weights, state unchanged.
    for (int k = 0; k < nk; k += 8) _mm256_store_ps(p + k, _mm256_setzero_ps());
    return 1.0f;
  }
  __m256 mx = neg_inf;
  for (int k = 0; k < nv; k += 8) {
    const __m256 valid = _mm256_castsi256_ps(LaneMask(nv - k));
    mx = _mm256_max_ps(mx, _mm256_blendv_ps(neg_inf, _mm256_load_ps(p + k), valid));
  }
  const float m_new = std::max(a.m[t], avx2::HorizontalMax(mx));
  const float corr = std::exp(a.m[t] - m_new);  // 0 on the first block (m = -inf)
  const __m256 shift = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (int k = 0; k < nk; k += 8) {
    const __m256 valid = _mm256_castsi256_ps(LaneMask(nv - k));
    const __m256 e =
        _mm256_and_ps(valid, avx2::ExpNonPositive(_mm256_sub_ps(_mm256_load_ps(p + k), shift)));
    _mm256_store_ps(p + k, e);
    sum = _mm256_add_ps(sum, e);
  }
  a.l[t] = a.l[t] * corr + avx2::HorizontalSum(sum);
  a.m[t] = m_new;
  return corr;
}

}  // namespace mla::cpu::internal::avx2_softmax

#endif  // MLA_HAVE_AVX2_KERNELS

#endif  // MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_SOFTMAX_AVX2_H_
