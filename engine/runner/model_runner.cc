#include "engine/runner/model_runner.h"

#include <utility>

#include "engine/backend/backend_factory.h"
#include "engine/common/log.h"
#include "common/status_macros.h"
#include "engine/kv_cache/latent_cache.h"

namespace mla {

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const RunnerOptions& options) {
  MLA_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                       CreateBackend({options.device, options.threads}));
  MLA_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(options.model_dir));
  CacheLayoutConfig lc;
  lc.dtype = options.cache_dtype;
  lc.latent_dim = config.kv_lora_rank;
  lc.rope_dim = config.qk_rope_head_dim;
  lc.block_size = options.block_size;
  lc.num_layers = config.num_hidden_layers;
  MLA_ASSIGN_OR_RETURN(CacheLayout layout, CacheLayout::Create(lc));
  MLA_ASSIGN_OR_RETURN(int32_t blocks, LatentCache::BlocksForBudget(layout, options.kv_cache_bytes));
  MLA_RETURN_IF_ERROR(backend->AllocateCache(layout, blocks));
  MLA_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(options.model_dir, config));
  MLA_ASSIGN_OR_RETURN(std::unique_ptr<DeepseekModel> model,
                       DeepseekModel::Create(std::move(config), std::move(weights), backend.get()));
  LogInfo("model runner on ", backend->Describe());
  return std::make_unique<ModelRunner>(std::move(backend), std::move(model));
}

ModelRunner::ModelRunner(std::unique_ptr<Backend> backend, std::unique_ptr<DeepseekModel> model)
    : backend_(std::move(backend)), model_(std::move(model)) {}

ModelRunner::~ModelRunner() = default;

absl::StatusOr<StepOutput> ModelRunner::Execute(const StepInput& input) {
  absl::StatusOr<ForwardOutput> forward = model_->Forward(input.chunks);
  StepOutput out;
  out.probes = model_->TakeAttentionProbes();
  if (!forward.ok()) return forward.status();
  for (const RowSampling& r : input.rows) {
    if (r.row < 0 || r.row >= forward->rows) {
      return absl::InvalidArgumentError("sampling row outside the step's logits rows");
    }
  }
  out.samples.resize(input.rows.size());
  backend_->Sample(forward->logits, input.rows, out.samples, {"sample"});
  if (input.return_hidden && forward->rows > 0) {
    out.hidden.resize(static_cast<size_t>(forward->hidden.rows * forward->hidden.cols));
    backend_->Download(forward->hidden, out.hidden, {"hidden_download"});
  }
  MLA_RETURN_IF_ERROR(backend_->TakeError());
  workspace_bytes_.store(backend_->Memory().workspace_bytes, std::memory_order_relaxed);
  return out;
}

}  // namespace mla
