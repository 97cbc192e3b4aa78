// y = x · Wᵀ for the linear layers: W is [out, in] (Hugging Face's layout), bf16 or f32,
// accumulated in fp32.
#ifndef MLA_ENGINE_BACKEND_CPU_GEMM_H_
#define MLA_ENGINE_BACKEND_CPU_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/tensor.h"

namespace mla::cpu {

// With the kAmxBf16 level (cpu_features.h), calls of at least this many tokens run on AMX
// tiles; fewer take the AVX512_BF16 dot products.
inline constexpr int64_t kAmxMinTokens = 8;

// y[i, r] = Σ_c x[i, c] · w[r, c] for 0 <= i < n, 0 <= r < w.rows.
//   x: [n, w.cols] fp32, rows x_stride floats apart (x_stride >= w.cols)
//   y: [n, w.rows] fp32, rows y_stride floats apart (y_stride >= w.rows); overwritten
//   w: dtype kBF16 or kF32; must not alias y.
// Rows are split over the pool's threads. n == 1 (decode) streams each weight row once:
// bound by memory bandwidth. Up to 32 tokens (decode batches, the experts' few tokens)
// take dot products straight from the bf16 weight rows, row blocks kept in L2 while the
// next block is prefetched; more tokens pack 16-row weight panels and reuse them from L1
// across all tokens: bound by the FMA units. On the AMX level, from kAmxMinTokens tokens
// the packed panels feed tile multiplies instead. `pool` may be null (single-threaded).
// Preconditions are the caller's: see CheckGemmArgs.
void Gemm(const float* x, int64_t x_stride, int64_t n, const MatrixView& w, float* y,
          int64_t y_stride, ThreadPool* pool);

// The checks Gemm relies on, for callers that take shapes from outside (INVALID_ARGUMENT
// naming the problem).
absl::Status CheckGemmArgs(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                           const float* y, int64_t y_stride);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_GEMM_H_
