// AVX512_BF16 MLA attention for the opt-in bf16 level (cpu_features.h, kAvx512Bf16):
// scores and the weighted sum of the latents with vdpbf16ps, 32 multiply-adds per
// instruction where AVX2's FMA does 8. The cache already holds bf16 keys; what this level
// rounds is the query (once per call) and the softmax weights (once per key block), both
// to nearest even. Products of bf16 values are exact in fp32 and every sum, the running
// max and the softmax's normaliser stay fp32.
//
// Converted path only: with many heads each key block is reused by all of them, which is
// where the doubled multiply rate pays. convert_keys writes two bf16 copies of a block:
//   KR [48][wp]: the rows as they are (latent then k_pe), zero-padded to wp = width
//     rounded up to 32 and to whole groups of 4 keys. Scores: 4 vectors × 4 keys per
//     register tile, 32 columns per step, 16 sums reduced at the end of the row.
//   VP [24][lp][2]: pairs of keys interleaved per column, lp = latent rounded up to 16,
//     the odd key's partner zero. vdpbf16ps multiplies a pair (p_2i, p_2i+1) of weights,
//     broadcast, by the pair (c_2i[d], c_2i+1[d]) of every column d and adds both
//     products to o[d]: the weighted sum needs no reduction across lanes.
// An FP8 cache is dequantized (code · group scale) and rounded to bf16 into the same
// layouts. The direct path (1-3 query vectors, bf16 caches) is AVX2's: it streams the
// cache once and is bound by DRAM, not by the multiplies. Widths above kMaxWidth stay on
// AVX2 (mla_attention.cc chooses).
#include "engine/backend/cpu/mla_attention_kernels.h"

#include "engine/backend/cpu/simd_avx512.h"  // first: see there

#include "engine/backend/cpu/mla_attention_softmax_avx2.h"
#include "engine/backend/cpu/simd_avx2.h"

#ifdef MLA_HAVE_AVX2_KERNELS

#include <algorithm>
#include <cstring>

#include "engine/kv_cache/cache_row.h"

#define MLA_INLINE_AVX512BF16 MLA_TARGET_AVX512BF16 inline __attribute__((always_inline))

namespace mla::cpu::internal {
namespace {

using avx2_softmax::SoftmaxRow;
using avx512::Mask16;
using avx512::RoundRowToBf16;

constexpr int kScoreH = 4;  // score tile: query vectors
constexpr int kScoreK = 4;  // score tile: keys
constexpr int kValueH = 4;  // value tile: query vectors
constexpr int kValueC = 4;  // value tile: 16-column chunks
static_assert(kMlaKeyBlock % kScoreK == 0 && kMlaKeyBlock % 2 == 0);
// A vector's bf16 softmax weights: RoundRowToBf16 writes whole 32-value groups.
constexpr int kPairStride = (kMlaKeyBlock + 31) / 32 * 32;
static_assert(kMlaTileVectors % kScoreH == 0 && kMlaTileVectors % kValueH == 0);

int64_t RowStride(int width) { return (width + 31) / 32 * 32; }    // wp
int64_t ValueStride(int latent) { return (latent + 15) / 16 * 16; }  // lp

// bf16 values of KR, then of VP.
int64_t KeyRowsValues(int width) { return kMlaKeyBlock * RowStride(width); }

int64_t BlockFloatsBf16(int width, int latent) {
  const int64_t values = KeyRowsValues(width) + kMlaKeyBlock * ValueStride(latent);
  return (values / 2 + 15) / 16 * 16;
}

// Zeroes the KR rows from nk up to the next whole score tile: a tile's padded keys get
// scores the softmax masks, but they must be finite numbers.
MLA_INLINE_AVX512BF16 void ZeroTileRows(int nk, int64_t wp, bf16_t* kr) {
  const int padded_keys = (nk + kScoreK - 1) / kScoreK * kScoreK;
  for (int k = nk; k < padded_keys; ++k) {
    std::memset(kr + k * wp, 0, static_cast<size_t>(wp * sizeof(bf16_t)));
  }
}

// VP from the block's own KR rows: per pair of keys, 32 columns of both interleaved.
// unpacklo/hi_epi16 interleave the low / high 4 columns of each 128-bit lane; with the
// 4-column groups g0..g7 permuted to lanes (g0 g4)(g1 g5)(g2 g6)(g3 g7) first, unpacklo
// yields columns 0-15 in order and unpackhi 16-31.
MLA_INLINE_AVX512BF16 void InterleavePairs(const bf16_t* kr, int nk, int64_t wp, int latent,
                                           int64_t lp, bf16_t* vp) {
  const __m512i order = _mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7);
  for (int k = 0; k < nk; k += 2) {
    const bf16_t* c0 = kr + k * wp;
    const bf16_t* c1 = k + 1 < nk ? c0 + wp : nullptr;
    bf16_t* dst = vp + (k / 2) * lp * 2;
    int64_t d = 0;
    for (; d + 32 <= latent; d += 32) {
      const __m512i a = _mm512_permutexvar_epi64(order, _mm512_loadu_si512(c0 + d));
      const __m512i b = c1 != nullptr
                            ? _mm512_permutexvar_epi64(order, _mm512_loadu_si512(c1 + d))
                            : _mm512_setzero_si512();
      _mm512_storeu_si512(dst + 2 * d, _mm512_unpacklo_epi16(a, b));
      _mm512_storeu_si512(dst + 2 * d + 32, _mm512_unpackhi_epi16(a, b));
    }
    for (; d < lp; ++d) {  // the tail and the zero padding, value by value
      dst[2 * d] = d < latent ? c0[d] : bf16_t{};
      dst[2 * d + 1] = d < latent && c1 != nullptr ? c1[d] : bf16_t{};
    }
  }
}

MLA_TARGET_AVX512BF16 void ConvertKeysBf16(const uint8_t* const* rows, int nk, int width,
                                           int latent, float* block) {
  const int64_t wp = RowStride(width);
  bf16_t* kr = reinterpret_cast<bf16_t*>(block);
  for (int k = 0; k < nk; ++k) {
    bf16_t* dst = kr + k * wp;
    std::memcpy(dst, rows[k], static_cast<size_t>(width) * sizeof(bf16_t));
    std::memset(dst + width, 0, static_cast<size_t>((wp - width) * sizeof(bf16_t)));
  }
  ZeroTileRows(nk, wp, kr);
  InterleavePairs(kr, nk, wp, latent, ValueStride(latent), kr + KeyRowsValues(width));
}

// Sixteen e4m3 codes to fp32 (before the scale), as the AVX2 kernels decode eight: the
// sign to bit 31 and the 7 exponent-and-mantissa bits to bits 20..26 make fp32 numbers
// 2^-120 times the value, normal and subnormal codes alike; one exact multiplication by
// 2^120 fixes them.
MLA_INLINE_AVX512BF16 __m512 DecodeFp8x16(const uint8_t* codes) {
  const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24);
  const __m512i rest = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x7f)), 20);
  return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(sign, rest)),
                       _mm512_set1_ps(0x1p120f));
}

// FP8 rows (cache_row.h): code · group scale in fp32, rounded to bf16 (the level's one
// extra rounding: 2^-9 relative, where the e4m3 code itself carries 2^-4).
MLA_TARGET_AVX512BF16 void ConvertKeysFp8Bf16(const uint8_t* const* rows, int nk, int width,
                                              int latent, float* block) {
  const int64_t wp = RowStride(width);
  const int rope = width - latent;
  bf16_t* kr = reinterpret_cast<bf16_t*>(block);
  static_assert(kFp8ScaleGroup % 32 == 0, "32 values never span two scale groups");
  for (int k = 0; k < nk; ++k) {
    const uint8_t* src = rows[k];
    const uint8_t* scales = src + latent;
    bf16_t* dst = kr + k * wp;
    auto scale_of = [&](int d) {
      float scale;
      std::memcpy(&scale, scales + 4 * (d / kFp8ScaleGroup), sizeof(scale));
      return scale;
    };
    int d = 0;
    for (; d + 32 <= latent; d += 32) {
      const __m512 s = _mm512_set1_ps(scale_of(d));
      const __m512 lo = _mm512_mul_ps(DecodeFp8x16(src + d), s);
      const __m512 hi = _mm512_mul_ps(DecodeFp8x16(src + d + 16), s);
      _mm512_storeu_si512(dst + d, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    for (; d < latent; ++d) dst[d] = FloatToBf16(Fp8E4M3ToFloat(src[d]) * scale_of(d));
    std::memcpy(dst + latent, scales + 4 * Fp8ScaleGroups(latent),
                static_cast<size_t>(rope) * sizeof(bf16_t));
    std::memset(dst + width, 0, static_cast<size_t>((wp - width) * sizeof(bf16_t)));
  }
  ZeroTileRows(nk, wp, kr);
  InterleavePairs(kr, nk, wp, latent, ValueStride(latent), kr + KeyRowsValues(width));
}

MLA_INLINE_AVX512BF16 __m512 Dot(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

// The sums of the 16 lanes of each of 16 vectors, transposed: lane 4·j + m of the result
// is the sum of acc[4·m + j]. Each step adds the two halves of a pair of vectors' lane
// groups and packs both into one vector (16 adds and 30 shuffles for 16 sums).
MLA_INLINE_AVX512BF16 __m512 ReduceLanes16(const __m512* acc) {
  __m512 v[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) v[i] = acc[i];
  // 256-bit halves: (a.lo + a.hi) in the low half, (b.lo + b.hi) in the high half.
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    const __m512 a = v[2 * i], b = v[2 * i + 1];
    const __m512 lo = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2));
    v[i] = _mm512_add_ps(lo, hi);
  }
  // 128-bit quarters.
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512 a = v[2 * i], b = v[2 * i + 1];
    const __m512 lo = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    v[i] = _mm512_add_ps(lo, hi);
  }
  // 64-bit pairs within 128 bits, then single lanes.
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {
    const __m512 a = v[2 * i], b = v[2 * i + 1];
    const __m512 lo = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    const __m512 hi = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    v[i] = _mm512_add_ps(lo, hi);
  }
  const __m512 lo = _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0));
  const __m512 hi = _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1));
  return _mm512_add_ps(lo, hi);
}

// scores[h, k0 + k] = scale · q_h · key_{k0 + k} for the 4 × 4 tile at (h0, k0).
MLA_INLINE_AVX512BF16 void ScoreTile(const MlaTileArgs& a, const bf16_t* q16, int64_t wp, int h0,
                                     int k0) {
  const bf16_t* kr = reinterpret_cast<const bf16_t*>(a.block) + k0 * wp;
  const bf16_t* q = q16 + h0 * wp;
  __m512 acc[kScoreH * kScoreK];
#pragma GCC unroll 16
  for (int i = 0; i < kScoreH * kScoreK; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t c = 0; c < wp; c += 32) {
    __m512i keys[kScoreK];
#pragma GCC unroll 4
    for (int k = 0; k < kScoreK; ++k) keys[k] = _mm512_loadu_si512(kr + k * wp + c);
#pragma GCC unroll 4
    for (int h = 0; h < kScoreH; ++h) {
      const __m512i qv = _mm512_loadu_si512(q + h * wp + c);
#pragma GCC unroll 4
      for (int k = 0; k < kScoreK; ++k) acc[h * kScoreK + k] = Dot(acc[h * kScoreK + k], qv, keys[k]);
    }
  }
  static_assert(kScoreH == 4 && kScoreK == 4, "ReduceLanes16 transposes a 4 x 4 tile");
  alignas(64) float sums[16];  // lane 4·k + h: vector h, key k
  _mm512_store_ps(sums, _mm512_mul_ps(ReduceLanes16(acc), _mm512_set1_ps(a.scale)));
#pragma GCC unroll 4
  for (int h = 0; h < kScoreH; ++h) {
#pragma GCC unroll 4
    for (int k = 0; k < kScoreK; ++k) a.scores[(h0 + h) * kMlaKeyBlock + k0 + k] = sums[4 * k + h];
  }
}

// o[h, 16·c0 .. 16·(c0 + chunks)) = corr_h · o + Σ_k p[h, k] · c_k for kValueH vectors
// whose output rows start at `o` (a.latent apart); `pairs` holds each vector's bf16
// weights, kPairStride apart.
template <bool kMasked>
MLA_INLINE_AVX512BF16 void ValueTile(const MlaTileArgs& a, float* o_rows, const float* corr,
                                     const bf16_t* pairs, int64_t lp, int npairs, int c0,
                                     int chunks) {
  const bf16_t* vp =
      reinterpret_cast<const bf16_t*>(a.block) + KeyRowsValues(a.width) + c0 * 32;
  __m512 acc[kValueH][kValueC];
  __mmask16 mask[kValueC];
#pragma GCC unroll 4
  for (int c = 0; c < kValueC; ++c) {
    const int left = a.latent - (c0 + c) * 16;
    mask[c] = kMasked ? Mask16(left) : __mmask16{0xffff};
  }
#pragma GCC unroll 4
  for (int h = 0; h < kValueH; ++h) {
    const __m512 scale = _mm512_set1_ps(corr[h]);
#pragma GCC unroll 4
    for (int c = 0; c < kValueC; ++c) {
      const float* o = o_rows + h * a.latent + (c0 + c) * 16;
      acc[h][c] = c < chunks ? _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(mask[c], o))
                             : _mm512_setzero_ps();
    }
  }
  for (int k = 0; k < npairs; ++k) {
    __m512i v[kValueC];
#pragma GCC unroll 4
    for (int c = 0; c < kValueC; ++c) {
      v[c] = c < chunks ? _mm512_loadu_si512(vp + k * lp * 2 + c * 32) : _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int h = 0; h < kValueH; ++h) {
      int32_t pair;
      std::memcpy(&pair, pairs + h * kPairStride + 2 * k, sizeof(pair));
      const __m512i p = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
      for (int c = 0; c < kValueC; ++c) acc[h][c] = Dot(acc[h][c], v[c], p);
    }
  }
#pragma GCC unroll 4
  for (int h = 0; h < kValueH; ++h) {
#pragma GCC unroll 4
    for (int c = 0; c < kValueC; ++c) {
      if (c < chunks) {
        _mm512_mask_storeu_ps(o_rows + h * a.latent + (c0 + c) * 16, mask[c], acc[h][c]);
      }
    }
  }
}

// The largest width this kernel keeps its rounded queries for on the stack.
constexpr int kMaxWidth = 1024 + 128;

MLA_TARGET_AVX512BF16 void AttendTileBf16(const MlaTileArgs& a) {
  int nk = 0;  // Keys any vector of the group sees: nothing past them is computed.
  for (int t = 0; t < a.nqv; ++t) nk = std::max(nk, a.nvalid[t]);
  if (nk == 0) return;
  const int64_t wp = RowStride(a.width);
  const int64_t lp = ValueStride(a.latent);
  // Queries rounded to bf16, again for every key block: 1 conversion per 48 of the
  // tile's multiply-adds (about 2%), where keeping them across blocks would need bf16
  // query scratch per work item from the driver. The last score tile's padding vectors
  // (up to a multiple of 4) are zero; their scores go to rows of a.scores past nqv, which has room for
  // kMlaTileVectors, and are never read.
  const int hv = (a.nqv + kScoreH - 1) / kScoreH * kScoreH;
  alignas(64) bf16_t q16[kMlaTileVectors * kMaxWidth];
  for (int t = 0; t < hv; ++t) {
    RoundRowToBf16(a.q + t * a.width, t < a.nqv ? a.width : 0, wp, q16 + t * wp);
  }
  for (int h0 = 0; h0 < hv; h0 += kScoreH) {
    for (int k0 = 0; k0 < nk; k0 += kScoreK) ScoreTile(a, q16, wp, h0, k0);
  }
  float corr[kMlaTileVectors] = {};
  for (int t = 0; t < a.nqv; ++t) corr[t] = SoftmaxRow(a, t, nk);
  // Weights to bf16 pairs: SoftmaxRow left zeros past nk (rounded up to 8), and the
  // padding vectors' weights are zero.
  const int npairs = (nk + 1) / 2;
  alignas(64) bf16_t pairs[kMlaTileVectors * kPairStride];
  for (int t = 0; t < hv; ++t) {
    RoundRowToBf16(a.scores + t * kMlaKeyBlock, t < a.nqv ? 2 * npairs : 0, kPairStride,
             pairs + t * kPairStride);
  }
  // The last group of vectors, when partly padding, works on a copy of its output rows
  // so that every store stays inside the caller's.
  const int chunks = static_cast<int>(lp / 16);
  const bool masked = lp != a.latent;
  alignas(64) float o_pad[kValueH * kMaxWidth];
  for (int h0 = 0; h0 < hv; h0 += kValueH) {
    const int real = std::min(kValueH, a.nqv - h0);
    float* o_rows = a.o + h0 * a.latent;
    if (real < kValueH) {
      std::fill(o_pad, o_pad + kValueH * a.latent, 0.0f);
      std::copy(o_rows, o_rows + real * a.latent, o_pad);
      o_rows = o_pad;
    }
    for (int c0 = 0; c0 < chunks; c0 += kValueC) {
      const int n = std::min(kValueC, chunks - c0);
      const bf16_t* p = pairs + h0 * kPairStride;
      if (masked && c0 + n == chunks) {
        ValueTile<true>(a, o_rows, corr + h0, p, lp, npairs, c0, n);
      } else {
        ValueTile<false>(a, o_rows, corr + h0, p, lp, npairs, c0, n);
      }
    }
    if (real < kValueH) std::copy(o_pad, o_pad + real * a.latent, a.o + h0 * a.latent);
  }
}

}  // namespace

const MlaKernelOps* MlaKernelOpsAvx512Bf16(int width) {
  const MlaKernelOps* avx2 = MlaKernelOpsAvx2();
  if (avx2 == nullptr || width > kMaxWidth) return nullptr;
  static const MlaKernelOps ops = {BlockFloatsBf16, ConvertKeysBf16, ConvertKeysFp8Bf16,
                                   AttendTileBf16, avx2->attend_rows};
  return &ops;
}

}  // namespace mla::cpu::internal

#else  // !MLA_HAVE_AVX2_KERNELS

namespace mla::cpu::internal {
const MlaKernelOps* MlaKernelOpsAvx512Bf16(int) { return nullptr; }
}  // namespace mla::cpu::internal

#endif
