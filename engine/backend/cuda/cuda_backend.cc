#include "engine/backend/cuda/cuda_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace mla::cuda {
namespace {

absl::Status NotYet(std::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat("the CUDA backend does not implement ", std::string(what), " yet; use --device=cpu"));
}

}  // namespace

void CudaBackend::Unimplemented(std::string_view what) {
  if (error_.ok()) error_ = NotYet(what);
}

absl::Status CudaBackend::TakeError() { return std::exchange(error_, absl::OkStatus()); }

absl::StatusOr<Tensor> CudaBackend::AddWeight(std::string_view name, const MatrixView&) {
  return NotYet(absl::StrCat("weight upload (", std::string(name), ")"));
}

absl::Status CudaBackend::AllocateCache(const CacheLayout& layout, int32_t) {
  layout_ = layout;
  return NotYet("the device latent cache");
}

absl::Status CudaBackend::ReadCacheBlock(int32_t, std::span<uint8_t>) {
  return NotYet("cache block copies");
}

absl::Status CudaBackend::WriteCacheBlock(int32_t, std::span<const uint8_t>) {
  return NotYet("cache block copies");
}

Tensor CudaBackend::Activation(int, int64_t rows, int64_t cols) {
  Unimplemented("activation memory");
  return Tensor{nullptr, DType::kF32, rows, cols, cols};
}

void CudaBackend::Upload(std::span<const float>, Tensor, Op op) { Unimplemented(op.name); }
void CudaBackend::Download(const Tensor&, std::span<float>, Op op) { Unimplemented(op.name); }
void CudaBackend::BeginStep(const StepBatch&) { Unimplemented("step upload"); }
void CudaBackend::Embed(const Tensor&, std::span<const int32_t>, Tensor, Op op) {
  Unimplemented(op.name);
}
void CudaBackend::RmsNorm(const Tensor&, const Tensor&, float, Tensor, Op op) {
  Unimplemented(op.name);
}
void CudaBackend::Gemm(const Tensor&, const Tensor&, Tensor, Op op) { Unimplemented(op.name); }
void CudaBackend::Copy(const Tensor&, Tensor, Op op) { Unimplemented(op.name); }
void CudaBackend::Fill(Tensor, float, Op op) { Unimplemented(op.name); }
void CudaBackend::Add(const Tensor&, Tensor, Op op) { Unimplemented(op.name); }
void CudaBackend::SiluMul(const Tensor&, const Tensor&, Tensor, Op op) { Unimplemented(op.name); }
void CudaBackend::Rope(const Tensor&, const Tensor&, Tensor, int, int64_t, Op op) {
  Unimplemented(op.name);
}
void CudaBackend::WriteCache(int, const Tensor&, const Tensor&, Op op) { Unimplemented(op.name); }
void CudaBackend::MlaAttention(int, int, float, const Tensor&, Tensor, Tensor, Op op) {
  Unimplemented(op.name);
}
void CudaBackend::MoeExperts(const MoeRoutingPolicy&, const Tensor&, const Tensor&,
                             std::span<const ExpertTensors>, const Tensor&, Tensor, Op op) {
  Unimplemented(op.name);
}
absl::StatusOr<AttentionSharpness> CudaBackend::ProbeAttention(int, int64_t, int64_t,
                                                               const Tensor&, int, float, Op op) {
  return NotYet(op.name);
}
void CudaBackend::Sample(const Tensor&, std::span<const RowSampling>, std::span<RowSample>,
                         Op op) {
  Unimplemented(op.name);
}

}  // namespace mla::cuda
