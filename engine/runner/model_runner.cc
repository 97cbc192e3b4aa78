#include "engine/runner/model_runner.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "common/status_macros.h"
#include "engine/backend/backend_factory.h"
#include "engine/common/log.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/latent_cache.h"
#include "engine/runner/memory_plan.h"
#include "engine/sampling/rng.h"
#include "engine/sampling/sampling_params.h"

namespace mla {

namespace {

// The cache's block count: from a fraction of the device's memory when the backend has
// memory of its own and a fraction is set (at most the cap's blocks, when one is set), else
// from the explicit byte budget.
absl::StatusOr<int32_t> CacheBlocks(const RunnerOptions& options, const ModelConfig& config,
                                    const CacheLayout& layout, const Backend& backend) {
  const std::optional<DeviceMemoryStatus> device = backend.DeviceMemory();
  if (options.device_memory_fraction <= 0.0 || !device) {
    return LatentCache::BlocksForBudget(layout, options.kv_cache_bytes);
  }
  MLA_ASSIGN_OR_RETURN(
      int64_t workspace,
      EstimateWorkspaceBytes(config, {options.max_batch_tokens, options.max_batch_seqs, 1}));
  MemoryPlanInput in;
  in.total_bytes = device->total_bytes;
  in.free_bytes = device->free_bytes;
  in.weight_bytes = EstimateWeightBytes(config, WeightFormat::kBf16);
  // The estimate counts bf16 activations; the backend seam keeps them in fp32.
  in.workspace_bytes = 2 * workspace;
  in.memory_fraction = options.device_memory_fraction;
  in.bytes_per_block = layout.bytes_per_block();
  MLA_ASSIGN_OR_RETURN(MemoryPlan plan, PlanDeviceMemory(in));
  LogInfo("device memory plan: ", plan.num_blocks, " cache blocks (", plan.cache_bytes >> 20,
          " MiB) of ", in.total_bytes >> 20, " MiB at fraction ", in.memory_fraction, "; weights ~",
          in.weight_bytes >> 20, " MiB, workspace ~", in.workspace_bytes >> 20, " MiB");
  if (options.device_cache_cap_bytes > 0) {
    MLA_ASSIGN_OR_RETURN(const int32_t cap,
                         LatentCache::BlocksForBudget(layout, options.device_cache_cap_bytes));
    if (cap < plan.num_blocks) {
      LogInfo("cache capped at ", cap, " blocks (", options.device_cache_cap_bytes >> 20,
              " MiB, --kv_cache_mib) of the ", plan.num_blocks, " the plan allows");
      return cap;
    }
  }
  if (plan.num_blocks > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("the device memory plan exceeds 2^31 cache blocks");
  }
  return static_cast<int32_t>(plan.num_blocks);
}

}  // namespace

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
  lc.index_key_dim = config.index_head_dim;  // V3.2: the indexer keys, 0 otherwise.
  lc.index_dtype = options.index_key_dtype.value_or(options.cache_dtype);
  MLA_ASSIGN_OR_RETURN(CacheLayout layout, CacheLayout::Create(lc));
  MLA_ASSIGN_OR_RETURN(int32_t blocks, CacheBlocks(options, config, layout, *backend));
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
  out.indexer_recall = model_->TakeIndexerRecall();
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

absl::StatusOr<int64_t> ModelRunner::Warmup(int64_t tokens, int64_t seqs) {
  const int block = cache_layout().block_size();
  const int64_t capacity = int64_t{num_cache_blocks()} * block;
  seqs = std::max<int64_t>(1, std::min(seqs, tokens));
  // Each sequence may waste up to a block to rounding.
  tokens = std::min(
      {tokens, capacity - (seqs + 1) * block, int64_t{config().max_position_embeddings} - 1});
  if (tokens < seqs) return 0;  // A cache too small to bother: the first request warms up.
  BlockPool pool(num_cache_blocks());
  std::vector<BlockTable> tables(static_cast<size_t>(seqs), BlockTable(block));
  // Token 1: any id inside the vocabulary will do; the outputs are thrown away.
  const std::vector<int32_t> ids(static_cast<size_t>(tokens), 1);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  Rng rng(0);
  // Step 1, one chunk of `tokens` rows: the most rows, and the longest chunk's attention.
  // Step 2, `seqs` sequences of one row: the first decodes at `tokens` keys (the split
  // decode's partials), the others start (the most logits rows and samples).
  StepInput prefill, step;
  prefill.chunks.push_back({ids, 0, &tables[0]});
  prefill.rows.push_back({0, &greedy, &rng, -1, -1});
  absl::Status status = tables[0].Append(tokens + 1, pool);
  for (int64_t s = 0; s < seqs && status.ok(); ++s) {
    if (s > 0) status.Update(tables[static_cast<size_t>(s)].Append(1, pool));
    step.chunks.push_back({std::span<const int32_t>(ids.data(), 1), s == 0 ? tokens : 0,
                           &tables[static_cast<size_t>(s)]});
    step.rows.push_back({s, &greedy, &rng, -1, -1});
  }
  if (status.ok()) status.Update(Execute(prefill).status());
  if (status.ok()) status.Update(Execute(step).status());
  for (BlockTable& t : tables) t.Release(pool).IgnoreError();  // The scratch pool goes too.
  MLA_RETURN_IF_ERROR(status);
  return tokens;
}

}  // namespace mla
