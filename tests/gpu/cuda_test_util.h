// Shared helpers of the CUDA kernel tests: the skip when no device is usable, status
// assertions and the comparison measures (FlashMLA's cosine difference).
#ifndef MLA_TESTS_GPU_CUDA_TEST_UTIL_H_
#define MLA_TESTS_GPU_CUDA_TEST_UTIL_H_

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/cuda/cuda_device.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/common/bf16.h"
#include "gtest/gtest.h"

namespace mla::cuda::testing {

// OK when a CUDA device is visible and the runtime works; the reason otherwise. Probed once.
inline const absl::Status& CudaUsable() {
  static const absl::Status* status = [] {
    absl::StatusOr<std::vector<CudaDeviceProps>> devices = ListCudaDevices();
    if (!devices.ok()) return new absl::Status(devices.status());
    if (devices->empty()) return new absl::Status(absl::UnavailableError("no CUDA device"));
    return new absl::Status();
  }();
  return *status;
}

inline int NumMultiprocessors() {
  absl::StatusOr<std::vector<CudaDeviceProps>> devices = ListCudaDevices();
  return devices.ok() && !devices->empty() ? devices->front().multiprocessors : 1;
}

// Buffer helpers that fail the test (ASSERT) instead of returning a Status.
template <typename T>
DeviceBuffer Upload(const std::vector<T>& host) {
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::FromHost(host);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  return buffer.ok() ? std::move(*buffer) : DeviceBuffer();
}

inline DeviceBuffer Zeros(size_t bytes) {
  absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(bytes);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  if (!buffer.ok()) return DeviceBuffer();
  EXPECT_TRUE(buffer->Fill(0).ok());
  return std::move(*buffer);
}

template <typename T>
std::vector<T> Download(const DeviceBuffer& buffer) {
  absl::StatusOr<std::vector<T>> host = buffer.ToHost<T>();
  EXPECT_TRUE(host.ok()) << host.status();
  return host.ok() ? std::move(*host) : std::vector<T>();
}

// FlashMLA's measure: 1 − 2·Σxy / (Σx² + Σy²); 0 for identical vectors.
inline double CosineDiff(const std::vector<double>& x, const std::vector<double>& y) {
  double xy = 0.0;
  double xx = 0.0;
  double yy = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += x[i] * y[i];
    xx += x[i] * x[i];
    yy += y[i] * y[i];
  }
  if (xx + yy == 0.0) return 0.0;
  return 1.0 - 2.0 * xy / (xx + yy);
}

// |got − want| within a bf16 rounding step of want (2^-8 relative) plus `abs`.
inline bool Bf16Close(bf16_t got, float want, float abs = 1e-6f) {
  const float g = Bf16ToFloat(got);
  return std::fabs(g - want) <= std::fabs(want) * (1.0f / 128.0f) + abs;
}

}  // namespace mla::cuda::testing

// Skips the current test when no CUDA device can be used (the normal case on CPU-only CI).
#define MLA_SKIP_WITHOUT_CUDA()                                                                \
  do {                                                                                         \
    if (const absl::Status& mla_cuda_ = ::mla::cuda::testing::CudaUsable(); !mla_cuda_.ok()) { \
      GTEST_SKIP() << "no usable CUDA device: " << mla_cuda_.message();                        \
    }                                                                                          \
  } while (false)

#define MLA_ASSERT_OK(expr)                              \
  do {                                                   \
    const absl::Status mla_s_ = (expr);                  \
    ASSERT_TRUE(mla_s_.ok()) << #expr << ": " << mla_s_; \
  } while (false)

#endif  // MLA_TESTS_GPU_CUDA_TEST_UTIL_H_
