// An owned cuBLAS handle. Creation failures come back as a Status, never exit().
#ifndef MLA_ENGINE_BACKEND_CUDA_CUBLAS_HANDLE_H_
#define MLA_ENGINE_BACKEND_CUDA_CUBLAS_HANDLE_H_

#include <memory>

#include "absl/status/statusor.h"

namespace mla::cuda {

class CublasHandle {
 public:
  // Selects `device` and creates a cuBLAS handle on it.
  static absl::StatusOr<std::unique_ptr<CublasHandle>> Create(int device);
  ~CublasHandle();
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  void* raw() const { return handle_; }  // cublasHandle_t
  int version() const { return version_; }

 private:
  CublasHandle(void* handle, int version) : handle_(handle), version_(version) {}
  void* handle_;
  int version_;
};

// Turns a cuBLAS status code into a Status naming the call.
absl::Status CublasStatus(int code, const char* call);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_CUBLAS_HANDLE_H_
