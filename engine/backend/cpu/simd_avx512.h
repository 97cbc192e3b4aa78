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

#define MLA_TARGET_AVX512BF16 \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))

#endif  // x86

#endif  // MLA_ENGINE_BACKEND_CPU_SIMD_AVX512_H_
