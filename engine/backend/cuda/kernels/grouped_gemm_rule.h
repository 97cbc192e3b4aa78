// The tiling and the per-lane arithmetic of the grouped expert GEMM (grouped_gemm.h),
// shared by the kernel (grouped_gemm.cu) and the CPU test that replays every CTA, warp and
// lane of a launch against a naive product (tests/engine/cuda_host/grouped_gemm_rule_test.cc).
// Plain C++ with no CUDA or Abseil dependency, so that the host compiler and nvcc see the
// same code.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_GROUPED_GEMM_RULE_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_GROUPED_GEMM_RULE_H_

#include <cstdint>
#include <cstring>

#include "engine/common/bf16.h"

// The tile loops have constant bounds; unrolled on the device, acc stays in registers.
#ifdef __CUDACC__
#define MLA_GROUPED_FN __host__ __device__ inline
#define MLA_GROUPED_UNROLL _Pragma("unroll")
#else
#define MLA_GROUPED_FN inline
#define MLA_GROUPED_UNROLL
#endif

namespace mla::cuda {

// A CTA runs kGroupedWarps warps on one expert; each warp owns kGroupedCols adjacent output
// columns and walks the expert's rows kGroupedRows at a time, its 32 lanes splitting the
// reduction dimension (lane l takes k = l, l + 32, ...). Every lane keeps the whole
// kGroupedRows × kGroupedCols tile of partial sums, so that one weight load serves 8 rows
// and one activation load serves 4 columns; a warp sum per element then leaves exactly 32
// results, one per lane to store.
inline constexpr int kGroupedRows = 8;
inline constexpr int kGroupedCols = 4;
inline constexpr int kGroupedWarps = 4;
inline constexpr int kGroupedThreads = 32 * kGroupedWarps;
inline constexpr int64_t kGroupedColsPerCta = int64_t{kGroupedWarps} * kGroupedCols;
static_assert(kGroupedRows * kGroupedCols == 32, "one result per lane");

// One expert's weight, [n, k] with row i at stride · i, in bf16 or fp32 (the other null).
struct GroupedWeight {
  const bf16_t* bf16 = nullptr;
  const float* f32 = nullptr;
  int64_t stride = 0;
};

// CTAs along the columns for an output of n columns.
MLA_GROUPED_FN int64_t GroupedColumnTiles(int64_t n) {
  return (n + kGroupedColsPerCta - 1) / kGroupedColsPerCta;
}
// The first column of warp `warp` in column tile `tile`.
MLA_GROUPED_FN int64_t GroupedFirstColumn(int64_t tile, int warp) {
  return tile * kGroupedColsPerCta + int64_t{warp} * kGroupedCols;
}

MLA_GROUPED_FN float GroupedBf16ToFloat(bf16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

MLA_GROUPED_FN float GroupedWeightAt(const GroupedWeight& w, int64_t row, int64_t k) {
  return w.f32 != nullptr ? w.f32[row * w.stride + k]
                          : GroupedBf16ToFloat(w.bf16[row * w.stride + k]);
}

// Lane `lane`'s partial sums of y[row0 + r][col0 + c] = Σ_k x[row0 + r][k] · w[col0 + c][k]
// over its share of k, for r < rows and c < cols; the rest of acc is 0. Rows and columns
// outside those bounds are never read, so that a poisoned row of another expert cannot
// leak in.
MLA_GROUPED_FN void GroupedLanePartial(const float* x, int64_t x_stride, int64_t row0, int rows,
                                       const GroupedWeight& w, int64_t col0, int cols,
                                       int64_t k_dim, int lane,
                                       float (&acc)[kGroupedRows][kGroupedCols]) {
  MLA_GROUPED_UNROLL
  for (int r = 0; r < kGroupedRows; ++r) {
    MLA_GROUPED_UNROLL
    for (int c = 0; c < kGroupedCols; ++c) acc[r][c] = 0.0f;
  }
  for (int64_t k = lane; k < k_dim; k += 32) {
    float wk[kGroupedCols];
    MLA_GROUPED_UNROLL
    for (int c = 0; c < kGroupedCols; ++c) {
      wk[c] = c < cols ? GroupedWeightAt(w, col0 + c, k) : 0.0f;
    }
    MLA_GROUPED_UNROLL
    for (int r = 0; r < kGroupedRows; ++r) {
      if (r >= rows) break;
      const float xk = x[(row0 + r) * x_stride + k];
      MLA_GROUPED_UNROLL
      for (int c = 0; c < kGroupedCols; ++c) acc[r][c] += xk * wk[c];
    }
  }
}

// The element of the summed tile that lane `lane` stores: row lane / kGroupedCols, column
// lane % kGroupedCols. Unrolled selects, so that acc stays in registers on the device.
MLA_GROUPED_FN float GroupedLaneResult(const float (&acc)[kGroupedRows][kGroupedCols], int lane) {
  float v = 0.0f;
  MLA_GROUPED_UNROLL
  for (int r = 0; r < kGroupedRows; ++r) {
    MLA_GROUPED_UNROLL
    for (int c = 0; c < kGroupedCols; ++c) {
      if (lane == r * kGroupedCols + c) v = acc[r][c];
    }
  }
  return v;
}

}  // namespace mla::cuda

#undef MLA_GROUPED_FN
#undef MLA_GROUPED_UNROLL

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_GROUPED_GEMM_RULE_H_
