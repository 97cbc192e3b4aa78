// Storage of the latent KV cache in host memory: per layer one 64-byte aligned buffer
// laid out as [num_blocks, block_size, token row] (FlashMLA's paged layout), each token
// row in the CacheLayout's element layout (cache_row.h: bf16 c then k_pe, or DeepSeek's
// FP8 layout). One buffer per layer, not one for all, so that each
// layer's base is what a kernel takes as its `kv_cache` pointer and no single allocation
// has to cover the whole budget.
//
// Block ids come from a BlockPool; this class only knows where their bytes are. It does
// not check which blocks are allocated: the BlockTable passed to it is trusted for that.
#ifndef MLA_ENGINE_KV_CACHE_LATENT_CACHE_H_
#define MLA_ENGINE_KV_CACHE_LATENT_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/common/bf16.h"
#include "engine/common/tensor.h"
#include "engine/kv_cache/block_table.h"
#include "engine/kv_cache/cache_layout.h"

namespace mla {

class LatentCache {
 public:
  // Blocks that fit in `budget_bytes` (all layers): budget / layout.bytes_per_block(),
  // capped at INT32_MAX. INVALID_ARGUMENT when the budget holds less than one block.
  static absl::StatusOr<int32_t> BlocksForBudget(const CacheLayout& layout, int64_t budget_bytes);
  // Allocates BlocksForBudget(layout, budget_bytes) blocks.
  static absl::StatusOr<LatentCache> CreateWithBudget(const CacheLayout& layout,
                                                      int64_t budget_bytes);
  // Allocates `num_blocks` (> 0) blocks of either dtype. Contents start uninitialized.
  static absl::StatusOr<LatentCache> CreateWithBlocks(const CacheLayout& layout,
                                                      int32_t num_blocks);

  LatentCache(LatentCache&&) = default;
  LatentCache& operator=(LatentCache&&) = default;

  const CacheLayout& layout() const { return layout_; }
  int32_t num_blocks() const { return num_blocks_; }
  // Bytes of storage, all layers and components.
  size_t bytes() const;

  // Base of layer `layer`: [num_blocks, block_size, bytes_per_token_per_layer] bytes.
  // Token slot (block b, offset o) starts at byte (b * block_size + o) * row bytes.
  // Requires 0 <= layer < num_layers.
  uint8_t* LayerBytes(int layer) { return layers_[layer].as<uint8_t>(); }
  const uint8_t* LayerBytes(int layer) const { return layers_[layer].as<uint8_t>(); }
  // The same base as bf16 [num_blocks, block_size, L + R] elements (kBF16 layouts only):
  // k_pe at element + L of each row.
  bf16_t* LayerData(int layer) { return layers_[layer].as<bf16_t>(); }
  const bf16_t* LayerData(int layer) const { return layers_[layer].as<bf16_t>(); }
  // The V3.2 indexer keys of layer `layer`: [num_blocks] regions of
  // layout().index_bytes_per_block_per_layer() bytes, same block ids as LayerBytes, each
  // laid out as index_key_row.h says. Null when layout().index_key_dim() == 0.
  uint8_t* IndexKeyBytes(int layer) {
    return index_layers_.empty() ? nullptr : index_layers_[layer].as<uint8_t>();
  }
  const uint8_t* IndexKeyBytes(int layer) const {
    return index_layers_.empty() ? nullptr : index_layers_[layer].as<uint8_t>();
  }
  // Stores tokens first_pos .. first_pos + n - 1 of the sequence in `table`, encoding
  // fp32 into the layout (EncodeCacheRow: bf16 round to nearest even, or fp8 groups). latent: [n,
  // L] with row stride latent_stride; k_pe: [n, R] with row stride k_pe_stride (in floats). The
  // positions must already have blocks (first_pos + n <= table.capacity()); otherwise OUT_OF_RANGE
  // and nothing is written. n == 0 is a no-op.
  absl::Status WriteTokens(int layer, const BlockTable& table, int64_t first_pos, int64_t n,
                           const float* latent, int64_t latent_stride, const float* k_pe,
                           int64_t k_pe_stride);

  // The inverse of WriteTokens (the dequantized values), for reference kernels and tests.
  absl::Status ReadTokens(int layer, const BlockTable& table, int64_t first_pos, int64_t n,
                          float* latent, int64_t latent_stride, float* k_pe,
                          int64_t k_pe_stride) const;

  // Fills every element of storage, indexer keys included, with a NaN (kCacheNaNByte), so
  // that a kernel reading a slot that was never written produces NaN (tests use this to
  // prove no read past the end).
  void PoisonWithNaN();

 private:
  LatentCache(const CacheLayout& layout, int32_t num_blocks);
  absl::Status CheckAccess(int layer, const BlockTable& table, int64_t first_pos, int64_t n,
                           const void* latent, int64_t latent_stride, const void* k_pe,
                           int64_t k_pe_stride) const;

  CacheLayout layout_;
  int32_t num_blocks_;
  std::vector<AlignedBuffer> layers_;
  std::vector<AlignedBuffer> index_layers_;  // Empty without indexer keys.
};

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_LATENT_CACHE_H_
