// What the CUDA micro-benchmarks share: list flags, the device's peak HBM bandwidth, a
// launch timed with events until it has run long enough, and the main that says so and
// exits 0 when no device is usable.
#ifndef MLA_BENCH_CUDA_BENCH_UTIL_H_
#define MLA_BENCH_CUDA_BENCH_UTIL_H_

#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_device.h"
#include "engine/backend/cuda/device_buffer.h"

namespace mla::cuda::bench {

// "1,2,4" → {1, 2, 4}; pieces that are not positive integers are left out.
inline std::vector<int> ParseList(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(piece, &v) && v > 0) out.push_back(v);
  }
  return out;
}

// Peak bandwidth from the memory clock (kHz) and bus width (bits), double data rate.
inline double DeviceHbmGbps(int device) {
  int clock_khz = 0;
  int bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    return 0.0;
  }
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

// Milliseconds per call of `launch` (which enqueues on the default stream): two warm-up
// calls, then batches of 1, 2, 4, ... calls between events until one takes min_ms (or
// 1,024 calls).
inline absl::StatusOr<double> TimeLaunches(absl::FunctionRef<absl::Status()> launch,
                                           double min_ms) {
  for (int i = 0; i < 2; ++i) MLA_RETURN_IF_ERROR(launch());
  MLA_RETURN_IF_ERROR(DeviceSynchronize());
  cudaEvent_t start;
  cudaEvent_t stop;
  MLA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  if (const absl::Status s =
          CudaStatus(static_cast<int>(cudaEventCreate(&stop)), "cudaEventCreate");
      !s.ok()) {
    cudaEventDestroy(start);
    return s;
  }
  absl::Status status;
  const auto cuda = [&status](cudaError_t e, const char* call) {
    if (status.ok()) status = CudaStatus(static_cast<int>(e), call);
  };
  int iters = 1;
  float ms = 0.0f;
  while (status.ok()) {
    cuda(cudaEventRecord(start), "cudaEventRecord");
    for (int i = 0; i < iters && status.ok(); ++i) status = launch();
    cuda(cudaEventRecord(stop), "cudaEventRecord");
    cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    if (ms >= min_ms || iters >= 1024) break;
    iters *= 2;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  MLA_RETURN_IF_ERROR(status);
  return static_cast<double>(ms) / iters;
}

// main's body: "nothing measured" and 0 without a usable device (not a failure of the
// benchmark), else run() and its status as the exit code.
inline int BenchMain(const char* name, absl::FunctionRef<absl::Status()> run) {
  const absl::StatusOr<std::vector<CudaDeviceProps>> devices = ListCudaDevices();
  if (!devices.ok() || devices->empty()) {
    std::printf("%s: no usable CUDA device (%s); nothing measured.\n", name,
                devices.ok() ? "none visible" : std::string(devices.status().message()).c_str());
    return 0;
  }
  const absl::Status status = run();
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace mla::cuda::bench

#endif  // MLA_BENCH_CUDA_BENCH_UTIL_H_
