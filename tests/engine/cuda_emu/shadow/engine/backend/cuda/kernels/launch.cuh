// The emulator's engine/backend/cuda/kernels/launch.cuh: LaunchKernel runs the kernel on
// the emulated device (emu_runtime.h) with its own copy of the arguments, as a launch
// does, and returns the emulator's verdict (a failed thread, a deadlock) naming the kernel.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_LAUNCH_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "tests/engine/cuda_emu/emu_runtime.h"

namespace mla::cuda {

template <typename... Params, typename... Args>
absl::Status LaunchKernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                          size_t shared_bytes, CudaStream stream, Args&&... args) {
  if (absl::Status s = emu::CheckSharedBytes(reinterpret_cast<const void*>(kernel), shared_bytes);
      !s.ok()) {
    return s;
  }
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  return emu::OnStream(
      reinterpret_cast<cudaStream_t>(stream),
      [name, kernel, params = std::move(params), grid, block, shared_bytes]() -> absl::Status {
        const std::function<void()> run = [&] { std::apply(kernel, params); };
        const absl::Status s = emu::RunFunction(run, grid, block, shared_bytes);
        if (s.ok()) return s;
        return absl::InternalError(absl::StrCat("launch of ", name, ": ", s.message()));
      });
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_LAUNCH_CUH_
