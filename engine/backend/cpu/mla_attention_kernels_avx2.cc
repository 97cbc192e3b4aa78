// AVX2 + FMA MLA inner loops.
//
// Converted path, per call: up to kMlaTileVectors query vectors × one block of up to 48
// keys, converted to fp32 once per block (each cache value is written once):
//   VP [ceil(L/16)][48][16]: the latent c in 16-column panels (zero past L),
//   RP [48][ldr]: k_pe rows, ldr = R rounded up to 8 (zero padded).
// scores: dot products over the panels and then the rope rows, register tiles of
//   4 vectors × 3 keys (12 accumulators): each 8-float slice of a key is loaded once for
//   4 vectors, each slice of a query once for 3 keys; the sums are reduced 4 at a time.
//   The 3 keys of one panel are contiguous (192 bytes).
// output: o[t, :] += Σ_k p[t, k]·c_k as outer products, 4 vectors × 16 columns in
//   registers, 2 panel loads + 4 broadcasts per 8 FMAs, each panel read contiguously;
//   the rescale by exp(m_old - m_new) is folded into the load of o.
// The softmax between the two is vectorised over the block's keys. Widths that are not
// multiples of 8 or 16 (small test shapes) use masked loads and stores. The next block's
// rows are prefetched a few lines per score step.
//
// Direct path (1-3 query vectors, see "Direct path" below): the same arithmetic straight
// from the bf16 rows.
//
// FP8 rows (cache_row.h) are converted into the same panels: 8 codes at a time widened to
// 32-bit lanes and rebuilt as floats by bit placement (below), times the group's scale.
//
// Every loop over a register tile carries "#pragma GCC unroll": without full unrolling
// (-O2 does not do it by itself) the accumulator arrays live in memory and the kernels
// run about three times slower.
#include "engine/backend/cpu/mla_attention_kernels.h"
#include "engine/backend/cpu/mla_attention_softmax_avx2.h"
#include "engine/backend/cpu/simd_avx2.h"

#ifdef MLA_HAVE_AVX2_KERNELS

#include <algorithm>
#include <cstring>

#include "engine/kv_cache/cache_row.h"

namespace mla::cpu::internal {
namespace {

using avx2::LoadBf16;
using avx2_softmax::LaneMask;
using avx2_softmax::SoftmaxRow;

#define MLA_INLINE_AVX2 MLA_TARGET_AVX2 inline __attribute__((always_inline))

constexpr int kPanel = 16;         // columns per VP panel
constexpr int kPrefetchRows = 4;   // cache rows requested ahead while converting
constexpr int kPrefetchKeys = 16;  // direct path: keys requested ahead of the scores

int64_t RopeStride(int rope) { return (rope + 7) / 8 * 8; }
int64_t Panels(int latent) { return (latent + kPanel - 1) / kPanel; }
// Floats of the panel part, which the rope rows follow.
int64_t PanelFloats(int latent) { return Panels(latent) * kMlaKeyBlock * kPanel; }

int64_t BlockFloatsAvx2(int width, int latent) {
  return PanelFloats(latent) + kMlaKeyBlock * RopeStride(width - latent);
}

MLA_TARGET_AVX2 void ConvertKeysAvx2(const uint8_t* const* rows, int nk, int width, int latent,
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
    const bf16_t* src = reinterpret_cast<const bf16_t*>(rows[k]);
    for (int j = 0; j < full_panels; ++j) {
      float* dst = block + (j * kMlaKeyBlock + k) * kPanel;
      _mm256_store_ps(dst, LoadBf16(src + j * kPanel));
      _mm256_store_ps(dst + 8, LoadBf16(src + j * kPanel + 8));
    }
    if (full_panels * kPanel < latent) {
      float* dst = block + (full_panels * kMlaKeyBlock + k) * kPanel;
#pragma GCC unroll 16
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

// Eight e4m3 codes to fp32 values (before the scale). The code's sign goes to bit 31 and
// its 7 exponent-and-mantissa bits to bits 20..26: read as fp32 that is the e4m3 value
// times 2^-120 (exponent bias 127 instead of 7), so one exact multiplication by 2^120
// fixes normal and subnormal codes alike (a subnormal code is an fp32 denormal there).
// The NaN codes 0x7f/0xff read as ±480: the quantizer never writes them, and a NaN scale
// (non-finite input, or poisoned memory) still makes the row NaN.
MLA_TARGET_AVX2 inline __m256 DecodeFp8x8(const uint8_t* codes) {
  const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes)));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x80)), 24);
  const __m256i rest = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7f)), 20);
  const __m256 f = _mm256_castsi256_ps(_mm256_or_si256(sign, rest));
  return _mm256_mul_ps(f, _mm256_set1_ps(0x1p120f));
}

MLA_TARGET_AVX2 void ConvertKeysFp8Avx2(const uint8_t* const* rows, int nk, int width, int latent,
                                        float* block) {
  const int rope = width - latent;
  const int64_t ldr = RopeStride(rope);
  float* ropes = block + PanelFloats(latent);
  const int full_panels = latent / kPanel;
  constexpr int kPanelsPerGroup = kFp8ScaleGroup / kPanel;  // a panel never spans two groups
  static_assert(kFp8ScaleGroup % kPanel == 0);
  const int row_bytes = static_cast<int>(CacheRowBytes(CacheDType::kFp8E4M3, latent, rope));
  for (int k = 0; k < nk; ++k) {
    if (k + kPrefetchRows < nk) {
      const char* ahead = reinterpret_cast<const char*>(rows[k + kPrefetchRows]);
      for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
    }
    const uint8_t* src = rows[k];
    const uint8_t* scales = src + latent;
    for (int j = 0; j < full_panels; ++j) {
      float scale;
      std::memcpy(&scale, scales + 4 * (j / kPanelsPerGroup), sizeof(scale));
      const __m256 s = _mm256_set1_ps(scale);
      float* dst = block + (j * kMlaKeyBlock + k) * kPanel;
      _mm256_store_ps(dst, _mm256_mul_ps(DecodeFp8x8(src + j * kPanel), s));
      _mm256_store_ps(dst + 8, _mm256_mul_ps(DecodeFp8x8(src + j * kPanel + 8), s));
    }
    if (full_panels * kPanel < latent) {  // the zero-padded last panel, value by value
      float scale;
      std::memcpy(&scale, scales + 4 * (full_panels / kPanelsPerGroup), sizeof(scale));
      float* dst = block + (full_panels * kMlaKeyBlock + k) * kPanel;
      for (int c = 0; c < kPanel; ++c) {
        const int col = full_panels * kPanel + c;
        dst[c] = col < latent ? Fp8E4M3ToFloat(src[col]) * scale : 0.0f;
      }
    }
    const bf16_t* pe = reinterpret_cast<const bf16_t*>(scales + 4 * Fp8ScaleGroups(latent));
    float* rope_row = ropes + k * ldr;
    int r = 0;
    for (; r + 8 <= rope; r += 8) _mm256_store_ps(rope_row + r, LoadBf16(pe + r));
    for (; r < rope; ++r) rope_row[r] = Bf16ToFloat(pe[r]);
    for (; r < ldr; ++r) rope_row[r] = 0.0f;
  }
}

// acc[h·kK + k] += q_h[0 .. 8) · key_k[0 .. 8) for the kK keys at `keys` (8-float slices
// `stride` floats apart); the query slice is masked to `mask` when kMasked.
template <int kH, int kK, bool kMasked>
MLA_INLINE_AVX2 void DotStep(const float* q, int q_stride, const float* keys, int64_t stride,
                             __m256i mask, __m256* acc) {
  __m256 kv[kK];
#pragma GCC unroll 16
  for (int k = 0; k < kK; ++k) kv[k] = _mm256_load_ps(keys + k * stride);
#pragma GCC unroll 16
  for (int h = 0; h < kH; ++h) {
    const __m256 qv =
        kMasked ? _mm256_maskload_ps(q + h * q_stride, mask) : _mm256_loadu_ps(q + h * q_stride);
#pragma GCC unroll 16
    for (int k = 0; k < kK; ++k) acc[h * kK + k] = _mm256_fmadd_ps(qv, kv[k], acc[h * kK + k]);
  }
}

// scores[h, k0 + k] = scale · q_h · key_{k0+k} for h < kH, k < kK.
template <int kH, int kK>
MLA_INLINE_AVX2 void ScoreTile(const MlaTileArgs& a, const float* q, float* scores, int k0) {
  __m256 acc[kH * kK];
#pragma GCC unroll 16
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
    DotStep<kH, kK, false>(q + half * 8, width, keys, kPanel, all, acc);
  }
  if (full_panels * kPanel < latent) {
    const int col = full_panels * kPanel;
    const float* keys = a.block + (full_panels * kMlaKeyBlock + k0) * kPanel;
    DotStep<kH, kK, true>(q + col, width, keys, kPanel, LaneMask(latent - col), acc);
    DotStep<kH, kK, true>(q + col + 8, width, keys + 8, kPanel, LaneMask(latent - col - 8), acc);
  }
  // Rope: rows of ldr floats.
  const int64_t ldr = RopeStride(rope);
  const float* ropes = a.block + PanelFloats(latent) + k0 * ldr;
  int r = 0;
  for (; r + 8 <= rope; r += 8) {
    DotStep<kH, kK, false>(q + latent + r, width, ropes + r, ldr, all, acc);
  }
  if (r < rope) {
    DotStep<kH, kK, true>(q + latent + r, width, ropes + r, ldr, LaneMask(rope - r), acc);
  }
  constexpr int kSums = kH * kK;
  alignas(16) float sums[kSums];
  avx2::HorizontalSums<kSums>(acc, sums);
  const float scale = a.scale;
#pragma GCC unroll 16
  for (int h = 0; h < kH; ++h) {
#pragma GCC unroll 16
    for (int k = 0; k < kK; ++k) scores[h * kMlaKeyBlock + k0 + k] = sums[h * kK + k] * scale;
  }
}

// Issues the prefetches of MlaTileArgs::prefetch_begin .. prefetch_end a few at a time.
class LinePrefetcher {
 public:
  LinePrefetcher(const MlaTileArgs& a, int64_t steps)
      : rows_(a.rows + a.nk),
        row_lines_((a.row_bytes + 63) / 64),
        row_(a.prefetch_begin / row_lines_),
        line_(a.prefetch_begin % row_lines_),
        left_(a.prefetch_end - a.prefetch_begin),
        per_step_(steps > 0 ? (left_ + steps - 1) / steps : left_) {}

  void Step() {
    for (int64_t i = 0; i < per_step_ && left_ > 0; ++i, --left_) {
      _mm_prefetch(reinterpret_cast<const char*>(rows_[row_]) + 64 * line_, _MM_HINT_T1);
      if (++line_ == row_lines_) {
        line_ = 0;
        ++row_;
      }
    }
  }

 private:
  const uint8_t* const* rows_;
  int64_t row_lines_;
  int64_t row_;
  int64_t line_;
  int64_t left_;
  int64_t per_step_;
};

// Scores of kH vectors (one tile) over keys [0, nk). Tiles outside, keys inside: the
// tile's queries stay in L1 while the keys stream from L2 (keys outside would keep the
// keys in L1 instead, but then all the group's queries stream, which measured slower).
template <int kH>
MLA_TARGET_AVX2 void TileScores(const MlaTileArgs& a, const float* q, float* scores, int nk,
                                LinePrefetcher& prefetcher) {
  int k0 = 0;
  for (; k0 + 3 <= nk; k0 += 3) {
    prefetcher.Step();
    ScoreTile<kH, 3>(a, q, scores, k0);
  }
  for (; k0 < nk; ++k0) ScoreTile<kH, 1>(a, q, scores, k0);
}

MLA_TARGET_AVX2 void Scores(const MlaTileArgs& a, int nk) {
  const int tiles = a.nqv / 4;
  LinePrefetcher prefetcher(a, ((a.nqv + 3) / 4) * (nk / 3));
  for (int t = 0; t < tiles; ++t) {
    TileScores<4>(a, a.q + 4 * t * a.width, a.scores + 4 * t * kMlaKeyBlock, nk, prefetcher);
  }
  const float* q = a.q + 4 * tiles * a.width;
  float* scores = a.scores + 4 * tiles * kMlaKeyBlock;
  switch (a.nqv % 4) {
    case 1:
      TileScores<1>(a, q, scores, nk, prefetcher);
      break;
    case 2:
      TileScores<2>(a, q, scores, nk, prefetcher);
      break;
    case 3:
      TileScores<3>(a, q, scores, nk, prefetcher);
      break;
    default:
      break;
  }
  prefetcher.Step();  // whatever rounding left over (none when nk >= 3)
}

// o[h, 16·j .. 16·j + 16) = corr_h · o + Σ_k p[h, k] · c_k[16·j ..] for kH vectors. With
// kMasked (the last panel of a latent width that is not a multiple of 16) only the
// columns below `latent` are read and written.
template <int kH, bool kMasked>
MLA_INLINE_AVX2 void ValueTile(const MlaTileArgs& a, const float* panels, const float* corr,
                               const float* scores, float* out, int nk, int j0) {
  constexpr int kV = 2;
  __m256i mask[2] = {_mm256_set1_epi32(-1), _mm256_set1_epi32(-1)};
  if (kMasked) {
    mask[0] = LaneMask(a.latent - j0 * kPanel);
    mask[1] = LaneMask(a.latent - j0 * kPanel - 8);
  }
  __m256 acc[kH][kV];
#pragma GCC unroll 16
  for (int h = 0; h < kH; ++h) {
    const __m256 c = _mm256_set1_ps(corr[h]);
#pragma GCC unroll 16
    for (int v = 0; v < kV; ++v) {
      const float* o = out + h * a.latent + j0 * kPanel + 8 * v;
      acc[h][v] = _mm256_mul_ps(c, kMasked ? _mm256_maskload_ps(o, mask[v]) : _mm256_loadu_ps(o));
    }
  }
  const float* values = panels + j0 * kMlaKeyBlock * kPanel;
  for (int k = 0; k < nk; ++k) {
    __m256 val[kV];
#pragma GCC unroll 16
    for (int v = 0; v < kV; ++v) {
      val[v] = _mm256_load_ps(values + k * kPanel + 8 * v);
    }
#pragma GCC unroll 16
    for (int h = 0; h < kH; ++h) {
      const __m256 pk = _mm256_broadcast_ss(scores + h * kMlaKeyBlock + k);
#pragma GCC unroll 16
      for (int v = 0; v < kV; ++v) acc[h][v] = _mm256_fmadd_ps(pk, val[v], acc[h][v]);
    }
  }
#pragma GCC unroll 16
  for (int h = 0; h < kH; ++h) {
#pragma GCC unroll 16
    for (int v = 0; v < kV; ++v) {
      float* o = out + h * a.latent + j0 * kPanel + 8 * v;
      if (kMasked) {
        _mm256_maskstore_ps(o, mask[v], acc[h][v]);
      } else {
        _mm256_storeu_ps(o, acc[h][v]);
      }
    }
  }
}

// One panel of output columns for all the group's vectors (tiles of 4 inside), so the
// panel (nk × 64 bytes) is read from L2 once.
template <bool kMasked>
MLA_TARGET_AVX2 void ValuesForPanel(const MlaTileArgs& a, const float* corr, int nk, int j) {
  const int tiles = a.nqv / 4;
  for (int t = 0; t < tiles; ++t) {
    ValueTile<4, kMasked>(a, a.block, corr + 4 * t, a.scores + 4 * t * kMlaKeyBlock,
                          a.o + 4 * t * a.latent, nk, j);
  }
  const float* c = corr + 4 * tiles;
  const float* scores = a.scores + 4 * tiles * kMlaKeyBlock;
  float* out = a.o + 4 * tiles * a.latent;
  switch (a.nqv % 4) {
    case 1:
      return ValueTile<1, kMasked>(a, a.block, c, scores, out, nk, j);
    case 2:
      return ValueTile<2, kMasked>(a, a.block, c, scores, out, nk, j);
    case 3:
      return ValueTile<3, kMasked>(a, a.block, c, scores, out, nk, j);
    default:
      return;
  }
}

MLA_TARGET_AVX2 void Values(const MlaTileArgs& a, const float* corr, int nk) {
  const int full = a.latent / kPanel;
  for (int j = 0; j < full; ++j) ValuesForPanel<false>(a, corr, nk, j);
  if (full * kPanel < a.latent) ValuesForPanel<true>(a, corr, nk, full);
}

MLA_TARGET_AVX2 void AttendTileAvx2(const MlaTileArgs& a) {
  int nk = 0;  // Keys any vector of the group sees: nothing past them is computed.
  for (int t = 0; t < a.nqv; ++t) nk = std::max(nk, a.nvalid[t]);
  if (nk == 0) return;
  Scores(a, nk);
  float corr[kMlaTileVectors];
  for (int t = 0; t < a.nqv; ++t) corr[t] = SoftmaxRow(a, t, nk);
  Values(a, corr, nk);
}

// ---- Direct path: bf16 cache rows, converted in registers. ----

// Row k of the args as the bf16 values it holds (the direct path runs on bf16 caches only).
MLA_INLINE_AVX2 const bf16_t* Bf16Row(const MlaTileArgs& a, int k) {
  return reinterpret_cast<const bf16_t*>(a.rows[k]);
}
//
// A 32-byte load holds 16 bf16 values; as eight 32-bit lanes, lane i holds columns 2i
// (low half) and 2i + 1 (high half). Shifting left by 16 gives the even columns as fp32,
// masking the low half off the odd ones: two instructions per 16 values, where widening
// takes four. The columns come out as [8 even | 8 odd] per 16-column panel, so the
// queries are put into that order once per call and the output accumulators are
// shuffled in and out of it around the loop over the keys.

MLA_INLINE_AVX2 void SplitPanel(const bf16_t* p, __m256* even, __m256* odd) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  *even = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
  *odd = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32(-65536)));
}

// 16 floats in column order -> [even | odd].
MLA_INLINE_AVX2 void Deinterleave(const float* p, __m256* even, __m256* odd) {
  const __m256 a = _mm256_loadu_ps(p);
  const __m256 b = _mm256_loadu_ps(p + 8);
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4..
  const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

// [even | odd] -> 16 floats in column order.
MLA_INLINE_AVX2 void Interleave(__m256 even, __m256 odd, float* p) {
  const __m256 lo = _mm256_unpacklo_ps(even, odd);  // e0 o0 e1 o1 | e4 o4 e5 o5
  const __m256 hi = _mm256_unpackhi_ps(even, odd);  // e2 o2 e3 o3 | e6 o6 e7 o7
  _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

// scores[t, k0 + k] = scale · q_t · row_{k0+k}; qp holds the queries in panel order.
// This is the loop that first touches each row, so it also prefetches the rows
// kPrefetchKeys ahead (into the next block when there is one), one line of each per two
// panels: spread out, so that no burst of prefetches fills the miss buffers.
template <int kQ, int kK>
MLA_INLINE_AVX2 void RowScoreTile(const MlaTileArgs& a, const float* qp, int k0) {
  __m256 acc[kQ * kK];
#pragma GCC unroll 16
  for (int i = 0; i < kQ * kK; ++i) acc[i] = _mm256_setzero_ps();
  // Rows to prefetch; past the last one, repeat it (or, with none ahead, this tile's own
  // rows, already cached): harmless, and it keeps the loop free of branches.
  const bf16_t* prefetch[kK];
  const int ahead = a.rows_ahead - (k0 + kPrefetchKeys);
#pragma GCC unroll 16
  for (int k = 0; k < kK; ++k) {
    prefetch[k] =
        ahead > 0 ? Bf16Row(a, k0 + kPrefetchKeys + std::min(k, ahead - 1)) : Bf16Row(a, k0 + k);
  }
  const int width = a.width;
  auto panel = [&](int c) MLA_TARGET_AVX2 __attribute__((always_inline)) {
#pragma GCC unroll 16
    for (int k = 0; k < kK; ++k) {
      __m256 even, odd;
      SplitPanel(Bf16Row(a, k0 + k) + c, &even, &odd);
#pragma GCC unroll 16
      for (int t = 0; t < kQ; ++t) {
        acc[t * kK + k] =
            _mm256_fmadd_ps(_mm256_load_ps(qp + t * width + c), even, acc[t * kK + k]);
        acc[t * kK + k] =
            _mm256_fmadd_ps(_mm256_load_ps(qp + t * width + c + 8), odd, acc[t * kK + k]);
      }
    }
  };
  int c = 0;
  for (; c + 2 * kPanel <= width; c += 2 * kPanel) {  // 2 panels = one 64-byte line of a row
#pragma GCC unroll 16
    for (int k = 0; k < kK; ++k)
      _mm_prefetch(reinterpret_cast<const char*>(prefetch[k] + c), _MM_HINT_T0);
    panel(c);
    panel(c + kPanel);
  }
  if (c < width) panel(c);
  constexpr int kSums = kQ * kK;
  alignas(16) float sums[kSums];
  avx2::HorizontalSums<kSums>(acc, sums);
#pragma GCC unroll 16
  for (int t = 0; t < kQ; ++t) {
#pragma GCC unroll 16
    for (int k = 0; k < kK; ++k) a.scores[t * kMlaKeyBlock + k0 + k] = sums[t * kK + k] * a.scale;
  }
}

// o[t, c0 .. c0 + 16·kPC) = corr_t · o + Σ_k p[t, k] · row_k[c0 ..].
template <int kQ, int kPC>
MLA_INLINE_AVX2 void RowValueTile(const MlaTileArgs& a, const float* corr, int nk, int c0) {
  __m256 acc[kQ][2 * kPC];
#pragma GCC unroll 16
  for (int t = 0; t < kQ; ++t) {
    const __m256 scale = _mm256_set1_ps(corr[t]);
#pragma GCC unroll 16
    for (int c = 0; c < kPC; ++c) {
      Deinterleave(a.o + t * a.latent + c0 + c * kPanel, &acc[t][2 * c], &acc[t][2 * c + 1]);
      acc[t][2 * c] = _mm256_mul_ps(acc[t][2 * c], scale);
      acc[t][2 * c + 1] = _mm256_mul_ps(acc[t][2 * c + 1], scale);
    }
  }
  for (int k = 0; k < nk; ++k) {
    __m256 p[kQ];
#pragma GCC unroll 16
    for (int t = 0; t < kQ; ++t) p[t] = _mm256_broadcast_ss(a.scores + t * kMlaKeyBlock + k);
#pragma GCC unroll 16
    for (int c = 0; c < kPC; ++c) {
      __m256 even, odd;
      SplitPanel(Bf16Row(a, k) + c0 + c * kPanel, &even, &odd);
#pragma GCC unroll 16
      for (int t = 0; t < kQ; ++t) {
        acc[t][2 * c] = _mm256_fmadd_ps(p[t], even, acc[t][2 * c]);
        acc[t][2 * c + 1] = _mm256_fmadd_ps(p[t], odd, acc[t][2 * c + 1]);
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < kQ; ++t) {
#pragma GCC unroll 16
    for (int c = 0; c < kPC; ++c) {
      Interleave(acc[t][2 * c], acc[t][2 * c + 1], a.o + t * a.latent + c0 + c * kPanel);
    }
  }
}

template <int kQ>
MLA_TARGET_AVX2 void AttendRowsT(const MlaTileArgs& a) {
  int nk = 0;
#pragma GCC unroll 16
  for (int t = 0; t < kQ; ++t) nk = std::max(nk, a.nvalid[t]);
  if (nk == 0) return;
  float* qp = a.q_scratch;
#pragma GCC unroll 16
  for (int t = 0; t < kQ; ++t) {
    for (int c = 0; c < a.width; c += kPanel) {
      __m256 even, odd;
      Deinterleave(a.q + t * a.width + c, &even, &odd);
      _mm256_store_ps(qp + t * a.width + c, even);
      _mm256_store_ps(qp + t * a.width + c + 8, odd);
    }
  }
  constexpr int kK = kQ == 1 ? 8 : 4;
  int k0 = 0;
  for (; k0 + kK <= nk; k0 += kK) RowScoreTile<kQ, kK>(a, qp, k0);
  for (; k0 < nk; ++k0) RowScoreTile<kQ, 1>(a, qp, k0);
  float corr[kQ];
#pragma GCC unroll 16
  for (int t = 0; t < kQ; ++t) corr[t] = SoftmaxRow(a, t, nk);
  constexpr int kPC = kQ == 1 ? 4 : kQ == 2 ? 2 : 1;  // panels per output tile
  int c0 = 0;
  for (; c0 + kPC * kPanel <= a.latent; c0 += kPC * kPanel) RowValueTile<kQ, kPC>(a, corr, nk, c0);
  for (; c0 < a.latent; c0 += kPanel) RowValueTile<kQ, 1>(a, corr, nk, c0);
}

MLA_TARGET_AVX2 void AttendRowsAvx2(const MlaTileArgs& a) {
  switch (a.nqv) {
    case 1:
      return AttendRowsT<1>(a);
    case 2:
      return AttendRowsT<2>(a);
    default:
      return AttendRowsT<3>(a);
  }
}

constexpr MlaKernelOps kAvx2Ops = {BlockFloatsAvx2, ConvertKeysAvx2, ConvertKeysFp8Avx2,
                                   AttendTileAvx2, AttendRowsAvx2};

}  // namespace

const MlaKernelOps* MlaKernelOpsAvx2() { return &kAvx2Ops; }

}  // namespace mla::cpu::internal

#else  // !MLA_HAVE_AVX2_KERNELS

namespace mla::cpu::internal {
const MlaKernelOps* MlaKernelOpsAvx2() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
