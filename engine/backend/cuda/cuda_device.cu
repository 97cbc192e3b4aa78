#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_device.h"

namespace mla::cuda {

absl::Status CudaStatus(int code, const char* call) {
  if (code == cudaSuccess) return absl::OkStatus();
  const auto err = static_cast<cudaError_t>(code);
  return absl::InternalError(absl::StrCat(call, " failed: ", cudaGetErrorName(err), " (",
                                          code, "): ", cudaGetErrorString(err)));
}

absl::StatusOr<std::vector<CudaDeviceProps>> ListCudaDevices() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaErrorNoDevice) return std::vector<CudaDeviceProps>{};
  if (err != cudaSuccess) {
    cudaGetLastError();  // Clear the sticky error so later probes start clean.
    return CudaStatus(err, "cudaGetDeviceCount");
  }
  std::vector<CudaDeviceProps> devices;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (absl::Status s = CudaStatus(cudaGetDeviceProperties(&prop, i), "cudaGetDeviceProperties");
        !s.ok()) {
      return s;
    }
    devices.push_back({i, prop.name, prop.major, prop.minor,
                       static_cast<int64_t>(prop.totalGlobalMem), prop.multiProcessorCount,
                       static_cast<int64_t>(prop.sharedMemPerBlockOptin)});
  }
  return devices;
}

}  // namespace mla::cuda
