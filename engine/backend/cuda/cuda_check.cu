#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"

namespace mla::cuda {

absl::Status CudaLaunchStatus(const char* kernel) {
  return CudaStatus(cudaGetLastError(), absl::StrCat("launch of ", kernel).c_str());
}

absl::Status AllowDynamicSharedBytes(const void* kernel, size_t bytes) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, size_t> allowed;  // (device, kernel)
  int device = 0;
  MLA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  size_t& limit = allowed[{device, kernel}];
  if (bytes <= limit) return absl::OkStatus();
  MLA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(bytes)));
  limit = bytes;
  return absl::OkStatus();
}

}  // namespace mla::cuda
