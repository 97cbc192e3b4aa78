// How the emulator calls the decode kernels: each takes its MlaDecodeParams by value.
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "tests/engine/cuda_emu/emu_runtime.h"

namespace mla::cuda::emu {
namespace {

void CallDecodeKernel(const void* func, void** args) {
  using Kernel = void (*)(MlaDecodeParams);
  reinterpret_cast<Kernel>(const_cast<void*>(func))(*static_cast<MlaDecodeParams*>(args[0]));
}

[[maybe_unused]] const bool kRegistered = SetKernelCaller(CallDecodeKernel);

}  // namespace
}  // namespace mla::cuda::emu
