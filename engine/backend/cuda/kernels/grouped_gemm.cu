// The grouped expert GEMM (grouped_gemm.h); its tiling and lane arithmetic are
// grouped_gemm_rule.h, replayed on the CPU by the tests.
#include <cuda_runtime.h>

#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/grouped_gemm.h"
#include "engine/backend/cuda/kernels/launch.cuh"

namespace mla::cuda {
namespace {

// Grid: (column tiles, experts). A CTA whose expert received no rows returns at once, so a
// decode step pays only for the experts it routed to.
__global__ void __launch_bounds__(kGroupedThreads) GroupedGemmKernel(GroupedGemmParams p) {
  const int expert = static_cast<int>(blockIdx.y);
  const int64_t begin = max(int64_t{0}, static_cast<int64_t>(p.offsets[expert]));
  const int64_t end = min(p.rows, static_cast<int64_t>(p.offsets[expert + 1]));
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t col0 = GroupedFirstColumn(blockIdx.x, warp);
  if (begin >= end || col0 >= p.n) return;
  const int cols = static_cast<int>(min(int64_t{kGroupedCols}, p.n - col0));
  const GroupedWeight w = p.weights[expert];
  for (int64_t row0 = begin; row0 < end; row0 += kGroupedRows) {
    const int rows = static_cast<int>(min(int64_t{kGroupedRows}, end - row0));
    float acc[kGroupedRows][kGroupedCols];
    GroupedLanePartial(p.x, p.x_stride, row0, rows, w, col0, cols, p.k, lane, acc);
#pragma unroll
    for (int r = 0; r < kGroupedRows; ++r) {
#pragma unroll
      for (int c = 0; c < kGroupedCols; ++c) acc[r][c] = WarpSum(acc[r][c]);
    }
    const int r = lane / kGroupedCols, c = lane % kGroupedCols;
    const float v = GroupedLaneResult(acc, lane);
    if (r < rows && c < cols) p.y[(row0 + r) * p.y_stride + col0 + c] = v;
  }
}

}  // namespace

absl::Status LaunchGroupedGemm(const GroupedGemmParams& p, CudaStream stream) {
  if (absl::Status s = ValidateGroupedGemmParams(p); !s.ok()) return s;
  if (p.rows == 0) return absl::OkStatus();
  const int64_t tiles = GroupedColumnTiles(p.n);
  if (tiles > INT32_MAX) return absl::InvalidArgumentError("GroupedGemm: n is too large");
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(p.num_experts));
  return LaunchKernel("GroupedGemm", GroupedGemmKernel, grid, kGroupedThreads, 0, stream, p);
}

}  // namespace mla::cuda
