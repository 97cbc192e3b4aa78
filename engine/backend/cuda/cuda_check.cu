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

namespace {

// `probe(device)` for the current device, remembered per (device, key): the answers do
// not change while the process runs, and the callers ask at every launch.
template <typename Probe>
int AskOncePerDevice(const void* key, Probe probe) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, int> known;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();  // Not sticky: no device is current.
    return 0;
  }
  std::lock_guard<std::mutex> lock(mu);
  const auto it = known.find({device, key});
  if (it != known.end()) return it->second;
  const int answer = probe(device);
  known[{device, key}] = answer;
  return answer;
}

}  // namespace

bool CurrentDeviceAllowsSharedBytes(size_t bytes) {
  static const char kOptin = 0;  // The key of this question.
  const int optin = AskOncePerDevice(&kOptin, [](int device) {
    int value = 0;
    if (cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return value;
  });
  return static_cast<size_t>(optin) >= bytes;
}

bool CurrentDeviceRuns(const void* kernel) {
  return AskOncePerDevice(kernel, [kernel](int) {
           cudaFuncAttributes attributes{};
           if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
             (void)cudaGetLastError();  // Not sticky: no image for this device.
             return 0;
           }
           return 1;
         }) != 0;
}

}  // namespace mla::cuda
