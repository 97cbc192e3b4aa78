// MLA_CUDA_RETURN_IF_ERROR: turns a failed CUDA runtime call into an absl::Status that names
// the call and the error code (never exit()). Usable from .cc and .cu files.
#ifndef MLA_ENGINE_BACKEND_CUDA_CUDA_CHECK_H_
#define MLA_ENGINE_BACKEND_CUDA_CUDA_CHECK_H_

#include <cstddef>

#include "absl/status/status.h"
#include "engine/backend/cuda/cuda_device.h"

// `expr` is a CUDA runtime call returning cudaError_t.
#define MLA_CUDA_RETURN_IF_ERROR(expr)                                                            \
  do {                                                                                            \
    const absl::Status mla_cuda_status_ = ::mla::cuda::CudaStatus(static_cast<int>(expr), #expr); \
    if (!mla_cuda_status_.ok()) return mla_cuda_status_;                                          \
  } while (false)

namespace mla::cuda {

// The launch error of the last kernel launched on this thread (bad configuration, no
// device, too much shared memory), as a Status naming `kernel`. Does not synchronize.
absl::Status CudaLaunchStatus(const char* kernel);

// Raises `kernel`'s dynamic shared memory limit on the current device to `bytes` unless an
// earlier call already allowed as much there: a host call per launch would cost more than
// a small step's kernel. Thread-safe.
absl::Status AllowDynamicSharedBytes(const void* kernel, size_t bytes);

// Whether a CTA on the current device may have `bytes` of dynamic shared memory (the
// opt-in limit: 227 KiB on an H100 / H200), and whether `kernel` has an image the current
// device can run; each asked once per device and kernel. False when the device cannot be
// asked (the error cleared). Thread-safe.
bool CurrentDeviceAllowsSharedBytes(size_t bytes);
bool CurrentDeviceRuns(const void* kernel);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_CUDA_CHECK_H_
