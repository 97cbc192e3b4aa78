// AVX-512 fp32 GEMMs for the exact kAvx512 level: the AVX2 kernel's packed path (more
// than kDotMaxTokens tokens: prefill chunks) and dot tiles, with 512-bit FMAs. Every
// product and sum is an fp32 FMA as in the AVX2 kernel, in another order: exact to fp32
// rounding, so this level can be a default (on Intel CPUs: cpu_features.cc). Cores with
// two 512-bit FMA units do twice the AVX2 kernel's multiply-adds per cycle (measured
// 1.4-1.6x its GEMMs on a Xeon); Zen 4 splits a 512-bit FMA into two 256-bit halves, so
// there it cannot gain.
//
// Two to kDotMaxTokens tokens on bf16 weights (decode batches, the experts' few tokens)
// run 512-bit even/odd dot tiles (below); one token (bound by memory) and f32 weights stay
// on the AVX2 kernel.
//
// Packed path: two 16-row weight panels of kKc columns are converted to fp32 and
// transposed into [k][32] (32 KiB: L1 of a Xeon core, 48 KiB), then a 12-token × 32-row
// register tile (24 accumulators) runs over them: per column two panel loads and twelve
// broadcasts of x feed 24 FMAs.
#include "engine/backend/cpu/simd_avx512.h"  // first: see there

#include "engine/backend/cpu/gemm_bf16_panel.h"
#include "engine/backend/cpu/gemm_dot_loop.h"
#include "engine/backend/cpu/gemm_kernels.h"

#if defined(MLA_HAVE_AVX512_KERNELS)

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace mla::cpu::internal {
namespace {

using avx512::Mask16;

constexpr int64_t kDotMaxTokens = 32;  // At most this many: the AVX2 kernel's dot tiles.
constexpr int64_t kKc = 256;           // Panel depth: 256 × 32 rows × 4 B = 32 KiB of L1.
constexpr int kRows = 32;              // Rows per panel: two vectors of 16.
constexpr int kMicroTokens = 12;       // Register tile: 12 tokens × 32 rows.
constexpr int64_t kTokenBlock = 48 * kMicroTokens;  // 576 × kKc × 4 B of x: L2 (2 MiB on Xeons)

MLA_TARGET_AVX512F inline __m512 Load16(const float* p, __mmask16 mask) {
  return _mm512_maskz_loadu_ps(mask, p);
}
MLA_TARGET_AVX512F inline __m512 Load16(const bf16_t* p, __mmask16 mask) {
  // bf16 is the top half of an fp32: widen to dwords and shift into place.
  const __m256i h = _mm256_maskz_loadu_epi16(mask, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// panel[k * 32 + j] = w[row0 + j, col0 + k] as fp32 for k < RoundUp(kc, 16); rows j >=
// valid and columns k >= kc are zero.
template <typename T>
MLA_TARGET_AVX512F void PackPanel32(const T* w, int64_t w_stride, int64_t row0, int valid,
                                    int64_t col0, int64_t kc, float* panel) {
  for (int half = 0; half < 2; ++half) {
    const int rows_here = std::clamp(valid - 16 * half, 0, 16);
    const T* src = w + (row0 + 16 * half) * w_stride + col0;
    for (int64_t k = 0; k < kc; k += 16) {
      const __mmask16 mask = Mask16(kc - k);
      __m512i v[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {
        v[j] = j < rows_here ? _mm512_castps_si512(Load16(src + j * w_stride + k, mask))
                             : _mm512_setzero_si512();
      }
      Transpose16x16(v);
#pragma GCC unroll 16
      for (int p = 0; p < 16; ++p) {
        _mm512_store_si512(panel + (k + p) * kRows + 16 * half, v[p]);
      }
    }
  }
}

// y[t, 0..valid) (+)= Σ_k x[t, k] · panel[k, 0..valid) for kTok tokens.
template <int kTok>
MLA_TARGET_AVX512F void MicroKernel(const float* x, int64_t x_stride, const float* panel,
                                    int64_t kc, float* y, int64_t y_stride, int valid,
                                    bool accumulate) {
  __m512 lo[kTok];
  __m512 hi[kTok];
#pragma GCC unroll 16
  for (int t = 0; t < kTok; ++t) lo[t] = hi[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(panel + k * kRows);
    const __m512 b1 = _mm512_load_ps(panel + k * kRows + 16);
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      const __m512 a = _mm512_set1_ps(x[t * x_stride + k]);
      lo[t] = _mm512_fmadd_ps(a, b0, lo[t]);
      hi[t] = _mm512_fmadd_ps(a, b1, hi[t]);
    }
  }
  const __mmask16 mask_lo = Mask16(valid);
  const __mmask16 mask_hi = Mask16(valid - 16);
#pragma GCC unroll 16
  for (int t = 0; t < kTok; ++t) {
    float* yt = y + t * y_stride;
    if (accumulate) {
      lo[t] = _mm512_add_ps(lo[t], _mm512_maskz_loadu_ps(mask_lo, yt));
      hi[t] = _mm512_add_ps(hi[t], _mm512_maskz_loadu_ps(mask_hi, yt + 16));
    }
    _mm512_mask_storeu_ps(yt, mask_lo, lo[t]);
    _mm512_mask_storeu_ps(yt + 16, mask_hi, hi[t]);
  }
}

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int, bool);
template <size_t... kToks>
constexpr std::array<MicroFn, sizeof...(kToks)> MicroTable(std::index_sequence<kToks...>) {
  return {MicroKernel<static_cast<int>(kToks) + 1>...};
}
// kMicro[t - 1]: the tile of t tokens.
constexpr std::array<MicroFn, kMicroTokens> kMicro =
    MicroTable(std::make_index_sequence<kMicroTokens>());

template <typename T>
MLA_TARGET_AVX512F void PackedRows(const float* x, int64_t x_stride, int64_t n,
                                   const MatrixView& w, int64_t r_begin, int64_t r_end, float* y,
                                   int64_t y_stride) {
  alignas(64) float panel[kKc * kRows];
  const T* base = static_cast<const T*>(w.data);
  ForEachPanelTile(
      PanelBlocking{kTokenBlock, kRows, kKc, kMicroTokens}, n, r_begin, r_end, w.cols, y,
      y_stride,
      [&](int64_t r0, int valid, int64_t c0, int64_t kc) {
        PackPanel32(base, w.row_stride, r0, valid, c0, kc, panel);
      },
      [&](int64_t t0, int nt, int64_t r0, int valid, int64_t c0, int64_t kc) {
        kMicro[nt - 1](x + t0 * x_stride + c0, x_stride, panel, kc, y + t0 * y_stride + r0,
                       y_stride, valid, c0 > 0);
      });
}

// ---- bf16 dot tiles for 2..kDotMaxTokens tokens (decode batches, small experts) ----
//
// The AVX2 kernel's even/odd dot tiles with 512-bit FMAs: a 64-byte load holds 32 bf16
// weights; shifting each dword left by 16 gives the 16 even ones as floats and masking
// its low half the 16 odd ones. The activations are split to match once per call (per
// 32 columns: the 16 even, then the 16 odd ones). Tiles of 4 rows × 4 tokens (16
// accumulators, the tokens' x in 8 registers) over row blocks that stay in L2 while each
// group of 4 tokens passes over them. One token keeps the AVX2 GEMV: it is bound by
// memory, not by FMAs.
constexpr int kEoRows = 4;
constexpr int kEoTokens = 4;
constexpr int64_t kEoRowBlock = 32;  // 32 rows × kEoKc × 2 B = 256 KiB: stays in L2.
constexpr int64_t kEoKc = 4096;      // Long row streams for the prefetchers.

// out[t * cols32 ...] = x rows [0, n) over the first cols32 columns (a multiple of 32),
// each 32 columns as their 16 even values followed by their 16 odd ones.
MLA_TARGET_AVX512F void SplitEvenOdd32(const float* x, int64_t x_stride, int64_t n,
                                       int64_t cols32, float* out) {
  const __m512i even_idx =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_idx = _mm512_add_epi32(even_idx, _mm512_set1_epi32(1));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * x_stride;
    float* ot = out + t * cols32;
    for (int64_t c = 0; c < cols32; c += 32) {
      const __m512 a = _mm512_loadu_ps(xt + c);
      const __m512 b = _mm512_loadu_ps(xt + c + 16);
      _mm512_storeu_ps(ot + c, _mm512_permutex2var_ps(a, even_idx, b));
      _mm512_storeu_ps(ot + c + 16, _mm512_permutex2var_ps(a, odd_idx, b));
    }
  }
}

// y[t, r] (+)= Σ_{c in [c0, c1)} x[t, c] · w[r, c] for kRows rows × kTok tokens; c0 and c1
// are multiples of 32, xeo is SplitEvenOdd32's layout with rows xeo_stride floats apart.
template <int kRows, int kTok>
MLA_TARGET_AVX512F void EoTile(const float* xeo, int64_t xeo_stride, const bf16_t* w,
                               int64_t w_stride, int64_t c0, int64_t c1, float* y,
                               int64_t y_stride, bool accumulate, const bf16_t* prefetch) {
  __m512 acc[kRows][kTok];
  ZeroTile(acc);
  const __m512i odd_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t c = c0; c < c1; c += 32) {
    __m512 xe[kTok];
    __m512 xo[kTok];
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      xe[t] = _mm512_loadu_ps(xeo + t * xeo_stride + c);
      xo[t] = _mm512_loadu_ps(xeo + t * xeo_stride + c + 16);
    }
    if (prefetch != nullptr) PrefetchRows<kRows>(prefetch + c, w_stride);
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      const __m512i raw = _mm512_loadu_si512(w + r * w_stride + c);
      const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
      const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(raw, odd_mask));
#pragma GCC unroll 16
      for (int t = 0; t < kTok; ++t) {
        acc[r][t] = _mm512_fmadd_ps(even, xe[t], acc[r][t]);
        acc[r][t] = _mm512_fmadd_ps(odd, xo[t], acc[r][t]);
      }
    }
  }
  StoreTileSums(acc, y, y_stride, accumulate);
}

using EoFn = void (*)(const float*, int64_t, const bf16_t*, int64_t, int64_t, int64_t, float*,
                      int64_t, bool, const bf16_t*);
// Indexed by tokens - 1: tiles of kEoRows rows, and of one row for the rest.
constexpr EoFn kEoFull[kEoTokens] = {EoTile<kEoRows, 1>, EoTile<kEoRows, 2>, EoTile<kEoRows, 3>,
                                     EoTile<kEoRows, 4>};
constexpr EoFn kEoOne[kEoTokens] = {EoTile<1, 1>, EoTile<1, 2>, EoTile<1, 3>, EoTile<1, 4>};

// Rows [r_begin, r_end) of y for 2 <= n <= kDotMaxTokens tokens and bf16 weights.
MLA_TARGET_AVX512F void EoRows(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                               int64_t r_begin, int64_t r_end, float* y, int64_t y_stride) {
  const int64_t cols32 = w.cols / 32 * 32;
  thread_local std::vector<float> scratch;  // grows once to the largest call
  if (scratch.size() < static_cast<size_t>(n * cols32)) scratch.resize(n * cols32);
  float* xeo = scratch.data();
  SplitEvenOdd32(x, x_stride, n, cols32, xeo);
  const bf16_t* base = static_cast<const bf16_t*>(w.data);
  ForEachDotTile(
      DotBlocking{kEoRows, kEoTokens, kEoRowBlock, kEoKc}, n, r_begin, r_end, cols32,
      [&](int64_t r, int rows, int64_t t0, int64_t nt, int64_t c0, int64_t c1, int64_t next) {
        const bf16_t* row = base + r * w.row_stride;
        const EoFn fn = rows == 1 ? kEoOne[nt - 1] : kEoFull[nt - 1];
        fn(xeo + t0 * cols32, cols32, row, w.row_stride, c0, c1, y + t0 * y_stride + r, y_stride,
           c0 > 0, next > 0 ? row + next * w.row_stride : nullptr);
      });
  // The last cols % 32 columns (and every column when there are fewer than 32; zero
  // columns write zeros).
  if (cols32 == w.cols && cols32 > 0) return;
  AddColumnTail(x, x_stride, n, base, w.row_stride, w.cols, r_begin, r_end, cols32, y, y_stride);
}

MLA_TARGET_AVX512F void GemmRowsAvx512(const float* x, int64_t x_stride, int64_t n,
                                       const MatrixView& w, int64_t r_begin, int64_t r_end,
                                       float* y, int64_t y_stride) {
  if (n >= 2 && n <= kDotMaxTokens && w.dtype == DType::kBF16) {
    EoRows(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  } else if (n <= kDotMaxTokens) {
    GemmRowsAvx2Fn()(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  } else if (w.dtype == DType::kBF16) {
    PackedRows<bf16_t>(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  } else {
    PackedRows<float>(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  }
}

}  // namespace

GemmRowsFn GemmRowsAvx512Fn() { return GemmRowsAvx512; }

}  // namespace mla::cpu::internal

#else  // not x86

namespace mla::cpu::internal {
GemmRowsFn GemmRowsAvx512Fn() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
