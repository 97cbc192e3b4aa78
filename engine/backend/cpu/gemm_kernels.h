// Per-instruction-set GEMM bodies behind Gemm (gemm.h). Internal to the CPU backend.
#ifndef MLA_ENGINE_BACKEND_CPU_GEMM_KERNELS_H_
#define MLA_ENGINE_BACKEND_CPU_GEMM_KERNELS_H_

#include <cstdint>

#include "engine/common/tensor.h"

namespace mla::cpu::internal {

// Weight rows handled together by the packed GEMM; Gemm splits work on multiples of it.
inline constexpr int64_t kGemmPanelRows = 16;

// Computes y[i, r] for tokens [0, n) and weight rows [r_begin, r_end); same layouts as
// Gemm. Each variant is self-contained (no allocation beyond its stack).
using GemmRowsFn = void (*)(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                            int64_t r_begin, int64_t r_end, float* y, int64_t y_stride);

void GemmRowsScalar(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                    int64_t r_begin, int64_t r_end, float* y, int64_t y_stride);
// Null on targets without the AVX2 variant.
GemmRowsFn GemmRowsAvx2Fn();
// Exact (fp32 FMA) AVX-512 F/BW/VL kernel: packed panels above 32 tokens, dot tiles for 2-32
// tokens on bf16 weights; the rest goes to the AVX2 kernel (kAvx512; gemm_avx512.cc). Null
// on targets without the variant.
GemmRowsFn GemmRowsAvx512Fn();
// bf16 weights only; rounds x to bf16 (cpu_features.h, kAvx512Bf16). Null on targets
// without the variant.
GemmRowsFn GemmRowsAvx512Bf16Fn();
// bf16 weights only, the numerics of GemmRowsAvx512Bf16Fn (kAmxBf16; gemm_amx_bf16.cc). Calls
// with fewer than kAmxMinTokens (gemm.h) tokens go to that kernel. Null on targets without it.
GemmRowsFn GemmRowsAmxBf16Fn();

}  // namespace mla::cpu::internal

#endif  // MLA_ENGINE_BACKEND_CPU_GEMM_KERNELS_H_
