// Packing bf16 rows into the pair-interleaved panels that both bf16 GEMM levels multiply
// from (vdpbf16ps broadcasts and AMX's TDPBF16PS B tiles read the same layout), and the
// 16 × 16 dword transpose and the dot-product tile helpers that the AVX-512 GEMMs share.
// Internal to the CPU backend's GEMM files; include simd_avx512.h first.
#ifndef MLA_ENGINE_BACKEND_CPU_GEMM_BF16_PANEL_H_
#define MLA_ENGINE_BACKEND_CPU_GEMM_BF16_PANEL_H_

#include "engine/backend/cpu/simd_avx512.h"

#if defined(MLA_HAVE_AVX512_KERNELS)

#include <algorithm>
#include <cstdint>

#include "engine/backend/cpu/gemm_kernels.h"
#include "engine/common/bf16.h"

namespace mla::cpu::internal {

// The first `count` (clamped to 0..16 / 0..32) lanes.
inline __mmask32 Mask32(int64_t count) {
  return count >= 32 ? __mmask32{0xffffffffu}
                     : static_cast<__mmask32>((1u << std::max<int64_t>(count, 0)) - 1);
}

// In-place transpose of a 16 × 16 block of dwords held in sixteen registers.
MLA_TARGET_AVX512F inline void Transpose16x16(__m512i r[16]) {
  __m512i t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

// For the 16 rows from row0 (rows j >= valid read as zero): panel[p * kHalves * 16 + j]
// = the bf16 pair (w[row0 + j, col0 + 2p], w[row0 + j, col0 + 2p + 1]) for
// 2p < RoundUp(kc, 32); columns >= kc are zero. kHalves = 2 interleaves two such 16-row
// panels (the second written from panel + 16) so one tile can read both.
template <int kHalves>
MLA_TARGET_AVX512BF16 inline void PackPanel(const bf16_t* w, int64_t w_stride, int64_t row0,
                                            int valid, int64_t col0, int64_t kc, uint32_t* panel) {
  const bf16_t* src = w + row0 * w_stride + col0;
  for (int64_t k = 0; k < kc; k += 32) {
    const __mmask32 mask = Mask32(kc - k);
    __m512i v[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      v[j] = j < valid ? _mm512_maskz_loadu_epi16(mask, src + j * w_stride + k)
                       : _mm512_setzero_si512();
    }
    Transpose16x16(v);
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      _mm512_store_si512(panel + (k / 2 + p) * kHalves * kGemmPanelRows, v[p]);
    }
  }
}

// The accumulators of a kRows × kTok dot-product tile, zeroed.
template <int kRows, int kTok>
MLA_TARGET_AVX512F inline void ZeroTile(__m512 (&acc)[kRows][kTok]) {
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) acc[r][t] = _mm512_setzero_ps();
  }
}

// y[t, r] (+)= the sum of acc[r][t]'s lanes, for a dot-product tile at y.
template <int kRows, int kTok>
MLA_TARGET_AVX512F inline void StoreTileSums(__m512 (&acc)[kRows][kTok], float* y,
                                             int64_t y_stride, bool accumulate) {
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 16
    for (int t = 0; t < kTok; ++t) {
      const float s = _mm512_reduce_add_ps(acc[r][t]);
      float& out = y[t * y_stride + r];
      out = accumulate ? out + s : s;
    }
  }
}

}  // namespace mla::cpu::internal

#endif  // MLA_HAVE_AVX512_KERNELS

#endif  // MLA_ENGINE_BACKEND_CPU_GEMM_BF16_PANEL_H_
