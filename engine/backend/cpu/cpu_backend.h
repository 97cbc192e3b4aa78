// The CPU implementation of the backend seam (engine/backend/backend.h): the existing
// kernels (Gemm, MlaAttention, the pointwise ops, the sampler) over host memory, split
// over one thread pool. Weights are read in place from the loaded checkpoint; the latent
// cache is a host LatentCache; activations are 64-byte aligned buffers reused across
// steps. Every operation is synchronous.
#ifndef MLA_ENGINE_BACKEND_CPU_CPU_BACKEND_H_
#define MLA_ENGINE_BACKEND_CPU_CPU_BACKEND_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/sparse_mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/kv_cache/latent_cache.h"

namespace mla::cpu {

// Not final: tests derive from it to observe or steer one operation of a real forward
// (dsa_golden_test replays IndexerTopK selections).
class CpuBackend : public Backend {
 public:
  // threads: the pool's threads, the caller included; 0 = all cores.
  explicit CpuBackend(int threads);
  ~CpuBackend() override;

  ThreadPool* pool() { return &pool_; }
  // The cache storage (tests poison it with NaN); null before AllocateCache.
  LatentCache* latent_cache() { return cache_ ? &*cache_ : nullptr; }

  std::string DeviceName() const override { return "cpu"; }
  std::string Describe() const override;
  absl::StatusOr<Tensor> AddWeight(std::string_view name, const MatrixView& host) override;
  absl::Status AllocateCache(const CacheLayout& layout, int32_t num_blocks) override;
  const CacheLayout& cache_layout() const override { return cache_->layout(); }
  int32_t cache_num_blocks() const override { return cache_ ? cache_->num_blocks() : 0; }
  absl::Status ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) override;
  absl::Status WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) override;
  Tensor Activation(int slot, int64_t rows, int64_t cols) override;
  BackendMemory Memory() const override;

  void Upload(std::span<const float> host, Tensor dst, Op op) override;
  void Download(const Tensor& src, std::span<float> host, Op op) override;
  void BeginStep(const StepBatch& batch) override { step_ = &batch; }

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
  bool SupportsDecompressedAttention() const override { return true; }
  void DecompressedAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                             const Tensor& kv_b, Tensor out, Op op) override;
  void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor out,
                 Op op) override;
  void RopeHalves(const Tensor& cos, const Tensor& sin, Tensor x, int heads, int64_t head_stride,
                  Op op) override;
  void WriteIndexKeys(int layer, const Tensor& keys, Op op) override;
  void IndexerTopK(int layer, int heads, float scale, float weight_scale, const Tensor& q,
                   const Tensor& w, Tensor selected, Op op) override;
  void SparseMlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                          const Tensor& selected, Tensor out, Tensor lse, Op op) override;
  void MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits, const Tensor& bias,
                  std::span<const ExpertTensors> experts, const Tensor& x, Tensor out,
                  Op op) override;
  absl::StatusOr<AttentionSharpness> ProbeAttention(int layer, int64_t seq, int64_t num_keys,
                                                    const Tensor& q_row, int heads,
                                                    float softmax_scale, Op op) override;
  void Sample(const Tensor& logits, std::span<const RowSampling> rows, std::span<RowSample> out,
              Op op) override;
  absl::Status TakeError() override;

 private:
  absl::Status CheckBlockCopy(int32_t block, size_t bytes) const;
  // Records the first error of the step (later ones are consequences).
  void Fail(absl::Status status);
  // Bytes of one block of one layer's indexer keys (0 without them).
  int64_t IndexBytesPerBlock() const;
  // Checks a step's rows against the cache's slot count (before anything is written).
  absl::Status CheckSlots(int64_t rows, Op op) const;
  absl::Status CheckAttentionTensors(int heads, const Tensor& q, const Tensor& out,
                                     const Tensor& lse, Op op) const;
  // The step's attention parameters for `layer` (MlaAttention, SparseMlaAttention).
  MlaAttentionParams AttentionParams(int layer, int heads, float softmax_scale, const Tensor& q,
                                     Tensor out, Tensor lse) const;
  // MlaAttention over the step's sequences [begin, end) only (rows rebased).
  absl::Status MlaAttentionRange(const MlaAttentionParams& all, int64_t begin, int64_t end);
  // An expert's SiLU MLP over m gathered rows: out [m, hidden].
  void ExpertMlp(const ExpertTensors& e, int64_t m, int64_t hidden);

  ThreadPool pool_;
  std::optional<LatentCache> cache_;
  std::vector<AlignedBuffer> activations_;  // By slot.
  MlaAttentionWorkspace attention_ws_;
  std::vector<int32_t> range_cu_seqlens_;  // MlaAttentionRange's rebased row offsets.
  SparseMlaWorkspace sparse_ws_;
  const StepBatch* step_ = nullptr;
  absl::Status error_;
  // MoE scratch: gathered rows and the expert MLP's intermediates.
  std::vector<float> expert_in_, expert_out_, gate_, up_, act_;
};

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_CPU_BACKEND_H_
