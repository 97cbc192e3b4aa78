// Sizing of the device latent cache from a memory fraction (plain C++, tested anywhere).
//
// The cache gets what is left of fraction × total device memory once the memory already in
// use (CUDA context, other processes: total − free), the weights still to be loaded and
// the forward pass's workspace are taken out:
//   budget = ⌊fraction · total⌋ − (total − free) − weights − workspace
//   blocks = ⌊budget / bytes_per_block⌋
// The estimates below give the weight and workspace terms from the model config, so that
// a server can refuse a model before it loads a single tensor.
#ifndef MLA_ENGINE_RUNNER_MEMORY_PLAN_H_
#define MLA_ENGINE_RUNNER_MEMORY_PLAN_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/kv_cache/cache_layout.h"
#include "engine/model/config.h"

namespace mla {

struct MemoryPlanInput {
  int64_t total_bytes = 0;  // cudaMemGetInfo's total
  int64_t free_bytes = 0;   // cudaMemGetInfo's free, before the weights are loaded
  int64_t weight_bytes = 0;
  int64_t workspace_bytes = 0;
  double memory_fraction = 0.9;  // (0, 1]
  int64_t bytes_per_block = 0;   // every layer's share of one cache block
  int64_t min_blocks = 1;        // fewer is an error (one sequence needs some room)
};

struct MemoryPlan {
  int64_t num_blocks = 0;
  int64_t cache_bytes = 0;   // num_blocks · bytes_per_block
  int64_t budget_bytes = 0;  // what was available to the cache
  int64_t unused_bytes = 0;  // budget − cache_bytes (less than one block)
};

// INVALID_ARGUMENT for inconsistent inputs; RESOURCE_EXHAUSTED, naming every term in GiB,
// when the weights alone, or the weights and the workspace, or min_blocks do not fit.
absl::StatusOr<MemoryPlan> PlanDeviceMemory(const MemoryPlanInput& input);

// How the linear weights are stored on the device.
enum class WeightFormat {
  kBf16,  // every tensor bf16
  kFp8,   // linear weights fp8 with one fp32 scale per fp8_block_rows × fp8_block_cols
          // block; embeddings, router and norms stay bf16 (the DeepSeek-V3 checkpoints)
};

// Parameters of the model as the config describes it (embeddings, every layer's attention,
// MLP or MoE with shared experts and router, norms, lm_head unless tied).
int64_t CountModelParams(const ModelConfig& config);

// Device bytes of the weights in `format`.
int64_t EstimateWeightBytes(const ModelConfig& config, WeightFormat format);

// One latent cache block on the device: every layer's block_size token rows in `dtype`'s
// layout ((kv_lora_rank + rope) × 2 bytes in bf16, 656 per DeepSeek row in fp8).
int64_t LatentCacheBlockBytes(const ModelConfig& config, int block_size,
                              CacheDType dtype = CacheDType::kBF16);

struct WorkspaceShape {
  int64_t max_batch_tokens = 0;  // rows of one forward pass (prefill chunks + decode)
  int64_t max_batch_seqs = 0;    // sequences of one pass (logits rows, decode queries)
  int num_parts = 0;             // split-KV parts of the decode plan (MlaDecodePlan)
};

// An upper bound on the forward pass's device workspace: per-token activations of every
// stage (bf16, reused across layers) × max_batch_tokens, routed-expert rows (× top_k),
// fp32 logits per sequence, the split-KV attention partials and the decompressed
// prefill's scratch (kMaxDecompressedChunkBytes and its softmax state). INVALID_ARGUMENT for
// non-positive shapes.
absl::StatusOr<int64_t> EstimateWorkspaceBytes(const ModelConfig& config,
                                               const WorkspaceShape& shape);

}  // namespace mla

#endif  // MLA_ENGINE_RUNNER_MEMORY_PLAN_H_
