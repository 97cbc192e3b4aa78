#include "engine/backend/cuda/device_buffer.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"

namespace mla::cuda {
namespace {

absl::Status CheckRange(size_t offset, size_t bytes, size_t size) {
  if (offset > size || bytes > size - offset) {
    return absl::OutOfRangeError(absl::StrCat("device copy of ", bytes, " bytes at ", offset,
                                              " overruns a buffer of ", size, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer buffer;
  if (bytes == 0) return buffer;
  MLA_CUDA_RETURN_IF_ERROR(cudaMalloc(&buffer.ptr_, bytes));
  buffer.bytes_ = bytes;
  return buffer;
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t bytes, size_t offset) {
  if (absl::Status s = CheckRange(offset, bytes, bytes_); !s.ok()) return s;
  if (bytes == 0) return absl::OkStatus();
  MLA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(static_cast<char*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t bytes, size_t offset) const {
  if (absl::Status s = CheckRange(offset, bytes, bytes_); !s.ok()) return s;
  if (bytes == 0) return absl::OkStatus();
  MLA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(dst, static_cast<const char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

absl::Status DeviceBuffer::Fill(unsigned char value) {
  if (bytes_ == 0) return absl::OkStatus();
  MLA_CUDA_RETURN_IF_ERROR(cudaMemset(ptr_, value, bytes_));
  return absl::OkStatus();
}

absl::Status DeviceSynchronize() {
  MLA_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return absl::OkStatus();
}

}  // namespace mla::cuda
