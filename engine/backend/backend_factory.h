// Creates the backend for a device name. The one place that knows every backend, so that
// the runner and the engine name none.
#ifndef MLA_ENGINE_BACKEND_BACKEND_FACTORY_H_
#define MLA_ENGINE_BACKEND_BACKEND_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace mla {

struct BackendOptions {
  std::string device = "cpu";  // "cpu" or "cuda" (device 0).
  int threads = 0;             // CPU threads, the caller included; 0 = all cores.
};

// INVALID_ARGUMENT for an unknown device; UNAVAILABLE for cuda in a build without CUDA.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_BACKEND_FACTORY_H_
