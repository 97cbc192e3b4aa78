// AVX2 + FMA MLA inner loops. Per call: up to 4 query vectors × one block of up to 48
// keys, converted to fp32 once per block (each cache value is written once):
//   VP [ceil(L/16)][48][16]: the latent c in 16-column panels (zero past L),
//   RP [48][ldr]: k_pe rows, ldr = R rounded up to 8 (zero padded).
// scores: dot products over the panels and then the rope rows, a register tile of
//   kH vectors × kK keys (12 accumulators for 4 × 3): each 8-float slice of a key is
//   loaded once for kH vectors, each slice of a query once for kK keys; the sums are
//   reduced 4 at a time. The kK keys of one panel are contiguous (kK·64 bytes).
// output: o[t, :] += Σ_k p[t, k]·c_k as outer products, kH vectors × 16 columns in
//   registers, 2 panel loads + kH broadcasts per 2·kH FMAs, each panel read
//   contiguously; the rescale by exp(m_old - m_new) is folded into the load of o.
// The softmax between the two is vectorised over the block's keys. Widths that are not
// multiples of 8 or 16 (small test shapes) use masked loads and stores.
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

#define MLA_INLINE_AVX2 MLA_TARGET_AVX2 inline __attribute__((always_inline))

constexpr int kPanel = 16;        // columns per VP panel
constexpr int kPrefetchRows = 4;  // cache rows requested ahead while converting

int64_t RopeStride(int rope) { return (rope + 7) / 8 * 8; }
int64_t Panels(int latent) { return (latent + kPanel - 1) / kPanel; }
// Floats of the panel part, which the rope rows follow.
int64_t PanelFloats(int latent) { return Panels(latent) * kMlaKeyBlock * kPanel; }

int64_t BlockFloatsAvx2(int width, int latent) {
  return PanelFloats(latent) + kMlaKeyBlock * RopeStride(width - latent);
}

MLA_TARGET_AVX2 void ConvertKeysAvx2(const bf16_t* const* rows, int nk, int width, int latent,
                                     float* block) {
  const int rope = width - latent;
  const int64_t ldr = RopeStride(rope);
  float* ropes = block + PanelFloats(latent);
  const int full_panels = latent / kPanel;
  const int row_bytes = width * static_cast<int>(sizeof(bf16_t));
  for (int k = 0; k < nk; ++k) {
    // With few heads this loop is what waits for DRAM: ask for a row a few ahead so that
    // its lines are in flight while this one converts.
    if (k + kPrefetchRows < nk) {
      const char* ahead = reinterpret_cast<const char*>(rows[k + kPrefetchRows]);
      for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
    }
    const bf16_t* src = rows[k];
    for (int j = 0; j < full_panels; ++j) {
      float* dst = block + (j * kMlaKeyBlock + k) * kPanel;
      _mm256_store_ps(dst, LoadBf16(src + j * kPanel));
      _mm256_store_ps(dst + 8, LoadBf16(src + j * kPanel + 8));
    }
    if (full_panels * kPanel < latent) {
      float* dst = block + (full_panels * kMlaKeyBlock + k) * kPanel;
      for (int c = 0; c < kPanel; ++c) {
        const int col = full_panels * kPanel + c;
        dst[c] = col < latent ? Bf16ToFloat(src[col]) : 0.0f;
      }
    }
    float* rope_row = ropes + k * ldr;
    int r = 0;
    for (; r + 8 <= rope; r += 8) _mm256_store_ps(rope_row + r, LoadBf16(src + latent + r));
    for (; r < rope; ++r) rope_row[r] = Bf16ToFloat(src[latent + r]);
    for (; r < ldr; ++r) rope_row[r] = 0.0f;
  }
}

// acc[h·kK + k] += q_h[0 .. 8) · key_k[0 .. 8) for the kK keys at `keys` (8-float slices
// `stride` floats apart); the query slice is masked to `mask` when kMasked.
template <int kH, int kK, bool kMasked>
MLA_INLINE_AVX2 void DotStep(const float* q, int q_stride, const float* keys, int64_t stride,
                             __m256i mask, __m256* acc) {
  __m256 kv[kK];
  for (int k = 0; k < kK; ++k) kv[k] = _mm256_load_ps(keys + k * stride);
  for (int h = 0; h < kH; ++h) {
    const __m256 qv = kMasked ? _mm256_maskload_ps(q + h * q_stride, mask)
                              : _mm256_loadu_ps(q + h * q_stride);
    for (int k = 0; k < kK; ++k) acc[h * kK + k] = _mm256_fmadd_ps(qv, kv[k], acc[h * kK + k]);
  }
}

// scores[h, k0 + k] = scale · q_h · key_{k0+k} for h < kH, k < kK.
template <int kH, int kK>
MLA_INLINE_AVX2 void ScoreTile(const MlaTileArgs& a, int k0) {
  __m256 acc[kH * kK];
  for (int i = 0; i < kH * kK; ++i) acc[i] = _mm256_setzero_ps();
  const int latent = a.latent;
  const int rope = a.width - latent;
  const int width = a.width;
  const __m256i all = _mm256_set1_epi32(-1);
  // Latent: whole panels, then the zero-padded last one with the query masked to L.
  const int full_panels = latent / kPanel;
  // One 8-column half panel per step: two DotSteps per iteration make GCC run out of
  // registers and reload the keys from memory for every FMA.
  for (int half = 0; half < 2 * full_panels; ++half) {
    const float* keys = a.block + ((half >> 1) * kMlaKeyBlock + k0) * kPanel + (half & 1) * 8;
    DotStep<kH, kK, false>(a.q + half * 8, width, keys, kPanel, all, acc);
  }
  if (full_panels * kPanel < latent) {
    const int col = full_panels * kPanel;
    const float* keys = a.block + (full_panels * kMlaKeyBlock + k0) * kPanel;
    DotStep<kH, kK, true>(a.q + col, width, keys, kPanel, LaneMask(latent - col), acc);
    DotStep<kH, kK, true>(a.q + col + 8, width, keys + 8, kPanel, LaneMask(latent - col - 8),
                          acc);
  }
  // Rope: rows of ldr floats.
  const int64_t ldr = RopeStride(rope);
  const float* ropes = a.block + PanelFloats(latent) + k0 * ldr;
  int r = 0;
  for (; r + 8 <= rope; r += 8) {
    DotStep<kH, kK, false>(a.q + latent + r, width, ropes + r, ldr, all, acc);
  }
  if (r < rope) {
    DotStep<kH, kK, true>(a.q + latent + r, width, ropes + r, ldr, LaneMask(rope - r), acc);
  }
  constexpr int kSums = kH * kK;
  constexpr int kQuads = kSums / 4 * 4;
  alignas(16) float sums[kSums];
  for (int i = 0; i < kQuads; i += 4) {
    _mm_store_ps(sums + i, HorizontalSum4(acc[i], acc[i + 1], acc[i + 2], acc[i + 3]));
  }
  for (int i = kQuads; i < kSums; ++i) sums[i] = HorizontalSum(acc[i]);
  const float scale = a.scale;
  for (int h = 0; h < kH; ++h) {
    for (int k = 0; k < kK; ++k) a.scores[h * kMlaKeyBlock + k0 + k] = sums[h * kK + k] * scale;
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

// o[h, 16·j0 .. 16·(j0 + kDT)) = corr_h · o + Σ_k p[h, k] · c_k over kDT panels. With
// kMasked (one panel, the last of a latent width that is not a multiple of 16) only the
// columns below `latent` are read and written.
template <int kH, int kDT, bool kMasked>
MLA_INLINE_AVX2 void ValueTile(const MlaTileArgs& a, const float* panels, const float* corr,
                               int nk, int j0) {
  constexpr int kV = 2 * kDT;
  __m256i mask[2] = {_mm256_set1_epi32(-1), _mm256_set1_epi32(-1)};
  if (kMasked) {
    mask[0] = LaneMask(a.latent - j0 * kPanel);
    mask[1] = LaneMask(a.latent - j0 * kPanel - 8);
  }
  __m256 acc[kH][kV];
  for (int h = 0; h < kH; ++h) {
    const __m256 c = _mm256_set1_ps(corr[h]);
    for (int v = 0; v < kV; ++v) {
      const float* o = a.o + h * a.latent + j0 * kPanel + 8 * v;
      acc[h][v] = _mm256_mul_ps(c, kMasked ? _mm256_maskload_ps(o, mask[v]) : _mm256_loadu_ps(o));
    }
  }
  const float* values = panels + j0 * kMlaKeyBlock * kPanel;
  for (int k = 0; k < nk; ++k) {
    __m256 val[kV];
    for (int v = 0; v < kV; ++v) {
      val[v] = _mm256_load_ps(values + ((v / 2) * kMlaKeyBlock + k) * kPanel + 8 * (v % 2));
    }
    for (int h = 0; h < kH; ++h) {
      const __m256 pk = _mm256_broadcast_ss(a.scores + h * kMlaKeyBlock + k);
      for (int v = 0; v < kV; ++v) acc[h][v] = _mm256_fmadd_ps(pk, val[v], acc[h][v]);
    }
  }
  for (int h = 0; h < kH; ++h) {
    for (int v = 0; v < kV; ++v) {
      float* o = a.o + h * a.latent + j0 * kPanel + 8 * v;
      if (kMasked) {
        _mm256_maskstore_ps(o, mask[v], acc[h][v]);
      } else {
        _mm256_storeu_ps(o, acc[h][v]);
      }
    }
  }
}

template <int kH>
MLA_TARGET_AVX2 void Values(const MlaTileArgs& a, const float* corr, int nk) {
  constexpr int kDT = kH == 1 ? 4 : kH == 2 ? 2 : 1;
  const float* panels = a.block;
  const int full = a.latent / kPanel;
  int j = 0;
  for (; j + kDT <= full; j += kDT) ValueTile<kH, kDT, false>(a, panels, corr, nk, j);
  for (; j < full; ++j) ValueTile<kH, 1, false>(a, panels, corr, nk, j);
  if (full * kPanel < a.latent) ValueTile<kH, 1, true>(a, panels, corr, nk, full);
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

constexpr MlaKernelOps kAvx2Ops = {BlockFloatsAvx2, ConvertKeysAvx2, AttendTileAvx2};

}  // namespace

const MlaKernelOps* MlaKernelOpsAvx2() { return &kAvx2Ops; }

}  // namespace mla::cpu::internal

#else  // !MLA_HAVE_AVX2_KERNELS

namespace mla::cpu::internal {
const MlaKernelOps* MlaKernelOpsAvx2() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
