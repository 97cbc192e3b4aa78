// The CUDA implementation of the backend seam (engine/backend/backend.h).
//
// Memory: weights are uploaded once at load in their checkpoint dtype (bf16, or fp32 for
// the small vectors; FP8 checkpoints arrive dequantized to bf16 by the loader, which halves
// nothing but keeps one GEMM path — see docs/ARCHITECTURE.md), the paged latent cache is
// one device allocation of [layers][blocks · block_size][L + R] bf16, activations are fp32
// device buffers per slot, grown on demand and reused across steps.
//
// Work: everything is enqueued on one stream; the host waits only where it must read a
// result (Download, Sample, ProbeAttention, and the expert counts of a MoE step too large
// for the grouped kernel). GEMMs convert their fp32 input to bf16 and run on cuBLASLt with
// fp32 accumulation and output (fp32 weights go through cuBLAS' SGEMM); attention runs the
// kernels of kernels/forward_f32.h; MoE routes and permutes on the device, then runs the
// experts of decode-sized steps through the grouped kernel (kernels/grouped_gemm.h, the
// offsets never leave the device) and larger steps as one GEMM triple per used expert.
// Sampling takes the
// argmax of greedy rows, the top k of top-k rows, the draw of rows without top-k and the
// logprob statistics on the device (cuda_sampling.cc: only ids, candidates and a few
// numbers per row come back); rows the device cannot decide download their logits and run
// the CPU backend's sampler.
//
// Decode steps can be recorded as CUDA graphs and replayed (cuda_graphs.cc; off by
// default, MLA_CUDA_GRAPHS=on).
//
// Errors are sticky (backend.h): a failing launch or CUDA call records the first error,
// naming the operation and layer, and TakeError() returns it.
#ifndef MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_
#define MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/host/graph_cache.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/host/moe_plan.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/sampling.h"

namespace mla::cuda {

class CublasHandle;
class GemmLt;

class CudaBackend final : public Backend {
 public:
  // Selects device `ordinal`, creates the stream and the cuBLAS / cuBLASLt handles.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int ordinal);
  ~CudaBackend() override;

  // Sets every cache byte to 0xff (a NaN in every bf16 element), so that a test sees any
  // read of a slot that was never written.
  absl::Status PoisonCacheWithNaN();
  // Rows Sample has drawn on the host from downloaded logits so far (cuda_sampling.cc's
  // host path): tests check which rows stay on the device.
  int64_t host_sampled_rows() const { return host_sampled_rows_; }
  // How MoeExperts runs the expert GEMMs (host/moe_plan.h); kAuto by default, tests force
  // either path and compare them. moe_grouped_calls() counts the MoeExperts calls that ran
  // grouped.
  void set_grouped_experts(GroupedExperts mode) { grouped_experts_ = mode; }
  int64_t moe_grouped_calls() const { return moe_grouped_calls_; }
  // CUDA graphs (cuda_graphs.cc): decode steps' regions recorded per key and replayed.
  // Off by default until measured on a device (MLA_CUDA_GRAPHS=on turns it on at
  // Create); tests turn it on. The counters say how many regions were recorded and
  // replayed.
  void set_graphs(bool on) { graphs_on_ = on; }
  // Tests: the scratch a group of sparse prefill rows may take (kMaxSparsePrefillBytes), so
  // that a small one splits a prefill into many groups.
  void set_sparse_prefill_bytes(int64_t bytes) { sparse_prefill_bytes_ = bytes; }
  int64_t graph_captures() const { return graph_captures_; }
  int64_t graph_replays() const { return graph_replays_; }
  // Steps whose every row is a decode row run the split-KV decode kernel (kernels/
  // mla_decode.h) when the shapes allow (64-token blocks, L ≤ 512); off, every step runs
  // the generic attention kernel. On by default; tests compare the two.
  void set_split_kv_decode(bool on) { split_kv_decode_ = on; }
  // The scratch budget of DecompressedAttention's key chunks (kMaxDecompressedChunkBytes;
  // at most that, or the memory plan no longer bounds it). Tests lower it so that short
  // sequences span several chunks.
  void set_decompress_chunk_bytes(int64_t bytes) {
    decompress_chunk_bytes_ = std::min(bytes, kMaxDecompressedChunkBytes);
  }

  // "cuda:0 (NVIDIA H200)", as GetModelInfo.device documents it.
  std::string DeviceName() const override { return name_; }
  std::string Describe() const override { return description_; }
  absl::StatusOr<Tensor> AddWeight(std::string_view name, const MatrixView& host) override;
  absl::Status AllocateCache(const CacheLayout& layout, int32_t num_blocks) override;
  const CacheLayout& cache_layout() const override { return *layout_; }
  int32_t cache_num_blocks() const override { return num_blocks_; }
  absl::Status ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) override;
  absl::Status WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) override;
  Tensor Activation(int slot, int64_t rows, int64_t cols) override;
  BackendMemory Memory() const override;
  std::optional<DeviceMemoryStatus> DeviceMemory() const override;

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
  void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor out,
                 Op op) override;
  void RopeHalves(const Tensor& cos, const Tensor& sin, Tensor x, int heads, int64_t head_stride,
                  Op op) override;
  void WriteIndexKeys(int layer, const Tensor& keys, Op op) override;
  void IndexerTopK(int layer, int heads, float scale, float weight_scale, const Tensor& q,
                   const Tensor& w, Tensor selected, Op op) override;
  void SparseMlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                          const Tensor& selected, Tensor out, Tensor lse, Op op) override;
  void MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q, Tensor out,
                    Tensor lse, Op op) override;
  // Chunk by chunk (host/decompress_plan.h, kernels/decompressed_attention.h).
  bool SupportsDecompressedAttention() const override { return true; }
  void DecompressedAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                             const Tensor& kv_b, Tensor out, Op op) override;
  void MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits, const Tensor& bias,
                  std::span<const ExpertTensors> experts, const Tensor& x, Tensor out,
                  Op op) override;
  absl::StatusOr<AttentionSharpness> ProbeAttention(int layer, int64_t seq, int64_t num_keys,
                                                    const Tensor& q_row, int heads,
                                                    float softmax_scale, Op op) override;
  void Sample(const Tensor& logits, std::span<const RowSampling> rows, std::span<RowSample> out,
              Op op) override;
  absl::Status TakeError() override;
  GraphRegion BeginGraphRegion(uint32_t variant) override;
  bool EndGraphRegion(bool complete) override;

 private:
  // What decides the split-KV decode kernel's grid: the cache's widths and element type.
  struct DecodeGridKey {
    int latent = 0;
    int rope = 0;
    bool fp8 = false;
    bool operator==(const DecodeGridKey&) const = default;
  };

  StepGraphKey CurrentGraphKey(uint32_t variant) const;
  // Ends a recording that cannot go on (a buffer must grow, which frees memory the
  // recording points into); the region's remaining operations run eagerly and
  // EndGraphRegion asks for the whole region again.
  void AbortCapture();
  // Destroys the recordings the cache hands back.
  void DestroyGraphs(const std::vector<void*>& execs);
  bool InCapture() const { return capturing_ || capture_aborted_; }
  // Uploads a split-KV plan into the buffers the kernels read it from.
  absl::Status UploadDecodePlan(const MlaDecodePlan& plan);
  // The split-KV kernels' parameters for `batch` sequences of one query row under `plan`,
  // on the backend's buffers (q_bf16_, out_bf16_, the partials); seq_lens and lse are the
  // caller's.
  MlaDecodeParams SplitKvParams(int layer, int heads, float softmax_scale, int64_t batch,
                                const MlaDecodePlan& plan);
  // The split-KV plan's options for `heads` on the current cache and step.
  absl::StatusOr<MlaDecodePlanOptions> DecodePlanOptions(int heads);
  // Plans and uploads the split-KV decode of the current step for `heads` (once a step);
  // with `topk` (V3.2's sparse attention) over min(topk, length) selected keys a sequence.
  absl::Status PlanSplitKv(int heads, int topk = 0);
  CudaBackend(std::string name, std::string description);

  // Records the first error (later ones are consequences), prefixed with the operation.
  void Fail(const Op& op, absl::Status status);
  // Grows `buffer` to at least `bytes` (contents lost on growth).
  absl::Status Reserve(DeviceBuffer& buffer, size_t bytes);
  // Rope and RopeHalves: interleaved or half-split pairs.
  void RopeImpl(const Tensor& cos, const Tensor& sin, const Tensor& x, int heads,
                int64_t head_stride, bool halves, const Op& op);
  // Every slot of the step inside the cache (WriteCache, WriteIndexKeys: checked before
  // anything is written, so a bad step leaves the cache as it was).
  absl::Status CheckStepSlots() const;
  // MlaAttention's and SparseMlaAttention's tensors against the step and the cache layout.
  absl::Status CheckAttentionTensors(int heads, const Tensor& q, const Tensor& out,
                                     const Tensor& lse) const;
  // The generic attention kernel's parameters for the step (dense; callers add a skip mask
  // or a selection).
  MlaAttentionF32Params GenericAttentionParams(int layer, int heads, float softmax_scale,
                                               const Tensor& q, const Tensor& out,
                                               const Tensor& lse) const;
  // The base of layer `layer` in the cache: rows of the layout's bytes per token and layer.
  void* CacheLayer(int layer) const;
  // DeepSeek-V3.2: layer `layer`'s indexer keys, [num_blocks] block regions in the layout
  // of engine/kv_cache/index_key_row.h, after every layer's latents (the host's block
  // order, CpuBackend::ReadCacheBlock).
  void* IndexKeyLayer(int layer) const;
  bool CacheFp8() const { return layout_ && layout_->dtype() == CacheDType::kFp8E4M3; }
  // MoeExperts' expert GEMMs from the permuted rows into expert_out: one grouped launch per
  // matrix kind, or one GEMM triple per used expert after downloading the offsets.
  absl::Status GroupedExpertGemms(std::span<const ExpertTensors> experts, const Tensor& permuted,
                                  const Tensor& expert_out);
  absl::Status PerExpertGemms(std::span<const ExpertTensors> experts, const Tensor& permuted,
                              const Tensor& expert_out);
  // y = x · wᵀ without the op's timer (MoeExperts reuses it per expert).
  absl::Status GemmImpl(const Tensor& x, const Tensor& w, const Tensor& y);
  absl::Status Sync();
  // Checks a cache block copy of `bytes`, waits for the stream, then calls `copy` once per
  // layer with the offsets of that layer's share in the host bytes and in the device cache.
  absl::Status ForEachLayerOfBlock(
      int32_t block, size_t bytes,
      absl::FunctionRef<absl::Status(int64_t host_offset, int64_t device_offset, int64_t size)>
          copy);
  // The split-KV decode of MlaAttention; false when the step or shapes do not allow it.
  bool CanSplitKvDecode(int heads) const;
  // Whether the split-KV kernels take the cache and heads (any step; SparseMlaAttention
  // runs a prefill's rows on them too).
  bool SplitKvTakes(int heads) const;
  absl::Status SparsePrefillSplitKv(int layer, int heads, float softmax_scale, const Tensor& q,
                                    const Tensor& out, const Tensor& lse, const int32_t* selected,
                                    int topk);
  // `selected` (with topk): SparseMlaAttention's selection, one row per sequence.
  absl::Status SplitKvDecode(int layer, int heads, float softmax_scale, const Tensor& q,
                             const Tensor& out, const Tensor& lse,
                             const int32_t* selected = nullptr, int topk = 0);
  // DecompressedAttention for one marked sequence of the step, after the checks.
  absl::Status DecompressSequence(int layer, int64_t seq, int heads, int nope, int v,
                                  float softmax_scale, const Tensor& q, const Tensor& kv_b,
                                  const Tensor& out);

  std::string name_;
  std::string description_;
  int num_sms_ = 0;
  // Split-KV decode CTAs one multiprocessor holds and query rows per CTA, for the cache of
  // decode_grid_key_ (the kernel that runs, and so the counts, depend on its widths and
  // element type).
  int decode_ctas_per_sm_ = 1;
  int decode_rows_per_cta_ = kMlaDecodeRowsPerCta;
  DecodeGridKey decode_grid_key_;
  bool split_kv_decode_ = true;
  int64_t decompress_chunk_bytes_ = kMaxDecompressedChunkBytes;
  CudaStream stream_ = nullptr;
  std::unique_ptr<CublasHandle> cublas_;
  std::unique_ptr<GemmLt> lt_;
  absl::Status error_;

  std::vector<DeviceBuffer> weights_;
  int64_t weight_bytes_ = 0;
  std::optional<CacheLayout> layout_;
  DeviceBuffer cache_;
  int32_t num_blocks_ = 0;
  std::vector<DeviceBuffer> activations_;  // By slot.

  // The current step on the device (BeginStep) and its host description.
  const StepBatch* step_ = nullptr;
  std::vector<int32_t> row_seq_;
  // The block table on the device has rows of table_width_ = BlockTableWidth(max_blocks)
  // entries (host/graph_cache.h), re-strided from the step's through table_host_.
  int64_t table_width_ = 0;
  std::vector<int32_t> table_host_;
  DeviceBuffer block_table_, seq_lens_, q_pos0_, cu_seqlens_q_, row_seq_dev_, slots_, tokens_,
      decompress_dev_;
  bool decode_only_ = false;  // Every sequence of the step has one row.
  // The split-KV plan of the step (planned at its first attention, reused by every layer).
  int64_t step_number_ = 0, planned_step_ = -1;
  int planned_heads_ = 0, planned_topk_ = 0;
  std::vector<int32_t> plan_lens_;  // a sparse plan's key counts
  std::vector<int32_t> row_lens_;   // a sparse prefill's keys each row sees (for a step)
  int64_t row_lens_step_ = -1;
  int64_t sparse_prefill_bytes_ = kMaxSparsePrefillBytes;
  DeviceBuffer row_lens_dev_;
  MlaDecodePlan decode_plan_;  // host copy of the plan uploaded for the step
  DeviceBuffer plan_parts_dev_, plan_splits_dev_, q_bf16_, out_bf16_, partial_out_, partial_lse_;
  // Decompressed attention: one chunk's latents and up-projected keys, the rows' state.
  DeviceBuffer decompress_latent_, decompress_kv_, decompress_state_;
  // Scratch: the GEMM's bf16 input, MoE routing and expert rows, probe sums.
  DeviceBuffer gemm_in_, expert_ids_, expert_weights_, counts_, offsets_, sorted_pairs_, pair_rows_,
      permuted_, expert_out_, expert_gate_, expert_up_, probe_stats_, indexer_scores_;
  std::vector<int32_t> offsets_host_;
  // CUDA graphs (host/graph_cache.h decides; a recording's handle is a cudaGraphExec_t).
  bool graphs_on_ = false;
  int64_t generation_ = 0;  // bumped whenever a device buffer moves
  int last_heads_ = 0;      // heads of the last attention, to plan split-KV in BeginStep
  int last_topk_ = 0;       // top-k of the last sparse attention, likewise (V3.2)
  StepGraphCache graph_cache_;
  bool capturing_ = false, capture_aborted_ = false;
  absl::Status capture_error_;
  StepGraphKey capture_key_;
  int64_t capture_generation_ = 0;
  int64_t graph_captures_ = 0, graph_replays_ = 0;
  GroupedExperts grouped_experts_ = GroupedExperts::kAuto;
  int64_t moe_grouped_calls_ = 0;
  // The grouped kernel's weight table of each layer's experts (gate, then up, then down,
  // num_experts each), uploaded at the layer's first grouped call; the key is the layer's
  // expert span, which lives as long as the model.
  absl::flat_hash_map<const ExpertTensors*, DeviceBuffer> grouped_tables_;
  // Sampling (cuda_sampling.cc): the device argmax of greedy rows, the device top-k of
  // top-k rows, host copies of the other rows' logits.
  DeviceBuffer argmax_ids_, argmax_max_, top_k_dev_, top_k_ids_, top_k_values_, stats_max_,
      stats_log_sum_, stats_infs_, score_rows_dev_, score_tokens_dev_, score_logits_;
  std::vector<int32_t> argmax_ids_host_, top_k_host_, top_k_ids_host_, score_tokens_;
  std::vector<int64_t> score_rows_;
  std::vector<double> stats_log_sum_host_;
  std::vector<float> argmax_max_host_, top_k_values_host_, stats_max_host_, score_logits_host_,
      logits_host_, sparse_row_, candidate_logprobs_;
  std::vector<size_t> candidate_order_;
  // Draw rows (top-k off): their WeightSum sums, then the rows that Draw takes.
  DeviceBuffer draw_rows_dev_, draw_max_, draw_weight_sum_, draw_ids_, draw_logits_;
  std::vector<DrawRow> draw_rows_, draw_active_;
  std::vector<float> draw_max_host_, draw_logits_host_;
  std::vector<double> draw_weight_sum_host_;
  std::vector<int32_t> draw_ids_host_;
  int64_t host_sampled_rows_ = 0;
};

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_
