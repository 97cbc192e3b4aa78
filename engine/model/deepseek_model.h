// The DeepSeek-V2/V3 forward pass over a batch of sequence chunks, written once as named
// operations on the backend seam (engine/backend/backend.h) and run on whatever device
// the backend drives. Decode and prefill share one path: every chunk attends to its cached
// prefix and causally to itself, absorbed (q_nope·W_UK against the 576-wide latent) or,
// for long chunks where the backend can, decompressed (k_nope and v up-projected per
// head; attention_path.h says which and why).
// This file never names a device.
#ifndef MLA_ENGINE_MODEL_DEEPSEEK_MODEL_H_
#define MLA_ENGINE_MODEL_DEEPSEEK_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/kv_cache/block_table.h"
#include "engine/model/attention_path.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/model/weights.h"

namespace mla {

// One sequence's new tokens in a forward step.
struct SequenceChunk {
  std::span<const int32_t> tokens;    // The new tokens, at positions start_pos...
  int64_t start_pos = 0;              // Tokens already in the cache before this chunk.
  const BlockTable* table = nullptr;  // Must have capacity for start_pos + tokens.size().
  bool all_logits = false;            // Logits for every token (else only the last one).
  // Measure the attention sharpness of the chunk's last row in every layer (telemetry;
  // see Backend::ProbeAttention). Results: DeepseekModel::TakeAttentionProbes.
  bool probe_attention = false;
  // DeepSeek-V3.2 telemetry: count, in every layer, how many of the positions
  // [watch_begin, watch_end) (e.g. a needle's tokens) the indexer selected for the chunk's
  // last row. Empty range: off. Results: DeepseekModel::TakeIndexerRecall.
  int64_t watch_begin = 0;
  int64_t watch_end = 0;
};

// How many watched positions one layer's indexer kept for a chunk's last row.
struct ChunkIndexerRecall {
  size_t chunk = 0;
  int layer = 0;
  int64_t selected = 0;  // Watched positions among the row's selection.
  int64_t watched = 0;   // Watched positions the row may see.
};

// A probed row's sharpness in one layer, with the index of its chunk in the Forward call.
struct ChunkAttentionProbe {
  size_t chunk = 0;
  AttentionSharpness sharpness;
};

// What a forward step leaves in backend memory, valid until the next Forward. Rows are,
// chunk by chunk, every token (all_logits) or the last one; chunks without tokens give
// no rows.
struct ForwardOutput {
  int64_t rows = 0;
  Tensor logits;  // [rows, vocab]
  Tensor hidden;  // [rows, hidden]: the last layer's output before the final norm (MTP).
};

class DeepseekModel {
 public:
  // Loads config.json and the weights from a Hugging Face model directory and hands the
  // weights to `backend` (which must outlive the model and hold the latent cache).
  static absl::StatusOr<std::unique_ptr<DeepseekModel>> Load(const std::string& model_dir,
                                                             Backend* backend);
  // Wraps already-loaded weights (tests).
  static absl::StatusOr<std::unique_ptr<DeepseekModel>> Create(ModelConfig config,
                                                               ModelWeights weights,
                                                               Backend* backend);
  ~DeepseekModel();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() { return *backend_; }
  // The probes of the last Forward (chunks with probe_attention), layer by layer.
  std::vector<ChunkAttentionProbe> TakeAttentionProbes() { return std::move(probes_); }
  // The indexer recall of the last Forward (chunks with a watch range), layer by layer.
  std::vector<ChunkIndexerRecall> TakeIndexerRecall() { return std::move(recall_); }
  // Rows probed since construction, all layers counted once per row (tests prove with it
  // that nothing is probed while telemetry is off).
  int64_t probed_rows() const { return probed_rows_; }

  // How chunks attend (attention_path.h); starts as DefaultAttentionPath(). The
  // decompressed form is used only where the backend supports it and the model has no
  // V3.2 indexer (sparse attention stays absorbed); elsewhere every chunk is absorbed.
  AttentionPath attention_path() const { return attention_path_; }
  void set_attention_path(AttentionPath path) { attention_path_ = path; }

  // Runs every chunk through the model, writing their latents into the backend's cache.
  // Not thread-safe: one caller.
  absl::StatusOr<ForwardOutput> Forward(std::span<const SequenceChunk> chunks);
  // Forward, then the logits copied to the host ([rows, vocab]); for tests and tools.
  absl::StatusOr<std::vector<float>> ForwardToHost(std::span<const SequenceChunk> chunks);

 private:
  struct Layer;
  DeepseekModel(ModelConfig config, ModelWeights weights, Backend* backend);
  absl::Status UploadWeights();
  absl::Status CheckChunks(std::span<const SequenceChunk> chunks) const;
  void BuildStep(std::span<const SequenceChunk> chunks);
  // Whether a chunk attends decompressed this step (see attention_path.h).
  bool Decompress(const SequenceChunk& chunk) const;
  // True when a step's region from the first layer to lm_head may be recorded and
  // replayed (Backend::BeginGraphRegion): decode rows only, no telemetry.
  bool Replayable(std::span<const SequenceChunk> chunks) const;
  // Projections, cache write, absorbed attention, telemetry probes, W_UV and o_proj:
  // the attention block's output lands in the kTmp activation.
  absl::Status Attention(int layer, std::span<const SequenceChunk> chunks);
  absl::Status ProbeAttention(int layer, std::span<const SequenceChunk> chunks);
  // Absorbed attention (dense or, with a selection, sparse) of the step's queries
  // q [T, heads · (nope + rope)], the probes, then W_UV per head into attn [T, heads · v];
  // rows of decompressed chunks are overwritten afterwards.
  absl::Status AbsorbedAttention(int layer, bool sparse, const Tensor& q, Tensor attn,
                                 std::span<const SequenceChunk> chunks);
  // The V3.2 lightning indexer: writes every new token's indexer key to the cache and,
  // in a sparse step (sparse_step_), each row's selection (true).
  absl::StatusOr<bool> Indexer(int layer);
  // Indexer recall telemetry for the chunks with a watch range (sparse: a selection exists).
  absl::Status RecordIndexerRecall(int layer, std::span<const SequenceChunk> chunks, bool sparse);
  // A SiLU MLP; `shared` picks the shared-expert names for the profile.
  void Mlp(const ExpertTensors& w, const Tensor& x, Tensor out, int layer, bool shared);
  void Moe(int layer, const Tensor& x, Tensor out);

  ModelConfig config_;
  ModelWeights weights_;  // Host copy (the CPU backend reads it in place).
  Backend* backend_;
  Rope rope_;
  float softmax_scale_;
  MoeRoutingPolicy moe_policy_;  // From the config, once.
  // W_UK transposed per layer and head: [kv_lora_rank, nope], so that the absorbed query
  // q_lat = q_nope · W_UK is a plain GEMM.
  std::vector<Matrix> w_uk_t_;
  Tensor embed_, norm_, lm_head_;
  std::vector<Layer> layers_;
  // Per-step host state, reused across steps.
  StepBatch step_;
  std::vector<int32_t> step_tokens_;
  std::vector<float> cos_, sin_;
  std::vector<ChunkAttentionProbe> probes_;
  std::vector<ChunkIndexerRecall> recall_;
  std::vector<float> selection_row_;
  // V3.2: some row of the step sees more than index_topk keys, so every layer selects.
  bool sparse_step_ = false;
  int64_t probed_rows_ = 0;
  AttentionPath attention_path_ = DefaultAttentionPath();
};

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_DEEPSEEK_MODEL_H_
