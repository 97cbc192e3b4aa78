// Chooses the compute device from the --device flag. Always compiled, so that a build
// without CUDA still answers "cuda" with a clear error and "auto" with the CPU.
#ifndef MLA_ENGINE_BACKEND_CUDA_DEVICE_H_
#define MLA_ENGINE_BACKEND_CUDA_DEVICE_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace mla {

struct DeviceChoice {
  bool cuda = false;
  int ordinal = 0;
  std::string description;  // "cpu" or "cuda:0 (NVIDIA H200)"
  std::string reason;       // Why this device was chosen (logged at start-up).
};

// True when this binary was built with the CUDA backend.
bool BuiltWithCuda();

// `requested` is "cpu", "cuda" or "auto". "cuda" fails when no device can be used;
// "auto" falls back to the CPU and says why in `reason`.
absl::StatusOr<DeviceChoice> ChooseDevice(absl::string_view requested);

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_CUDA_DEVICE_H_
