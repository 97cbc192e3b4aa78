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
    absl::StatusOr<std::unique_ptr<cuda::CudaBackend>> backend = cuda::CudaBackend::Create(0);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
#else
    return absl::UnavailableError("device cuda: this build has no CUDA backend (no nvcc found)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device: '", options.device, "' is not one of cpu, cuda"));
}

}  // namespace mla
