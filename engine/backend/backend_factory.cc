#include "engine/backend/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/cpu_backend.h"
#if MLA_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#endif

namespace mla {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  if (options.device == "cpu") return std::make_unique<cpu::CpuBackend>(options.threads);
  if (options.device == "cuda") {
#if MLA_HAVE_CUDA
    return std::make_unique<cuda::CudaBackend>("cuda:0");
#else
    return absl::UnavailableError("device cuda: this build has no CUDA backend (no nvcc found)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device: '", options.device, "' is not one of cpu, cuda"));
}

}  // namespace mla
