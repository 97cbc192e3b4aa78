// bf16 GEMM with fp32 accumulation through cuBLASLt, in the layout of Hugging Face linear
// weights: Y[m, n] = X[m, k] · W[n, k]ᵀ (+ Y when accumulating), all row-major.
//
// The header needs no CUDA headers; ValidateGemmLtParams is plain C++ (gemm_lt_checks.cc,
// built on every machine), GemmLt itself is built with the CUDA backend (gemm_lt.cc).
#ifndef MLA_ENGINE_BACKEND_CUDA_GEMM_LT_H_
#define MLA_ENGINE_BACKEND_CUDA_GEMM_LT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

enum class GemmOutType { kBf16, kF32 };

struct GemmLtParams {
  int64_t m = 0;              // rows of X and Y (tokens)
  int64_t n = 0;              // output features
  int64_t k = 0;              // input features
  const bf16_t* x = nullptr;  // [m, ldx], the first k used
  int64_t ldx = 0;
  const bf16_t* w = nullptr;  // [n, ldw], the first k used
  int64_t ldw = 0;
  void* y = nullptr;  // [m, ldy] of out_type, the first n written
  int64_t ldy = 0;
  GemmOutType out_type = GemmOutType::kBf16;
  bool accumulate = false;  // Y += X·Wᵀ (beta = 1) instead of Y = X·Wᵀ
};

// Shapes (k ≥ 1, leading dimensions ≥ the row widths, int32 limits of cuBLASLt) and
// pointers. m = 0 or n = 0 is an empty product and needs no pointers.
absl::Status ValidateGemmLtParams(const GemmLtParams& p);

// A cuBLASLt handle, a workspace and a small cache of matmul descriptors, layouts and the
// heuristic's algorithm per shape (the heuristic query costs more than a small GEMM).
// Not thread-safe: one per stream-owning thread.
class GemmLt {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;
  // Plans kept; the cache is cleared when it would grow past this (shapes vary with m).
  static constexpr size_t kMaxCachedPlans = 256;

  // On the current device. Errors name the failing call and its status code.
  static absl::StatusOr<std::unique_ptr<GemmLt>> Create(
      size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~GemmLt();
  GemmLt(const GemmLt&) = delete;
  GemmLt& operator=(const GemmLt&) = delete;

  // Enqueues the product on `stream`. INVALID_ARGUMENT for bad shapes, INTERNAL (naming the
  // cuBLASLt call and status) when cuBLASLt fails or finds no algorithm for the shape.
  absl::Status Run(const GemmLtParams& p, CudaStream stream);

  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Plan;
  // m, n, k, ldx, ldw, ldy, out type, pointer alignment in bytes (beta is not planned).
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int>;

  GemmLt(void* handle, DeviceBuffer workspace);
  absl::StatusOr<const Plan*> GetPlan(const Key& key);

  void* handle_;  // cublasLtHandle_t
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_GEMM_LT_H_
