// AVX2 + FMA GEMM. Three shapes of work:
//  - bf16 weights, n <= kDotMaxTokens (decode, decode batches, small experts): dot
//    products straight from the weight rows, no packing. A 256-bit load holds 16 bf16
//    weights; shifting each dword left by 16 gives the 8 even ones as floats and masking
//    its low half gives the 8 odd ones, 3 instructions for 16 weights where widening 8 at a
//    time takes 6. The activations are split to match once per call (per 16 columns: the
//    8 even, then the 8 odd ones). n = 1 keeps 8 rows in flight (bound by memory
//    bandwidth); larger n runs 4 rows × 2 tokens tiles over row blocks whose weights stay
//    in L2 while every pair of tokens passes over them (gemm_dot_loop.h).
//  - n <= 3 with f32 weights: plain dot products, 8 rows × 1 token or 4 rows × 2-3 tokens.
//  - otherwise: a 16-row weight panel of kKc columns is converted to fp32 and transposed
//    into L1 ([k][16]), then a 6-token × 16-row register tile accumulates over it
//    (12 accumulators, 2 panel loads + 6 broadcasts per 12 FMAs), for every group of 6
//    tokens. Bound by the FMA units once n is in the tens; packing costs about a third
//    of the work at n = 16, which the dot tiles avoid.
#include "engine/backend/cpu/gemm_dot_loop.h"
#include "engine/backend/cpu/gemm_kernels.h"
#include "engine/backend/cpu/simd_avx2.h"

#ifdef MLA_HAVE_AVX2_KERNELS

#include <algorithm>
#include <vector>

namespace mla::cpu::internal {
namespace {

using avx2::HorizontalSum;
using avx2::LoadBf16;

constexpr int64_t kKc = 256;     // Panel depth: 16 rows × 256 × 4 B = 16 KiB, half of L1.
constexpr int kMicroTokens = 6;  // Register tile: 6 tokens × 16 rows.
constexpr int64_t kTokenBlock = 32 * kMicroTokens;  // 192 × 256 × 4 B = 192 KiB of x
constexpr int kPanel = static_cast<int>(kGemmPanelRows);

MLA_TARGET_AVX2 inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
MLA_TARGET_AVX2 inline __m256 Load8(const bf16_t* p) { return LoadBf16(p); }
inline float ToFloat(float v) { return v; }
inline float ToFloat(bf16_t v) { return Bf16ToFloat(v); }

// y[t, r0 + rr] for kRows rows × kTok tokens by dot products over all columns.
template <int kRows, int kTok, typename T>
MLA_TARGET_AVX2 void DotTile(const float* x, int64_t x_stride, const T* w, int64_t w_stride,
                             int64_t cols, float* y, int64_t y_stride) {
  __m256 acc[kRows][kTok];
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 xv[kTok];
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) xv[t] = _mm256_loadu_ps(x + t * x_stride + c);
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      const __m256 wv = Load8(w + r * w_stride + c);
#pragma GCC unroll 16
      for (int t = 0; t < kTok; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      float s = HorizontalSum(acc[r][t]);
      for (int64_t k = c; k < cols; ++k) s += x[t * x_stride + k] * ToFloat(w[r * w_stride + k]);
      y[t * y_stride + r] = s;
    }
  }
}

template <int kTok, typename T>
MLA_TARGET_AVX2 void DotRows(const float* x, int64_t x_stride, const MatrixView& w, int64_t r_begin,
                             int64_t r_end, float* y, int64_t y_stride) {
  constexpr int kRows = kTok == 1 ? 8 : 4;
  const T* base = static_cast<const T*>(w.data);
  int64_t r = r_begin;
  for (; r + kRows <= r_end; r += kRows) {
    DotTile<kRows, kTok>(x, x_stride, base + r * w.row_stride, w.row_stride, w.cols, y + r,
                         y_stride);
  }
  for (; r < r_end; ++r) {
    DotTile<1, kTok>(x, x_stride, base + r * w.row_stride, w.row_stride, w.cols, y + r, y_stride);
  }
}

// ---- bf16 dot tiles on even/odd-split activations ----

constexpr int64_t kDotMaxTokens = 32;  // Larger n packs panels (measured: gemm_bench --ns).
constexpr int kEoRows = 4;             // Tile: 4 rows × 2 tokens = 8 accumulators, the
constexpr int kEoTokens = 2;           // tokens' x in 4 registers: 8 loads per 16 FMAs.
constexpr int64_t kEoRowBlock = 32;    // 32 rows × kEoKc × 2 B = 256 KiB: stays in L2.
constexpr int64_t kEoKc = 4096;        // Long row streams for the prefetchers.

// out[t * cols16 ...] = x rows [0, n) over the first cols16 columns (a multiple of 16),
// each 16 columns as their 8 even values followed by their 8 odd ones.
MLA_TARGET_AVX2 void SplitEvenOdd(const float* x, int64_t x_stride, int64_t n, int64_t cols16,
                                  float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * x_stride;
    float* ot = out + t * cols16;
    for (int64_t c = 0; c < cols16; c += 16) {
      const __m256 a = _mm256_loadu_ps(xt + c);
      const __m256 b = _mm256_loadu_ps(xt + c + 8);
      // Per 128-bit lane: (a0 a2 b0 b2 | a4 a6 b4 b6); swapping the middle 64-bit pairs
      // puts them in column order.
      const __m256 e = _mm256_shuffle_ps(a, b, 0x88);
      const __m256 o = _mm256_shuffle_ps(a, b, 0xdd);
      _mm256_storeu_ps(ot + c, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
      _mm256_storeu_ps(ot + c + 8,
                       _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xd8)));
    }
  }
}

// y[t, r] (+)= Σ_{c in [c0, c1)} x[t, c] · w[r, c] for kRows rows × kTok tokens; c0 and c1
// are multiples of 16, xeo is SplitEvenOdd's layout with rows xeo_stride floats apart.
template <int kRows, int kTok>
MLA_TARGET_AVX2 void EoTile(const float* xeo, int64_t xeo_stride, const bf16_t* w, int64_t w_stride,
                            int64_t c0, int64_t c1, float* y, int64_t y_stride, bool accumulate,
                            const bf16_t* prefetch) {
  __m256 acc[kRows][kTok];
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  const __m256i odd_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t c = c0; c < c1; c += 16) {
    __m256 xe[kTok];
    __m256 xo[kTok];
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      xe[t] = _mm256_loadu_ps(xeo + t * xeo_stride + c);
      xo[t] = _mm256_loadu_ps(xeo + t * xeo_stride + c + 8);
    }
    // Every other step: one 64-byte line per row covers 32 columns.
    if (prefetch != nullptr && (c & 16) == 0) PrefetchRows<kRows>(prefetch + c, w_stride);
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      const __m256i raw =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * w_stride + c));
      const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
      const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(raw, odd_mask));
#pragma GCC unroll 16
      for (int t = 0; t < kTok; ++t) {
        acc[r][t] = _mm256_fmadd_ps(even, xe[t], acc[r][t]);
        acc[r][t] = _mm256_fmadd_ps(odd, xo[t], acc[r][t]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      const float s = HorizontalSum(acc[r][t]);
      float& out = y[t * y_stride + r];
      out = accumulate ? out + s : s;
    }
  }
}

using EoFn = void (*)(const float*, int64_t, const bf16_t*, int64_t, int64_t, int64_t, float*,
                      int64_t, bool, const bf16_t*);
// Indexed by tokens - 1: tiles of kEoRows rows, and of one row for the rest.
constexpr EoFn kEoFull[kEoTokens] = {EoTile<kEoRows, 1>, EoTile<kEoRows, 2>};
constexpr EoFn kEoOne[kEoTokens] = {EoTile<1, 1>, EoTile<1, 2>};

// Rows [r_begin, r_end) of y for n <= kDotMaxTokens tokens and bf16 weights.
MLA_TARGET_AVX2 void EoRows(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                            int64_t r_begin, int64_t r_end, float* y, int64_t y_stride) {
  const int64_t cols16 = w.cols / 16 * 16;
  thread_local std::vector<float> scratch;  // grows once to the largest call
  if (scratch.size() < static_cast<size_t>(n * cols16)) scratch.resize(n * cols16);
  float* xeo = scratch.data();
  SplitEvenOdd(x, x_stride, n, cols16, xeo);
  const bf16_t* base = static_cast<const bf16_t*>(w.data);
  // n = 1: 8 rows in flight, the next 8 prefetched. Otherwise 4 × 2 tiles.
  const DotBlocking blocking =
      n == 1 ? DotBlocking{8, 1, 8, cols16} : DotBlocking{kEoRows, kEoTokens, kEoRowBlock, kEoKc};
  ForEachDotTile(
      blocking, n, r_begin, r_end, cols16,
      [&](int64_t r, int rows, int64_t t0, int64_t nt, int64_t c0, int64_t c1, int64_t next) {
        const bf16_t* row = base + r * w.row_stride;
        const EoFn fn = rows == 1 ? kEoOne[nt - 1] : n == 1 ? EoTile<8, 1> : kEoFull[nt - 1];
        fn(xeo + t0 * cols16, cols16, row, w.row_stride, c0, c1, y + t0 * y_stride + r, y_stride,
           c0 > 0, next > 0 ? row + next * w.row_stride : nullptr);
      });
  // The last cols % 16 columns (and every column when there are fewer than 16; zero
  // columns write zeros).
  if (cols16 == w.cols && cols16 > 0) return;
  AddColumnTail(x, x_stride, n, base, w.row_stride, w.cols, r_begin, r_end, cols16, y, y_stride);
}

// panel[k * 16 + j] = w[row0 + j, col0 + k] as fp32 for k < kc; rows j >= valid are zero.
template <typename T>
MLA_TARGET_AVX2 void PackPanel(const T* w, int64_t w_stride, int64_t row0, int valid, int64_t col0,
                               int64_t kc, float* panel) {
  for (int j0 = 0; j0 < kPanel; j0 += 8) {
    const int rows_here = std::clamp(valid - j0, 0, 8);
    const T* src = w + (row0 + j0) * w_stride + col0;
    int64_t k = 0;
    if (rows_here == 8) {
      for (; k + 8 <= kc; k += 8) {
        __m256 v[8];
        for (int j = 0; j < 8; ++j) v[j] = Load8(src + j * w_stride + k);
        avx2::Transpose8x8(v);
        for (int i = 0; i < 8; ++i) _mm256_store_ps(panel + (k + i) * kPanel + j0, v[i]);
      }
    }
    for (; k < kc; ++k) {
      for (int j = 0; j < 8; ++j) {
        panel[k * kPanel + j0 + j] = j < rows_here ? ToFloat(src[j * w_stride + k]) : 0.0f;
      }
    }
  }
}

// y[t, 0..valid) (+)= Σ_k x[t, k] · panel[k, 0..valid) for kTok tokens. The accumulators
// go through a stack tile on the way out: indexing them in the branchy store loop would
// make GCC keep them in memory inside the hot loop as well.
template <int kTok>
MLA_TARGET_AVX2 void MicroKernel(const float* x, int64_t x_stride, const float* panel, int64_t kc,
                                 float* y, int64_t y_stride, int valid, bool accumulate) {
  __m256 lo[kTok];
  __m256 hi[kTok];
#pragma GCC unroll 8
  for (int t = 0; t < kTok; ++t) lo[t] = hi[t] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(panel + k * kPanel);
    const __m256 b1 = _mm256_load_ps(panel + k * kPanel + 8);
#pragma GCC unroll 8
    for (int t = 0; t < kTok; ++t) {
      const __m256 a = _mm256_broadcast_ss(x + t * x_stride + k);
      lo[t] = _mm256_fmadd_ps(a, b0, lo[t]);
      hi[t] = _mm256_fmadd_ps(a, b1, hi[t]);
    }
  }
  alignas(32) float tile[kTok][kPanel];
#pragma GCC unroll 8
  for (int t = 0; t < kTok; ++t) {
    _mm256_store_ps(tile[t], lo[t]);
    _mm256_store_ps(tile[t] + 8, hi[t]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < kTok; ++t) {
    float* yt = y + t * y_stride;
    for (int j = 0; j < valid; ++j) yt[j] = accumulate ? yt[j] + tile[t][j] : tile[t][j];
  }
}

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int, bool);
constexpr MicroFn kMicro[kMicroTokens + 1] = {nullptr,        MicroKernel<1>, MicroKernel<2>,
                                              MicroKernel<3>, MicroKernel<4>, MicroKernel<5>,
                                              MicroKernel<6>};

template <typename T>
MLA_TARGET_AVX2 void PackedRows(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                                int64_t r_begin, int64_t r_end, float* y, int64_t y_stride) {
  alignas(64) float panel[kKc * kPanel];
  const T* base = static_cast<const T*>(w.data);
  // Token blocks keep the x slice a panel is applied to (kTokenBlock × kKc floats) in L2;
  // each panel is packed once per token block.
  ForEachPanelTile(
      PanelBlocking{kTokenBlock, kPanel, kKc, kMicroTokens}, n, r_begin, r_end, w.cols, y,
      y_stride,
      [&](int64_t r0, int valid, int64_t c0, int64_t kc) {
        PackPanel(base, w.row_stride, r0, valid, c0, kc, panel);
      },
      [&](int64_t t0, int nt, int64_t r0, int valid, int64_t c0, int64_t kc) {
        kMicro[nt](x + t0 * x_stride + c0, x_stride, panel, kc, y + t0 * y_stride + r0, y_stride,
                   valid, c0 > 0);
      });
}

template <typename T>
MLA_TARGET_AVX2 void GemmRowsTyped(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                                   int64_t r_begin, int64_t r_end, float* y, int64_t y_stride) {
  switch (n) {
    case 1:
      return DotRows<1, T>(x, x_stride, w, r_begin, r_end, y, y_stride);
    case 2:
      return DotRows<2, T>(x, x_stride, w, r_begin, r_end, y, y_stride);
    case 3:
      return DotRows<3, T>(x, x_stride, w, r_begin, r_end, y, y_stride);
    default:
      return PackedRows<T>(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  }
}

MLA_TARGET_AVX2 void GemmRowsAvx2(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                                  int64_t r_begin, int64_t r_end, float* y, int64_t y_stride) {
  // bf16 weights never take GemmRowsTyped's small-n dot products: the even/odd tiles
  // cover every n up to kDotMaxTokens.
  if (w.dtype == DType::kBF16 && n <= kDotMaxTokens) {
    EoRows(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  } else if (w.dtype == DType::kBF16) {
    PackedRows<bf16_t>(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  } else {
    GemmRowsTyped<float>(x, x_stride, n, w, r_begin, r_end, y, y_stride);
  }
}

}  // namespace

GemmRowsFn GemmRowsAvx2Fn() { return GemmRowsAvx2; }

}  // namespace mla::cpu::internal

#else  // !MLA_HAVE_AVX2_KERNELS

namespace mla::cpu::internal {
GemmRowsFn GemmRowsAvx2Fn() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
