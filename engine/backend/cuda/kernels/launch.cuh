// The one place the CUDA backend's kernels start with <<< >>>: LaunchKernel launches
// `kernel` with its arguments and returns the launch's status (CudaLaunchStatus: a bad
// configuration, or an earlier asynchronous error surfacing here), naming the kernel. The
// CPU emulator (tests/engine/cuda_emu) replaces this header with its own LaunchKernel,
// which runs the same kernel on its emulated device.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_LAUNCH_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "absl/status/status.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"

namespace mla::cuda {

template <typename... Params, typename... Args>
absl::Status LaunchKernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                          size_t shared_bytes, CudaStream stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  return CudaLaunchStatus(name);
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_LAUNCH_CUH_
