// Owned device memory (cudaMalloc/cudaFree) with Status-returning copies, for tests,
// benchmarks and the backend's workspaces. The header needs no CUDA headers.
#ifndef MLA_ENGINE_BACKEND_CUDA_DEVICE_BUFFER_H_
#define MLA_ENGINE_BACKEND_CUDA_DEVICE_BUFFER_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mla::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // `bytes` of uninitialized device memory on the current device (0 gives an empty buffer).
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);

  // Allocates and copies a host vector.
  template <typename T>
  static absl::StatusOr<DeviceBuffer> FromHost(const std::vector<T>& host) {
    absl::StatusOr<DeviceBuffer> buffer = Allocate(host.size() * sizeof(T));
    if (!buffer.ok()) return buffer;
    if (absl::Status s = buffer->CopyFromHost(host.data(), host.size() * sizeof(T)); !s.ok()) {
      return s;
    }
    return buffer;
  }

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

  // Synchronous copies of `bytes` at byte `offset` of this buffer; OUT_OF_RANGE when they
  // do not fit.
  absl::Status CopyFromHost(const void* src, size_t bytes, size_t offset = 0);
  absl::Status CopyToHost(void* dst, size_t bytes, size_t offset = 0) const;
  // Sets every byte to `value` (0xff in a bf16 buffer is a NaN in every element).
  absl::Status Fill(unsigned char value);

  template <typename T>
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(bytes_ / sizeof(T));
    if (absl::Status s = CopyToHost(host.data(), host.size() * sizeof(T)); !s.ok()) return s;
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// cudaDeviceSynchronize as a Status: reports errors of kernels that already ran.
absl::Status DeviceSynchronize();

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_DEVICE_BUFFER_H_
