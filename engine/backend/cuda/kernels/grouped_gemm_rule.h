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

// True when GroupedLanePartial can read k in pairs: bf16 weights with 4-byte aligned
// pairs and fp32 activations with 8-byte aligned pairs (even k, even strides, aligned
// bases), as every DeepSeek expert and the backend's dense buffers are. One 32-bit weight
// load and one 64-bit activation load then carry two k, half the load instructions of
// the scalar walk, so that more bytes are in flight per warp.
MLA_GROUPED_FN bool GroupedPaired(const float* x, int64_t x_stride, const GroupedWeight& w,
                                  int64_t k_dim) {
  return w.bf16 != nullptr && k_dim % 2 == 0 && w.stride % 2 == 0 && x_stride % 2 == 0 &&
         reinterpret_cast<uintptr_t>(w.bf16) % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 8 == 0;
}

// The bf16 pair at p (p 4-byte aligned) as two floats, the lower address first.
MLA_GROUPED_FN void GroupedLoadBf16Pair(const bf16_t* p, float* lo, float* hi) {
  uint32_t word;
#ifdef __CUDA_ARCH__
  word = *reinterpret_cast<const uint32_t*>(p);
  *lo = __uint_as_float(word << 16);
  *hi = __uint_as_float(word & 0xffff0000u);
#else
  std::memcpy(&word, p, sizeof(word));
  const uint32_t lo_bits = word << 16, hi_bits = word & 0xffff0000u;
  std::memcpy(lo, &lo_bits, sizeof(*lo));
  std::memcpy(hi, &hi_bits, sizeof(*hi));
#endif
}

// The fp32 pair at p (p 8-byte aligned).
MLA_GROUPED_FN void GroupedLoadF32Pair(const float* p, float* a, float* b) {
#ifdef __CUDA_ARCH__
  const float2 v = *reinterpret_cast<const float2*>(p);
  *a = v.x;
  *b = v.y;
#else
  *a = p[0];
  *b = p[1];
#endif
}

// Lane `lane`'s partial sums of y[row0 + r][col0 + c] = Σ_k x[row0 + r][k] · w[col0 + c][k]
// over its share of k, for r < rows and c < cols; the rest of acc is 0. The share is
// k = lane, lane + 32, ..., or with GroupedPaired the pairs at k = 2·lane, 2·lane + 64, ...
// Rows and columns outside those bounds are never read, so that a poisoned row of another
// expert cannot leak in.
MLA_GROUPED_FN void GroupedLanePartial(const float* x, int64_t x_stride, int64_t row0, int rows,
                                       const GroupedWeight& w, int64_t col0, int cols,
                                       int64_t k_dim, int lane,
                                       float (&acc)[kGroupedRows][kGroupedCols]) {
  MLA_GROUPED_UNROLL
  for (int r = 0; r < kGroupedRows; ++r) {
    MLA_GROUPED_UNROLL
    for (int c = 0; c < kGroupedCols; ++c) acc[r][c] = 0.0f;
  }
  if (GroupedPaired(x, x_stride, w, k_dim)) {
    for (int64_t k = 2 * int64_t{lane}; k < k_dim; k += 64) {
      float w0[kGroupedCols], w1[kGroupedCols];
      MLA_GROUPED_UNROLL
      for (int c = 0; c < kGroupedCols; ++c) {
        w0[c] = w1[c] = 0.0f;
        if (c < cols) GroupedLoadBf16Pair(w.bf16 + (col0 + c) * w.stride + k, &w0[c], &w1[c]);
      }
      MLA_GROUPED_UNROLL
      for (int r = 0; r < kGroupedRows; ++r) {
        if (r >= rows) break;
        float x0, x1;
        GroupedLoadF32Pair(x + (row0 + r) * x_stride + k, &x0, &x1);
        MLA_GROUPED_UNROLL
        for (int c = 0; c < kGroupedCols; ++c) acc[r][c] += x0 * w0[c] + x1 * w1[c];
      }
    }
    return;
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
