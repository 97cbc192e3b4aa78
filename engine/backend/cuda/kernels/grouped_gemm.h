// The grouped expert GEMM: y[r] = x[r] · W_eᵀ for every row r of every expert e in one
// launch, where expert e owns the permuted rows [offsets[e], offsets[e+1]) (host/moe_plan.h)
// and the offsets stay on the device. MoeExperts runs decode-sized steps through it: one
// launch per expert matrix instead of one GEMM per used expert, and no host wait for the
// expert counts (the wait that kept the MoE layer out of a CUDA graph).
//
// CUDA cores, fp32 activations times bf16 or fp32 weights with fp32 sums (the CPU backend's
// arithmetic, not the bf16-rounded input of the cuBLASLt path); built for skinny rows,
// where reading each weight once dominates. The tiling is kernels/grouped_gemm_rule.h.
// Declarations only (plain C++); the kernel lives in grouped_gemm.cu, the checks in
// kernel_checks.cc.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_GROUPED_GEMM_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_GROUPED_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/grouped_gemm_rule.h"

namespace mla::cuda {

struct GroupedGemmParams {
  int num_experts = 0;  // 1 to 65,535 (the grid's y)
  int64_t rows = 0;     // permuted rows of x and y; offsets beyond it are clamped
  int64_t n = 0;        // output columns: rows of every W_e
  int64_t k = 0;        // reduction: columns of x and of every W_e
  const float* x = nullptr;
  int64_t x_stride = 0;
  const int32_t* offsets = nullptr;        // device [num_experts + 1], non-decreasing
  const GroupedWeight* weights = nullptr;  // device [num_experts]
  float* y = nullptr;
  int64_t y_stride = 0;
};
absl::Status ValidateGroupedGemmParams(const GroupedGemmParams& p);
absl::Status LaunchGroupedGemm(const GroupedGemmParams& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_GROUPED_GEMM_H_
