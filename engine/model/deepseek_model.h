// The DeepSeek-V2/V3 forward pass over a batch of sequence chunks, on the CPU backend,
// reading and writing the paged latent KV cache. Decode and prefill share one path:
// every chunk attends absorbed (q_nope·W_UK against the 576-wide latent) to its cached
// prefix and causally to itself.
#ifndef MLA_ENGINE_MODEL_DEEPSEEK_MODEL_H_
#define MLA_ENGINE_MODEL_DEEPSEEK_MODEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/latent_cache.h"
#include "engine/model/attention_probe.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/model/weights.h"

namespace mla {

// One sequence's new tokens in a forward step.
struct SequenceChunk {
  std::span<const int32_t> tokens;  // The new tokens, at positions start_pos...
  int64_t start_pos = 0;            // Tokens already in the cache before this chunk.
  const BlockTable* table = nullptr;  // Must have capacity for start_pos + tokens.size().
  bool all_logits = false;          // Logits for every token (else only the last one).
  // Measure the attention sharpness of the chunk's last row in every layer (telemetry;
  // see attention_probe.h). Results: DeepseekModel::TakeAttentionProbes.
  bool probe_attention = false;
};

// A probed row's sharpness in one layer, with the index of its chunk in the Forward call.
struct ChunkAttentionProbe {
  size_t chunk = 0;
  AttentionSharpness sharpness;
};

class DeepseekModel {
 public:
  // Loads config.json and the weights from a Hugging Face model directory.
  static absl::StatusOr<std::unique_ptr<DeepseekModel>> Load(const std::string& model_dir,
                                                             cpu::ThreadPool* pool);
  // Wraps already-loaded weights (tests).
  DeepseekModel(ModelConfig config, ModelWeights weights, cpu::ThreadPool* pool);
  ~DeepseekModel();

  const ModelConfig& config() const { return config_; }
  // The probes of the last Forward (chunks with probe_attention), layer by layer.
  std::vector<ChunkAttentionProbe> TakeAttentionProbes() { return std::move(probes_); }
  // Rows probed since construction, all layers counted once per row (tests prove with it
  // that nothing is probed while telemetry is off).
  int64_t probed_rows() const { return probed_rows_; }
  // Bytes of activation workspace held after the last Forward; safe from any thread.
  int64_t workspace_bytes() const { return workspace_bytes_.load(std::memory_order_relaxed); }
  const ModelWeights& weights() const { return weights_; }

  // Runs every chunk through the model, writes their latents into `cache`, and returns
  // logits [rows, vocab] where rows are, chunk by chunk, every token (all_logits) or the
  // last token. Chunks with no tokens contribute no rows. Not thread-safe: one caller.
  absl::StatusOr<std::vector<float>> Forward(std::span<const SequenceChunk> chunks,
                                             LatentCache& cache);

 private:
  struct Workspace;
  absl::Status CheckChunks(std::span<const SequenceChunk> chunks, const LatentCache& cache) const;
  void Embed(std::span<const SequenceChunk> chunks, float* h) const;
  absl::Status Attention(int layer, std::span<const SequenceChunk> chunks, LatentCache& cache,
                         Workspace& ws);
  absl::Status ProbeAttention(int layer, std::span<const SequenceChunk> chunks,
                              const LatentCache& cache, const Workspace& ws);
  void Mlp(const MlpWeights& w, const float* x, int64_t n, float* out, Workspace& ws);
  void Moe(const MoeWeights& w, const float* x, int64_t n, float* out, Workspace& ws);

  ModelConfig config_;
  ModelWeights weights_;
  cpu::ThreadPool* pool_;
  Rope rope_;
  float softmax_scale_;
  // W_UK transposed per layer and head: [kv_lora_rank, nope], so that the absorbed query
  // q_lat = q_nope · W_UK is a plain Gemm.
  std::vector<std::vector<Matrix>> w_uk_t_;
  cpu::MlaAttentionWorkspace attention_ws_;  // Reused across steps (one caller thread).
  std::unique_ptr<Workspace> workspace_;     // Activations, reused across steps.
  std::atomic<int64_t> workspace_bytes_{0};
  std::vector<ChunkAttentionProbe> probes_;
  int64_t probed_rows_ = 0;
};

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_DEEPSEEK_MODEL_H_
