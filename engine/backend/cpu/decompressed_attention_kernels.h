// Per-instruction-set inner loop of DecompressedAttention (decompressed_attention.h):
// one query row's online-softmax step over a block of scores. The matrix products go
// through Gemm, which has its own levels; this is the part between them, one exp per
// row and key, which a scalar loop would make as slow as the products themselves.
// Internal to the CPU backend.
#ifndef MLA_ENGINE_BACKEND_CPU_DECOMPRESSED_ATTENTION_KERNELS_H_
#define MLA_ENGINE_BACKEND_CPU_DECOMPRESSED_ATTENTION_KERNELS_H_

#include <cstdint>

namespace mla::cpu::internal {

// Scales scores s[0, visible) by `scale`, raises *max to their largest value, replaces
// them by exp(s - *max) and sets s[visible, nk) to 0 (keys the row may not see); *sum
// becomes *sum · alpha + Σ exp. Returns alpha = exp(old max - new max), the factor the
// row's running output must be multiplied by (0 while the old max is -inf).
using SoftmaxRowFn = float (*)(float* s, int64_t visible, int64_t nk, float scale, float* max,
                               float* sum);

float SoftmaxRowScalar(float* s, int64_t visible, int64_t nk, float scale, float* max, float* sum);
// Null on targets without the AVX2 variant.
SoftmaxRowFn SoftmaxRowAvx2();

}  // namespace mla::cpu::internal

#endif  // MLA_ENGINE_BACKEND_CPU_DECOMPRESSED_ATTENTION_KERNELS_H_
