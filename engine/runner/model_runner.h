// The model runner: owns one device's backend, the model's weights on it, the latent
// cache storage and the activation workspace, and runs a scheduled step end to end —
// forward pass, then sampling — returning only what the host needs (sampled ids,
// requested logprobs, telemetry). The engine holds a runner and names no device
// (nano-vllm's model_runner.py and vLLM's GPU model runner play this part).
#ifndef MLA_ENGINE_RUNNER_MODEL_RUNNER_H_
#define MLA_ENGINE_RUNNER_MODEL_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/kv_cache/cache_layout.h"
#include "engine/model/deepseek_model.h"

namespace mla {

struct RunnerOptions {
  std::string model_dir;
  std::string device = "cpu";                 // See engine/backend/backend_factory.h.
  int threads = 0;                            // CPU threads; 0 = all cores.
  int64_t kv_cache_bytes = int64_t{1} << 30;  // Latent cache budget, all layers.
  // On a device with its own memory (the GPU), > 0 sizes the cache instead from this
  // fraction of the device's memory (engine/runner/memory_plan.h), after the weights and
  // the workspace for max_batch_tokens / max_batch_seqs.
  double device_memory_fraction = 0.0;
  // With a fraction on such a device: > 0 caps the cache the fraction leaves at this
  // budget (the server passes --kv_cache_mib here when it is given explicitly).
  int64_t device_cache_cap_bytes = 0;
  int64_t max_batch_tokens = 512;
  int64_t max_batch_seqs = 64;
  int block_size = kDefaultBlockSize;
  CacheDType cache_dtype = CacheDType::kBF16;
  // DeepSeek-V3.2's indexer keys: unset follows cache_dtype (index_key_row.h: FP8 keys).
  std::optional<CacheDType> index_key_dtype;
};

// One step as the engine hands it over: the chunks of every scheduled sequence and the
// logits rows to sample or score (RowSampling::row counts rows of the step's logits:
// chunk by chunk, every token for all_logits chunks, else the last one).
struct StepInput {
  std::vector<SequenceChunk> chunks;
  std::vector<RowSampling> rows;
  bool return_hidden = false;  // Copy the final hidden states of the logits rows back.
};

struct StepOutput {
  std::vector<RowSample> samples;  // One per StepInput::rows entry.
  std::vector<ChunkAttentionProbe> probes;
  std::vector<ChunkIndexerRecall> indexer_recall;  // V3.2 chunks with a watch range.
  std::vector<float> hidden;                       // [logits rows, hidden] when return_hidden.
};

class ModelRunner {
 public:
  // Creates the backend, loads the model onto it and allocates the cache: as many blocks
  // as kv_cache_bytes holds.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(const RunnerOptions& options);
  // Runs a model on an existing backend whose cache is allocated (tests, benchmarks).
  ModelRunner(std::unique_ptr<Backend> backend, std::unique_ptr<DeepseekModel> model);
  ~ModelRunner();

  // Forward and sampling for one step. A failed forward fails the whole step; a row whose
  // sampling fails reports it in its RowSample.
  absl::StatusOr<StepOutput> Execute(const StepInput& input);

  // Two throwaway steps: a prefill chunk of up to `tokens` rows (capped by the cache and
  // the model's positions), then a step of up to `seqs` one-row sequences, the first of
  // them decoding after that chunk: the activation buffers reach the size the largest
  // step needs, and the device's first calls (GEMM algorithm choice, page faults, device
  // allocations) happen before any request, not in the first request's time to first
  // token. Uses cache blocks as scratch: call it before the cache holds anything.
  // Returns the prefill's rows (0: a cache too small to bother).
  absl::StatusOr<int64_t> Warmup(int64_t tokens, int64_t seqs);

  const ModelConfig& config() const { return model_->config(); }
  const ModelWeights& weights() const { return model_->weights(); }
  // Bytes of weights where the forward reads them: the device's copy on a GPU, the loaded
  // checkpoint on the CPU (which reads it in place).
  int64_t weight_bytes() const {
    const int64_t on_device = backend_->Memory().weight_bytes;
    return on_device > 0 ? on_device : model_->weights().bytes;
  }
  const CacheLayout& cache_layout() const { return backend_->cache_layout(); }
  int32_t num_cache_blocks() const { return backend_->cache_num_blocks(); }
  // "cpu", "cuda:0" (GetModelInfo, metrics labels).
  std::string device() const { return backend_->DeviceName(); }
  // Safe from any thread: updated after every step.
  int64_t workspace_bytes() const { return workspace_bytes_.load(std::memory_order_relaxed); }
  int64_t probed_rows() const { return model_->probed_rows(); }
  Backend& backend() { return *backend_; }
  DeepseekModel& model() { return *model_; }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DeepseekModel> model_;
  std::atomic<int64_t> workspace_bytes_{0};
};

}  // namespace mla

#endif  // MLA_ENGINE_RUNNER_MODEL_RUNNER_H_
