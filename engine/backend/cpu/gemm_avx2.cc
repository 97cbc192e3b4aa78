// AVX2 + FMA GEMM. Two shapes of work:
//  - n <= 3 (decode): dot products. Each weight row is loaded (and converted from bf16)
//    once and multiplied with every token's vector; 8 rows × 1 token or 4 rows × 2-3
//    tokens keep 8-12 independent FMA chains in flight. Bound by memory bandwidth.
//  - n > 3: a 16-row weight panel of kKc columns is converted to fp32 and transposed
//    into L1 ([k][16]), then a 6-token × 16-row register tile accumulates over it
//    (12 accumulators, 2 panel loads + 6 broadcasts per 12 FMAs), for every group of 6
//    tokens. Bound by the FMA units once n is in the tens.
#include "engine/backend/cpu/gemm_kernels.h"
#include "engine/backend/cpu/simd_avx2.h"

#ifdef MLA_HAVE_AVX2_KERNELS

#include <algorithm>

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
  for (int64_t b0 = 0; b0 < n; b0 += kTokenBlock) {
    const int64_t b1 = std::min(n, b0 + kTokenBlock);
    for (int64_t r0 = r_begin; r0 < r_end; r0 += kPanel) {
      const int valid = static_cast<int>(std::min<int64_t>(kPanel, r_end - r0));
      if (w.cols == 0) {
        for (int64_t i = b0; i < b1; ++i) std::fill_n(y + i * y_stride + r0, valid, 0.0f);
      }
      for (int64_t c0 = 0; c0 < w.cols; c0 += kKc) {
        const int64_t kc = std::min(kKc, w.cols - c0);
        PackPanel(base, w.row_stride, r0, valid, c0, kc, panel);
        for (int64_t t0 = b0; t0 < b1; t0 += kMicroTokens) {
          const int nt = static_cast<int>(std::min<int64_t>(kMicroTokens, b1 - t0));
          kMicro[nt](x + t0 * x_stride + c0, x_stride, panel, kc, y + t0 * y_stride + r0, y_stride,
                     valid, c0 > 0);
        }
      }
    }
  }
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
  if (w.dtype == DType::kBF16) {
    GemmRowsTyped<bf16_t>(x, x_stride, n, w, r_begin, r_end, y, y_stride);
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
