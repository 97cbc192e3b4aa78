// The error shape every kernel's host-side params check uses: INVALID_ARGUMENT with the
// kernel's name first, so a caller sees which launch refused which field.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_CHECK_UTIL_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_CHECK_UTIL_H_

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mla::cuda::internal {

inline absl::Status Invalid(const char* kernel, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", what));
}

// A pointer that the kernel dereferences when there is work (`needed`).
inline absl::Status NeedPointer(const char* kernel, const void* ptr, const char* name,
                                bool needed) {
  if (needed && ptr == nullptr) return Invalid(kernel, absl::StrCat(name, " is null"));
  return absl::OkStatus();
}

struct NamedPointer {
  const void* ptr;
  const char* name;
};

// The first of `pointers` that is null while `needed`, as NeedPointer reports it.
inline absl::Status NeedPointers(const char* kernel, bool needed,
                                 std::initializer_list<NamedPointer> pointers) {
  for (const NamedPointer& p : pointers) {
    if (absl::Status s = NeedPointer(kernel, p.ptr, p.name, needed); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace mla::cuda::internal

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_CHECK_UTIL_H_
