// Shape checks of GemmLt (plain C++, built with or without CUDA).
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/gemm_lt.h"

namespace mla::cuda {

absl::Status ValidateGemmLtParams(const GemmLtParams& p) {
  if (p.m < 0 || p.n < 0 || p.k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("GemmLt: need m, n >= 0 and k >= 1, got m=", p.m, " n=", p.n, " k=", p.k));
  }
  // cuBLASLt takes 64-bit layouts, but its algorithms index with int32 per dimension.
  if (p.m > INT32_MAX || p.n > INT32_MAX || p.k > INT32_MAX) {
    return absl::InvalidArgumentError("GemmLt: m, n and k must fit in int32");
  }
  if (p.ldx < p.k || p.ldw < p.k || p.ldy < p.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("GemmLt: leading dimensions too small: ldx=", p.ldx, " ldw=", p.ldw,
                     " (need >= k=", p.k, "), ldy=", p.ldy, " (need >= n=", p.n, ")"));
  }
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("GemmLt: x, w and y must be non-null");
  }
  const uintptr_t element = p.out_type == GemmOutType::kF32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(p.x) % 2 != 0 || reinterpret_cast<uintptr_t>(p.w) % 2 != 0 ||
      reinterpret_cast<uintptr_t>(p.y) % element != 0) {
    return absl::InvalidArgumentError("GemmLt: pointers must be aligned to their element size");
  }
  return absl::OkStatus();
}

}  // namespace mla::cuda
