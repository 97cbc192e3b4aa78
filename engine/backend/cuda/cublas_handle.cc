#include "engine/backend/cuda/cublas_handle.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_device.h"

namespace mla::cuda {

absl::Status CublasStatus(int code, const char* call) {
  if (code == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(call, " failed: ", cublasGetStatusString(static_cast<cublasStatus_t>(code)),
                   " (", code, ")"));
}

absl::StatusOr<std::unique_ptr<CublasHandle>> CublasHandle::Create(int device) {
  if (absl::Status s = CudaStatus(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  cublasHandle_t handle = nullptr;
  if (absl::Status s = CublasStatus(cublasCreate(&handle), "cublasCreate"); !s.ok()) return s;
  int version = 0;
  cublasGetVersion(handle, &version);
  return std::unique_ptr<CublasHandle>(new CublasHandle(handle, version));
}

CublasHandle::~CublasHandle() { cublasDestroy(static_cast<cublasHandle_t>(handle_)); }

}  // namespace mla::cuda
