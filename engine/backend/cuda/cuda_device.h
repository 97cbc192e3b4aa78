// CUDA device discovery. Declarations only; compiled by nvcc in cuda_device.cu.
#ifndef MLA_ENGINE_BACKEND_CUDA_CUDA_DEVICE_H_
#define MLA_ENGINE_BACKEND_CUDA_CUDA_DEVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mla::cuda {

struct CudaDeviceProps {
  int ordinal = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int64_t total_memory_bytes = 0;
  int multiprocessors = 0;
  int64_t max_shared_bytes_per_block = 0;  // with the opt-in attribute (227 KB on an H200)
};

// Lists the visible CUDA devices. An error (with the CUDA call and code) when the driver
// or runtime is missing; an empty list when there are none.
absl::StatusOr<std::vector<CudaDeviceProps>> ListCudaDevices();

// Turns a CUDA runtime error code into a Status naming the call.
absl::Status CudaStatus(int code, const char* call);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_CUDA_DEVICE_H_
