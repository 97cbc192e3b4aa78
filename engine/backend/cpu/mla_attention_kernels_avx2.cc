// AVX2 + FMA MLA inner loops. Per call: up to 4 query vectors × one block of up to 48
// converted keys.
//   scores: dot products, a register tile of kH vectors × kK keys (12 accumulators for
//     4 × 3), so each 8-float slice of a key is loaded once for kH vectors and each slice
//     of a query once for kK keys; the 12 sums are reduced 4 at a time with hadd.
//   softmax: vectorised over the block's keys (online update of m, l).
//   output: o[t, :] += Σ_k p[t, k]·c_k as outer products, kH vectors × kDV 8-float
//     columns in registers, the rescale by exp(m_old - m_new) folded into the load of o.
// Widths that are not multiples of 8 (small test shapes) use masked loads and stores.
#include "engine/backend/cpu/mla_attention_kernels.h"
#include "engine/backend/cpu/simd_avx2.h"

#ifdef MLA_HAVE_AVX2_KERNELS

#include <algorithm>
#include <cmath>
#include <limits>

namespace mla::cpu::internal {
namespace {

using avx2::ExpNonPositive;
using avx2::HorizontalMax;
using avx2::HorizontalSum;
using avx2::HorizontalSum4;
using avx2::LoadBf16;

static_assert(kMlaKeyBlock % 8 == 0, "the softmax reads whole vectors of scores");

// Lanes [0, n) set (n clamped to [0, 8]).
MLA_TARGET_AVX2 inline __m256i LaneMask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

MLA_TARGET_AVX2 void ConvertKeysAvx2(const bf16_t* const* rows, int nk, int width,
                                     int64_t ldk, float* dst) {
  for (int k = 0; k < nk; ++k) {
    const bf16_t* src = rows[k];
    float* out = dst + k * ldk;
    int d = 0;
    for (; d + 8 <= width; d += 8) _mm256_store_ps(out + d, LoadBf16(src + d));
    for (; d < width; ++d) out[d] = Bf16ToFloat(src[d]);
    for (; d < ldk; ++d) out[d] = 0.0f;
  }
}

// scores[h, k0 + k] = scale · q_h · key_{k0+k} for h < kH, k < kK.
template <int kH, int kK>
MLA_TARGET_AVX2 inline void ScoreTile(const MlaTileArgs& a, int k0) {
  __m256 acc[kH * kK];
  for (int i = 0; i < kH * kK; ++i) acc[i] = _mm256_setzero_ps();
  const float* keys = a.keys + k0 * a.ldk;
  const int full = a.width & ~7;
  for (int d = 0; d < full; d += 8) {
    __m256 kv[kK];
    for (int k = 0; k < kK; ++k) kv[k] = _mm256_load_ps(keys + k * a.ldk + d);
    for (int h = 0; h < kH; ++h) {
      const __m256 qv = _mm256_loadu_ps(a.q + h * a.width + d);
      for (int k = 0; k < kK; ++k) acc[h * kK + k] = _mm256_fmadd_ps(qv, kv[k], acc[h * kK + k]);
    }
  }
  if (full < a.width) {  // Key columns past width are zero; mask the query's tail.
    const __m256i mask = LaneMask(a.width - full);
    for (int h = 0; h < kH; ++h) {
      const __m256 qv = _mm256_maskload_ps(a.q + h * a.width + full, mask);
      for (int k = 0; k < kK; ++k) {
        acc[h * kK + k] =
            _mm256_fmadd_ps(qv, _mm256_load_ps(keys + k * a.ldk + full), acc[h * kK + k]);
      }
    }
  }
  constexpr int kSums = kH * kK;
  constexpr int kQuads = kSums / 4 * 4;
  alignas(16) float sums[kSums];
  for (int i = 0; i < kQuads; i += 4) {
    _mm_store_ps(sums + i, HorizontalSum4(acc[i], acc[i + 1], acc[i + 2], acc[i + 3]));
  }
  for (int i = kQuads; i < kSums; ++i) sums[i] = HorizontalSum(acc[i]);
  for (int h = 0; h < kH; ++h) {
    for (int k = 0; k < kK; ++k) a.scores[h * kMlaKeyBlock + k0 + k] = sums[h * kK + k] * a.scale;
  }
}

template <int kH>
MLA_TARGET_AVX2 void Scores(const MlaTileArgs& a, int nk) {
  constexpr int kK = kH == 1 ? 8 : kH == 2 ? 4 : 3;
  int k0 = 0;
  for (; k0 + kK <= nk; k0 += kK) ScoreTile<kH, kK>(a, k0);
  for (; k0 < nk; ++k0) ScoreTile<kH, 1>(a, k0);
}

// Turns vector t's scores into probabilities relative to the new running max and
// updates m and l. Returns the factor exp(m_old - m_new) to rescale o by.
MLA_TARGET_AVX2 float SoftmaxRow(const MlaTileArgs& a, int t, int nk) {
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
  const float m_new = std::max(a.m[t], HorizontalMax(mx));
  const float corr = std::exp(a.m[t] - m_new);  // 0 on the first block (m = -inf)
  const __m256 shift = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (int k = 0; k < nk; k += 8) {
    const __m256 valid = _mm256_castsi256_ps(LaneMask(nv - k));
    const __m256 e = _mm256_and_ps(
        valid, ExpNonPositive(_mm256_sub_ps(_mm256_load_ps(p + k), shift)));
    _mm256_store_ps(p + k, e);
    sum = _mm256_add_ps(sum, e);
  }
  a.l[t] = a.l[t] * corr + HorizontalSum(sum);
  a.m[t] = m_new;
  return corr;
}

// o[h, d0 .. d0 + 8·kDV) = corr_h · o + Σ_k p[h, k] · value_k[d0 ..]; `mask` limits the
// last (partial) vector of a width that is not a multiple of 8.
template <int kH, int kDV, bool kMasked>
MLA_TARGET_AVX2 inline void ValueTile(const MlaTileArgs& a, const float* corr, int nk,
                                      int d0, __m256i mask) {
  __m256 acc[kH][kDV];
  for (int h = 0; h < kH; ++h) {
    const __m256 c = _mm256_set1_ps(corr[h]);
    for (int v = 0; v < kDV; ++v) {
      float* o = a.o + h * a.latent + d0 + 8 * v;
      acc[h][v] = _mm256_mul_ps(c, kMasked ? _mm256_maskload_ps(o, mask) : _mm256_loadu_ps(o));
    }
  }
  const float* values = a.keys + d0;
  for (int k = 0; k < nk; ++k) {
    __m256 val[kDV];
    for (int v = 0; v < kDV; ++v) val[v] = _mm256_load_ps(values + k * a.ldk + 8 * v);
    for (int h = 0; h < kH; ++h) {
      const __m256 pk = _mm256_broadcast_ss(a.scores + h * kMlaKeyBlock + k);
      for (int v = 0; v < kDV; ++v) acc[h][v] = _mm256_fmadd_ps(pk, val[v], acc[h][v]);
    }
  }
  for (int h = 0; h < kH; ++h) {
    for (int v = 0; v < kDV; ++v) {
      float* o = a.o + h * a.latent + d0 + 8 * v;
      if (kMasked) {
        _mm256_maskstore_ps(o, mask, acc[h][v]);
      } else {
        _mm256_storeu_ps(o, acc[h][v]);
      }
    }
  }
}

template <int kH>
MLA_TARGET_AVX2 void Values(const MlaTileArgs& a, const float* corr, int nk) {
  constexpr int kDV = kH == 1 ? 8 : kH == 2 ? 4 : kH == 3 ? 3 : 2;
  const int full = a.latent & ~7;
  const __m256i all = _mm256_set1_epi32(-1);
  int d0 = 0;
  for (; d0 + 8 * kDV <= full; d0 += 8 * kDV) ValueTile<kH, kDV, false>(a, corr, nk, d0, all);
  for (; d0 < full; d0 += 8) ValueTile<kH, 1, false>(a, corr, nk, d0, all);
  if (full < a.latent) ValueTile<kH, 1, true>(a, corr, nk, full, LaneMask(a.latent - full));
}

template <int kH>
MLA_TARGET_AVX2 void AttendTileT(const MlaTileArgs& a) {
  int nk = 0;  // Keys any vector of the tile sees: nothing past them is computed.
  for (int t = 0; t < kH; ++t) nk = std::max(nk, a.nvalid[t]);
  if (nk == 0) return;
  Scores<kH>(a, nk);
  float corr[kH];
  for (int t = 0; t < kH; ++t) corr[t] = SoftmaxRow(a, t, nk);
  Values<kH>(a, corr, nk);
}

MLA_TARGET_AVX2 void AttendTileAvx2(const MlaTileArgs& a) {
  switch (a.nqv) {
    case 1: return AttendTileT<1>(a);
    case 2: return AttendTileT<2>(a);
    case 3: return AttendTileT<3>(a);
    default: return AttendTileT<4>(a);
  }
}

constexpr MlaKernelOps kAvx2Ops = {ConvertKeysAvx2, AttendTileAvx2};

}  // namespace

const MlaKernelOps* MlaKernelOpsAvx2() { return &kAvx2Ops; }

}  // namespace mla::cpu::internal

#else  // !MLA_HAVE_AVX2_KERNELS

namespace mla::cpu::internal {
const MlaKernelOps* MlaKernelOpsAvx2() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
