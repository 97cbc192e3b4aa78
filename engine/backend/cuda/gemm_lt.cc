// GemmLt (gemm_lt.h). Row-major Y = X·Wᵀ is, read column-major, Yᵀ[n, m] = W·Xᵀ: cuBLASLt
// gets A = the weight buffer viewed as a k × n column-major matrix (ld = ldw) with
// transa = T, B = the activations as k × m (ld = ldx) untransposed, and C = D = Y as
// n × m (ld = ldy). No copies or transposes are needed.
#include "engine/backend/cuda/gemm_lt.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cublas_handle.h"

// `fn` is a cuBLASLt function and `args` its parenthesized arguments; a failure returns a
// Status naming fn and the status code.
#define MLA_LT_RETURN_IF_ERROR(fn, args)                                                           \
  do {                                                                                             \
    const absl::Status mla_lt_status_ = ::mla::cuda::CublasStatus(static_cast<int>(fn args), #fn); \
    if (!mla_lt_status_.ok()) return mla_lt_status_;                                               \
  } while (false)

namespace mla::cuda {

struct GemmLt::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatrixLayout_t b = nullptr;
  cublasLtMatrixLayout_t c = nullptr;
  cublasLtMatmulAlgo_t algo{};

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

// The largest power of two up to 16 that divides every address: cuBLASLt only picks
// vectorized algorithms for operands that the preference promises are aligned.
int CommonAlignment(const GemmLtParams& p) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.w) |
                         reinterpret_cast<uintptr_t>(p.y) | uintptr_t{16};
  return static_cast<int>(bits & (~bits + 1));  // lowest set bit
}

// A heuristic preference capped at the workspace and promising `alignment` bytes.
absl::StatusOr<cublasLtMatmulPreference_t> MakePreference(size_t workspace, uint32_t alignment) {
  cublasLtMatmulPreference_t pref = nullptr;
  MLA_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate, (&pref));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment}};
  absl::Status s = CublasStatus(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace, sizeof(workspace)),
      "cublasLtMatmulPreferenceSetAttribute");
  for (const auto& [attr, value] : aligns) {
    if (!s.ok()) break;
    s = CublasStatus(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)),
                     "cublasLtMatmulPreferenceSetAttribute");
  }
  if (!s.ok()) {
    cublasLtMatmulPreferenceDestroy(pref);
    return s;
  }
  return pref;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GemmLt>> GemmLt::Create(size_t workspace_bytes) {
  absl::StatusOr<DeviceBuffer> workspace = DeviceBuffer::Allocate(workspace_bytes);
  if (!workspace.ok()) return workspace.status();
  cublasLtHandle_t handle = nullptr;
  MLA_LT_RETURN_IF_ERROR(cublasLtCreate, (&handle));
  return std::unique_ptr<GemmLt>(new GemmLt(handle, std::move(*workspace)));
}

GemmLt::GemmLt(void* handle, DeviceBuffer workspace)
    : handle_(handle), workspace_(std::move(workspace)) {}

GemmLt::~GemmLt() {
  plans_.clear();
  cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

absl::StatusOr<const GemmLt::Plan*> GemmLt::GetPlan(const Key& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  const auto [m, n, k, ldx, ldw, ldy, out_type, alignment] = key;
  auto plan = std::make_unique<Plan>();
  const cudaDataType_t y_type =
      out_type == static_cast<int>(GemmOutType::kF32) ? CUDA_R_32F : CUDA_R_16BF;
  MLA_LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate, (&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T;
  const cublasOperation_t trans_b = CUBLAS_OP_N;
  MLA_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute,
                         (plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
  MLA_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute,
                         (plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
  MLA_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate, (&plan->a, CUDA_R_16BF, k, n, ldw));
  MLA_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate, (&plan->b, CUDA_R_16BF, k, m, ldx));
  MLA_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate, (&plan->c, y_type, n, m, ldy));
  absl::StatusOr<cublasLtMatmulPreference_t> pref =
      MakePreference(workspace_.bytes(), static_cast<uint32_t>(alignment));
  if (!pref.ok()) return pref.status();
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const absl::Status heuristic = CublasStatus(
      cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a,
                                     plan->b, plan->c, plan->c, *pref, 1, &result, &found),
      "cublasLtMatmulAlgoGetHeuristic");
  cublasLtMatmulPreferenceDestroy(*pref);
  if (!heuristic.ok()) return heuristic;
  if (found == 0) {
    return absl::InternalError(absl::StrCat("cublasLtMatmulAlgoGetHeuristic found no algorithm ",
                                            "for m=", m, " n=", n, " k=", k, " ldx=", ldx,
                                            " ldw=", ldw, " ldy=", ldy));
  }
  plan->algo = result.algo;
  if (plans_.size() >= kMaxCachedPlans) plans_.clear();
  return plans_.emplace(key, std::move(plan)).first->second.get();
}

absl::Status GemmLt::Run(const GemmLtParams& p, CudaStream stream) {
  if (absl::Status s = ValidateGemmLtParams(p); !s.ok()) return s;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  const Key key{
      p.m, p.n, p.k, p.ldx, p.ldw, p.ldy, static_cast<int>(p.out_type), CommonAlignment(p)};
  absl::StatusOr<const Plan*> plan = GetPlan(key);
  if (!plan.ok()) return plan.status();
  const float alpha = 1.0f;
  const float beta = p.accumulate ? 1.0f : 0.0f;
  MLA_LT_RETURN_IF_ERROR(
      cublasLtMatmul,
      (static_cast<cublasLtHandle_t>(handle_), (*plan)->desc, &alpha, p.w, (*plan)->a, p.x,
       (*plan)->b, &beta, p.y, (*plan)->c, p.y, (*plan)->c, &(*plan)->algo, workspace_.data(),
       workspace_.bytes(), static_cast<cudaStream_t>(stream)));
  return absl::OkStatus();
}

}  // namespace mla::cuda
