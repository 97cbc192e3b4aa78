// How the emulator binds the decode kernels to their arguments (cudaLaunchKernel's type-
// erased pointers): each takes its MlaDecodeParams by value.
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "tests/engine/cuda_emu/emu_runtime.h"

namespace mla::cuda::emu {
namespace {

std::function<void()> BindDecodeKernel(const void* func, void** args) {
  using Kernel = void (*)(MlaDecodeParams);
  const auto kernel = reinterpret_cast<Kernel>(const_cast<void*>(func));
  const MlaDecodeParams params = *static_cast<const MlaDecodeParams*>(args[0]);
  return [kernel, params] { kernel(params); };
}

[[maybe_unused]] const bool kRegistered = SetKernelBinder(BindDecodeKernel);

}  // namespace
}  // namespace mla::cuda::emu
