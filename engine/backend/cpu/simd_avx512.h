// <immintrin.h> and the target attribute for the kernel files of the opt-in AVX512_BF16
// level (cpu_features.h). Include this before any header that includes <immintrin.h>:
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source, which
// its own -Wmaybe-uninitialized reports once they are inlined, and the pragmas below only
// cover the intrinsics' text when this is where it is first read.
//
// Kernels carry the target attribute rather than per-file -mavx512* flags: a file compiled
// with those flags may emit AVX-512 code into inline functions from shared headers, which
// the linker can then pick for callers on AVX2-only machines.
#ifndef MLA_ENGINE_BACKEND_CPU_SIMD_AVX512_H_
#define MLA_ENGINE_BACKEND_CPU_SIMD_AVX512_H_

#if defined(__x86_64__) || defined(__i386__)
#define MLA_HAVE_AVX512_KERNELS 1

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

// The exact AVX-512 level's kernels (fp32 FMA, no bf16 products), and helpers both levels
// share: a function may inline only callees whose target is a subset of its own.
#define MLA_TARGET_AVX512F __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))
#define MLA_TARGET_AVX512BF16 \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))

#include <algorithm>
#include <cstdint>

#include "engine/common/bf16.h"

namespace mla::cpu::avx512 {

// Lanes [0, count) of a 16-lane mask (count clamped to [0, 16]).
inline __mmask16 Mask16(int64_t count) {
  return count >= 16 ? __mmask16{0xffff}
                     : static_cast<__mmask16>((1u << std::max<int64_t>(count, 0)) - 1);
}

// out[0, padded) = bf16(x[0, n)) rounded to nearest even (vcvtne2ps2bf16), then zeros;
// `padded` is a multiple of 32. Reads no x past n.
MLA_TARGET_AVX512BF16 inline void RoundRowToBf16(const float* x, int64_t n, int64_t padded,
                                                 bf16_t* out) {
  for (int64_t c = 0; c < padded; c += 32) {
    const __m512 lo = _mm512_maskz_loadu_ps(Mask16(n - c), x + c);
    const __m512 hi = _mm512_maskz_loadu_ps(Mask16(n - c - 16), x + c + 16);
    _mm512_storeu_si512(out + c, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
}

}  // namespace mla::cpu::avx512

#endif  // x86

#endif  // MLA_ENGINE_BACKEND_CPU_SIMD_AVX512_H_
