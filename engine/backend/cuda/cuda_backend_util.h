// Small helpers shared by the files of CudaBackend (cuda_backend.cc, cuda_attention.cc,
// cuda_moe.cc); not part of the backend's interface.
#ifndef MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_UTIL_H_
#define MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_UTIL_H_

#include <cuda_runtime.h>

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/forward_f32.h"

namespace mla::cuda::internal {

inline std::string Shape(const Tensor& t) {
  return absl::StrCat("[", t.rows, ", ", t.cols, "]");
}

inline F32Matrix F32(const Tensor& t) {
  return F32Matrix{static_cast<float*>(t.data), t.rows, t.cols, t.stride};
}

inline cudaStream_t Raw(CudaStream s) { return reinterpret_cast<cudaStream_t>(s); }

// The seam's activations are F32 on this backend; anything else is a caller's bug.
inline absl::Status NeedF32(const Op& op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->dtype != DType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat(op.name, ": activations must be F32, got ", DTypeName(t->dtype)));
    }
  }
  return absl::OkStatus();
}

// Points *f32 or *bf16 at a weight vector's data by its dtype (norm kernels read either;
// the other stays null).
inline void VectorOf(const Tensor& t, const float** f32, const bf16_t** bf16) {
  if (t.dtype == DType::kBF16) {
    *bf16 = static_cast<const bf16_t*>(t.data);
  } else {
    *f32 = static_cast<const float*>(t.data);
  }
}

}  // namespace mla::cuda::internal

#endif  // MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_UTIL_H_
