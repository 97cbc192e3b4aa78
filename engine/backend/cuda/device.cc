#include "engine/backend/cuda/device.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifdef MLA_HAVE_CUDA
#include "engine/backend/cuda/cublas_handle.h"
#include "engine/backend/cuda/cuda_device.h"
#endif

namespace mla {
namespace {

// Finds the first usable CUDA device and proves cuBLAS works on it.
absl::StatusOr<DeviceChoice> ProbeCuda() {
#ifdef MLA_HAVE_CUDA
  auto devices = cuda::ListCudaDevices();
  if (!devices.ok()) return devices.status();
  if (devices->empty()) return absl::UnavailableError("no CUDA device is visible");
  const cuda::CudaDeviceProps& d = devices->front();
  auto handle = cuda::CublasHandle::Create(d.ordinal);
  if (!handle.ok()) return handle.status();
  DeviceChoice choice;
  choice.cuda = true;
  choice.ordinal = d.ordinal;
  choice.description = absl::StrCat("cuda:", d.ordinal, " (", d.name, ")");
  choice.reason = absl::StrCat("found ", devices->size(), " CUDA device(s); using ", d.name,
                               ", compute capability ", d.compute_major, ".", d.compute_minor,
                               ", cuBLAS ", (*handle)->version());
  return choice;
#else
  return absl::UnavailableError("this binary was built without the CUDA backend (MLA_CUDA=OFF or no nvcc)");
#endif
}

}  // namespace

bool BuiltWithCuda() {
#ifdef MLA_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<DeviceChoice> ChooseDevice(absl::string_view requested) {
  if (requested == "cpu") return DeviceChoice{false, 0, "cpu", "--device=cpu"};
  if (requested != "cuda" && requested != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be cpu, cuda or auto, got '", requested, "'"));
  }
  absl::StatusOr<DeviceChoice> cuda = ProbeCuda();
  if (cuda.ok()) return cuda;
  if (requested == "cuda") {
    return absl::FailedPreconditionError(
        absl::StrCat("--device=cuda but no CUDA device can be used: ", cuda.status().message()));
  }
  return DeviceChoice{false, 0, "cpu",
                      absl::StrCat("--device=auto fell back to the CPU: ", cuda.status().message())};
}

}  // namespace mla
