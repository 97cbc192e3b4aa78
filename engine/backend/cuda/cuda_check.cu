#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"

namespace mla::cuda {

absl::Status CudaLaunchStatus(const char* kernel) {
  return CudaStatus(cudaGetLastError(), absl::StrCat("launch of ", kernel).c_str());
}

}  // namespace mla::cuda
