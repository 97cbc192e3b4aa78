// The CUDA implementation of the backend seam (engine/backend/backend.h). The kernels it
// will call exist (kernels/, gemm_lt.h); wiring them in is the next step of the GPU
// bring-up. Until then every entry point reports UNIMPLEMENTED naming the operation, so
// --device=cuda fails at load with that message instead of computing anything wrong.
#ifndef MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_
#define MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_

#include <optional>
#include <string>

#include "engine/backend/backend.h"

namespace mla::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::string description) : description_(std::move(description)) {}

  std::string DeviceName() const override { return "cuda:0"; }
  std::string Describe() const override { return description_; }
  absl::StatusOr<Tensor> AddWeight(std::string_view name, const MatrixView& host) override;
  absl::Status AllocateCache(const CacheLayout& layout, int32_t num_blocks) override;
  const CacheLayout& cache_layout() const override { return *layout_; }
  int32_t cache_num_blocks() const override { return 0; }
  absl::Status ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) override;
  absl::Status WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) override;
  Tensor Activation(int slot, int64_t rows, int64_t cols) override;
  BackendMemory Memory() const override { return {}; }

  void Upload(std::span<const float> host, Tensor dst, Op op) override;
  void Download(const Tensor& src, std::span<float> host, Op op) override;
  void BeginStep(const StepBatch& batch) override;
  void Embed(const Tensor& table, std::span<const int32_t> tokens, Tensor out, Op op) override;
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out, Op op) override;
  void Gemm(const Tensor& x, const Tensor& w, Tensor y, Op op) override;
  void Copy(const Tensor& src, Tensor dst, Op op) override;
  void Fill(Tensor t, float value, Op op) override;
  void Add(const Tensor& x, Tensor y, Op op) override;
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor out, Op op) override;
  void Rope(const Tensor& cos, const Tensor& sin, Tensor x, int heads, int64_t head_stride,
            Op op) override;
  void WriteCache(int layer, const Tensor& latent, const Tensor& k_pe, Op op) override;
  void MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q, Tensor out,
                    Tensor lse, Op op) override;
  void MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits,
                  const Tensor& bias, std::span<const ExpertTensors> experts, const Tensor& x,
                  Tensor out, Op op) override;
  absl::StatusOr<AttentionSharpness> ProbeAttention(int layer, int64_t seq, int64_t num_keys,
                                                    const Tensor& q_row, int heads,
                                                    float softmax_scale, Op op) override;
  void Sample(const Tensor& logits, std::span<const RowSampling> rows, std::span<RowSample> out,
              Op op) override;
  absl::Status TakeError() override;

 private:
  // Records UNIMPLEMENTED naming `what` (the first one of a step is reported).
  void Unimplemented(std::string_view what);

  std::string description_;
  std::optional<CacheLayout> layout_;
  absl::Status error_;
};

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_
