// AVX-512 BF16 GEMM for bf16 weights: vdpbf16ps multiplies pairs of bf16 values and adds
// both products to an fp32 lane, 32 multiply-adds per instruction where an fp32 FMA does
// 16. Zen 4 runs 512-bit FMAs as two 256-bit halves, so fp32 AVX-512 would not beat the
// AVX2 kernels there: the gain comes from vdpbf16ps alone, and it needs bf16 operands on
// both sides. The activations are therefore rounded to bf16 (round to nearest even, once
// per call), the one change in numerics: products of two bf16 values are exact in fp32
// and the sums stay fp32. That rounding is why this level is opt-in (cpu_features.h).
//
// The activations of a block of tokens are converted into a per-thread scratch row
// (zero-padded to a multiple of 32 values, so no load of x needs a mask), then:
//  - n <= kDotMaxTokens (decode, decode batches, small experts): dot products over 32
//    columns per instruction, straight from the weight rows (masked loads at the row
//    end); 8 rows × 1 token (bound by memory bandwidth) or 4 rows × 4 tokens over row
//    blocks kept in L2.
//  - larger n: two 16-row weight panels of kKc columns are transposed into pairs
//    ([kKc/2][32] dwords, two vectors per pair of columns, 16 KiB), then a
//    12-token × 32-row tile accumulates over them: per pair two panel loads, 12
//    broadcasts of the tokens' pairs and 24 vdpbf16ps. 24 independent chains cover
//    vdpbf16ps's latency; one broadcast per two vdpbf16ps keeps the load ports free.
//
#include "engine/backend/cpu/simd_avx512.h"  // first: see there

#include "engine/backend/cpu/gemm_bf16_panel.h"
#include "engine/backend/cpu/gemm_dot_loop.h"
#include "engine/backend/cpu/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

namespace mla::cpu::internal {
namespace {

using avx512::Mask16;

constexpr int64_t kKc = 256;      // Panel depth in columns: 128 pairs × 32 rows × 4 B.
constexpr int kMicroTokens = 12;  // Register tile: 12 tokens × 32 rows.
constexpr int64_t kTokenBlock = 16 * kMicroTokens;  // 192 × 256 × 2 B of x per panel
constexpr int kPanel = static_cast<int>(kGemmPanelRows);
static_assert(kPanel == 16, "one 512-bit vector of fp32 per panel pair");
constexpr int64_t kXAlign = 32;  // x scratch rows are padded to this many values

inline int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

MLA_TARGET_AVX512BF16 inline __m512 Dot(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

// Rows [t0, t1) of x as bf16 in a per-thread scratch, rows `*stride` values apart. Grows
// once to the largest block seen, so steady-state calls do not allocate.
MLA_TARGET_AVX512BF16 const bf16_t* ConvertBlock(const float* x, int64_t x_stride, int64_t t0,
                                                 int64_t t1, int64_t cols, int64_t* stride) {
  thread_local std::vector<bf16_t> scratch;
  *stride = RoundUp(cols, kXAlign);
  const size_t need = static_cast<size_t>((t1 - t0) * *stride);
  if (scratch.size() < need) scratch.resize(need);
  for (int64_t t = t0; t < t1; ++t) {
    avx512::RoundRowToBf16(x + t * x_stride, cols, *stride, scratch.data() + (t - t0) * *stride);
  }
  return scratch.data();
}

// y[t, r] (+)= Σ_{c in [c0, c1)} x[t, c] · w[r, c] for kRows weight rows × kTok tokens by
// dot products; c0 is a multiple of 32 and xb is zero-padded past the row end, so only the
// weight loads need a mask (at c1 = cols).
template <int kRows, int kTok>
MLA_TARGET_AVX512BF16 void DotTile(const bf16_t* xb, int64_t xb_stride, const bf16_t* w,
                                   int64_t w_stride, int64_t c0, int64_t c1, float* y,
                                   int64_t y_stride, bool accumulate, const bf16_t* prefetch) {
  __m512 acc[kRows][kTok];
  ZeroTile(acc);
  for (int64_t c = c0; c < c1; c += 32) {
    const __mmask32 mask = Mask32(c1 - c);  // all ones but at the row end
    __m512i xv[kTok];
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) xv[t] = _mm512_loadu_si512(xb + t * xb_stride + c);
    if (prefetch != nullptr) PrefetchRows<kRows>(prefetch + c, w_stride);
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      const __m512i wv = _mm512_maskz_loadu_epi16(mask, w + r * w_stride + c);
#pragma GCC unroll 16
      for (int t = 0; t < kTok; ++t) acc[r][t] = Dot(acc[r][t], wv, xv[t]);
    }
  }
  StoreTileSums(acc, y, y_stride, accumulate);
}

constexpr int64_t kDotMaxTokens = 32;  // Larger n packs panels (measured: gemm_bench --ns).
constexpr int kDotRows = 4;            // Tile: 4 rows × 4 tokens = 16 accumulators, the
constexpr int kDotTokens = 4;          // tokens' x in 4 registers: 8 loads per 16 vdpbf16ps.
constexpr int64_t kDotRowBlock = 32;   // 32 rows × kDotKc × 2 B = 256 KiB: stays in L2.
constexpr int64_t kDotKc = 4096;       // Long row streams for the prefetchers.

using DotFn = void (*)(const bf16_t*, int64_t, const bf16_t*, int64_t, int64_t, int64_t, float*,
                       int64_t, bool, const bf16_t*);
// Indexed by tokens - 1: tiles of kDotRows rows, and of one row for the rest.
constexpr DotFn kDotFull[kDotTokens] = {DotTile<kDotRows, 1>, DotTile<kDotRows, 2>,
                                        DotTile<kDotRows, 3>, DotTile<kDotRows, 4>};
constexpr DotFn kDotOne[kDotTokens] = {DotTile<1, 1>, DotTile<1, 2>, DotTile<1, 3>, DotTile<1, 4>};

// Rows [r_begin, r_end) for n <= kDotMaxTokens tokens. n = 1 streams 8 rows at a time
// (bound by memory bandwidth); larger n runs 4 × 4 tiles over row blocks whose weights stay
// in L2 while each group of 4 tokens passes over them: no packing, which at these n would
// cost as much as the products.
MLA_TARGET_AVX512BF16 void DotRows(const bf16_t* xb, int64_t xb_stride, int64_t n,
                                   const MatrixView& w, int64_t r_begin, int64_t r_end, float* y,
                                   int64_t y_stride) {
  const bf16_t* base = static_cast<const bf16_t*>(w.data);
  const int64_t cols = w.cols;
  if (cols == 0) {
    for (int64_t t = 0; t < n; ++t) {
      std::fill(y + t * y_stride + r_begin, y + t * y_stride + r_end, 0.0f);
    }
    return;
  }
  // n = 1: 8 rows in flight, the next 8 prefetched. Otherwise 4 × 4 tiles.
  const DotBlocking blocking =
      n == 1 ? DotBlocking{8, 1, 8, cols} : DotBlocking{kDotRows, kDotTokens, kDotRowBlock, kDotKc};
  ForEachDotTile(
      blocking, n, r_begin, r_end, cols,
      [&](int64_t r, int rows, int64_t t0, int64_t nt, int64_t c0, int64_t c1, int64_t next) {
        const bf16_t* row = base + r * w.row_stride;
        const DotFn fn = rows == 1 ? kDotOne[nt - 1] : n == 1 ? DotTile<8, 1> : kDotFull[nt - 1];
        fn(xb + t0 * xb_stride, xb_stride, row, w.row_stride, c0, c1, y + t0 * y_stride + r,
           y_stride, c0 > 0, next > 0 ? row + next * w.row_stride : nullptr);
      });
}

// y[t, 0..valid) (+)= Σ_p x[t, pair p] · panel[p] for kTok tokens and kHalves × 16 rows
// (`valid` counts rows over both halves).
template <int kHalves, int kTok>
MLA_TARGET_AVX512BF16 void MicroKernel(const bf16_t* xb, int64_t xb_stride, const uint32_t* panel,
                                       int64_t pairs, float* y, int64_t y_stride, int valid,
                                       bool accumulate) {
  __m512 acc[kHalves][kTok];
#pragma GCC unroll 16
  for (int h = 0; h < kHalves; ++h) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) acc[h][t] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    __m512i b[kHalves];
#pragma GCC unroll 2
    for (int h = 0; h < kHalves; ++h) b[h] = _mm512_load_si512(panel + (p * kHalves + h) * kPanel);
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      uint32_t pair;
      std::memcpy(&pair, xb + t * xb_stride + 2 * p, sizeof(pair));
      const __m512i x = _mm512_set1_epi32(static_cast<int>(pair));
#pragma GCC unroll 2
      for (int h = 0; h < kHalves; ++h) acc[h][t] = Dot(acc[h][t], b[h], x);
    }
  }
#pragma GCC unroll 2
  for (int h = 0; h < kHalves; ++h) {
    const __mmask16 mask = Mask16(valid - h * kPanel);
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      float* yt = y + t * y_stride + h * kPanel;
      const __m512 v =
          accumulate ? _mm512_add_ps(acc[h][t], _mm512_maskz_loadu_ps(mask, yt)) : acc[h][t];
      _mm512_mask_storeu_ps(yt, mask, v);
    }
  }
}

using MicroFn = void (*)(const bf16_t*, int64_t, const uint32_t*, int64_t, float*, int64_t, int,
                         bool);
template <int kHalves, size_t... kToks>
constexpr std::array<MicroFn, sizeof...(kToks)> MicroTable(std::index_sequence<kToks...>) {
  return {MicroKernel<kHalves, static_cast<int>(kToks) + 1>...};
}
// kMicro[h - 1][t - 1]: the tile of h halves × t tokens.
constexpr std::array<MicroFn, kMicroTokens> kMicro[2] = {
    MicroTable<1>(std::make_index_sequence<kMicroTokens>()),
    MicroTable<2>(std::make_index_sequence<kMicroTokens>())};

// Tokens [0, n) of a block whose x is already converted (xb, rows xb_stride apart). Rows
// go 32 at a time (two interleaved panels: 24 accumulators, so each broadcast of x feeds
// two vdpbf16ps), the last 16 or fewer alone.
MLA_TARGET_AVX512BF16 void PackedRows(const bf16_t* xb, int64_t xb_stride, int64_t n,
                                      const MatrixView& w, int64_t r_begin, int64_t r_end, float* y,
                                      int64_t y_stride) {
  alignas(64) uint32_t panel[kKc / 2 * 2 * kPanel];
  const bf16_t* base = static_cast<const bf16_t*>(w.data);
  for (int64_t r0 = r_begin; r0 < r_end; r0 += 2 * kPanel) {
    const int valid = static_cast<int>(std::min<int64_t>(2 * kPanel, r_end - r0));
    const int halves = valid > kPanel ? 2 : 1;
    if (w.cols == 0) {
      for (int64_t i = 0; i < n; ++i) std::fill_n(y + i * y_stride + r0, valid, 0.0f);
    }
    for (int64_t c0 = 0; c0 < w.cols; c0 += kKc) {
      const int64_t kc = std::min(kKc, w.cols - c0);
      if (halves == 2) {
        PackPanel<2>(base, w.row_stride, r0, kPanel, c0, kc, panel);
        PackPanel<2>(base, w.row_stride, r0 + kPanel, valid - kPanel, c0, kc, panel + kPanel);
      } else {
        PackPanel<1>(base, w.row_stride, r0, valid, c0, kc, panel);
      }
      for (int64_t t0 = 0; t0 < n; t0 += kMicroTokens) {
        const int64_t nt = std::min<int64_t>(kMicroTokens, n - t0);
        kMicro[halves - 1][nt - 1](xb + t0 * xb_stride + c0, xb_stride, panel, (kc + 1) / 2,
                                   y + t0 * y_stride + r0, y_stride, valid, c0 > 0);
      }
    }
  }
}

MLA_TARGET_AVX512BF16 void GemmRowsAvx512Bf16(const float* x, int64_t x_stride, int64_t n,
                                              const MatrixView& w, int64_t r_begin, int64_t r_end,
                                              float* y, int64_t y_stride) {
  for (int64_t b0 = 0; b0 < n; b0 += kTokenBlock) {
    const int64_t b1 = std::min(n, b0 + kTokenBlock);
    int64_t xb_stride = 0;
    const bf16_t* xb = ConvertBlock(x, x_stride, b0, b1, w.cols, &xb_stride);
    float* yb = y + b0 * y_stride;
    if (b1 - b0 <= kDotMaxTokens) {
      DotRows(xb, xb_stride, b1 - b0, w, r_begin, r_end, yb, y_stride);
    } else {
      PackedRows(xb, xb_stride, b1 - b0, w, r_begin, r_end, yb, y_stride);
    }
  }
}

}  // namespace

GemmRowsFn GemmRowsAvx512Bf16Fn() { return GemmRowsAvx512Bf16; }

}  // namespace mla::cpu::internal

#else  // not x86

namespace mla::cpu::internal {
GemmRowsFn GemmRowsAvx512Bf16Fn() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
