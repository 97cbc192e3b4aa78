// The element layout of the latent KV cache, kept behind one descriptor so that kernels,
// the memory budget arithmetic and the metrics never hard-code "576 values x 2 bytes".
//
// One token of one layer occupies a fixed-size slot:
//   kBF16:    [latent L × bf16][k_pe R × bf16]                          (L + R) · 2 bytes
//   kFp8E4M3: [latent L × fp8 e4m3][⌈L/128⌉ × fp32 scales][k_pe R × bf16]
//             L + 4⌈L/128⌉ + 2R bytes (the last scale group is shorter when 128 ∤ L)
// Per layer the storage is [num_blocks, block_size, slot]; a block holds block_size
// consecutive tokens of one sequence in every layer.
//
// DeepSeek-V3.2 adds a second component: the lightning indexer's key per token and layer
// (index_key_dim values), stored beside the latent in its own per-layer array of blocks
// under the same block ids and slots, so that prefix caching, preemption and block
// accounting treat it as part of the block while the latent slot layout (and every kernel
// reading it) stays as it is. One block of it (index_key_row.h):
//   kBF16:    [block_size × index_key_dim bf16]                          2 · dim bytes a token
//   kFp8E4M3: [block_size × index_key_dim e4m3][block_size × fp32 scale]  dim + 4 bytes a token
#ifndef MLA_ENGINE_KV_CACHE_CACHE_LAYOUT_H_
#define MLA_ENGINE_KV_CACHE_CACHE_LAYOUT_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace mla {

// How one cached token is stored.
enum class CacheDType {
  kBF16,
  // DeepSeek's FP8 layout: 512 + 16 + 128 = 656 bytes per token and layer for DeepSeek
  // (engine/kv_cache/cache_row.h: the quantization).
  kFp8E4M3,
};

// "bf16" or "fp8_e4m3".
const char* CacheDTypeName(CacheDType dtype);
// "bf16", or "fp8" / "fp8_e4m3"; INVALID_ARGUMENT naming the accepted values otherwise.
absl::StatusOr<CacheDType> ParseCacheDType(std::string_view name);

inline constexpr int kDefaultBlockSize = 64;  // FlashMLA's block size.
// Latent values covered by one fp32 scale in the FP8 layout (the last group of a latent
// that is not a multiple of it covers the rest).
inline constexpr int kFp8ScaleGroup = 128;
// Scale groups of a latent of `latent_dim` values.
inline constexpr int64_t Fp8ScaleGroups(int64_t latent_dim) {
  return (latent_dim + kFp8ScaleGroup - 1) / kFp8ScaleGroup;
}
// Bytes of one V3.2 indexer key of `dim` values (index_key_row.h): bf16 values, or e4m3
// codes and one fp32 scale.
inline constexpr int64_t IndexKeyBytes(CacheDType dtype, int64_t dim) {
  return dtype == CacheDType::kBF16 ? 2 * dim : dim + 4;
}

struct CacheLayoutConfig {
  CacheDType dtype = CacheDType::kBF16;
  int latent_dim = 0;                  // L = kv_lora_rank (512 for DeepSeek).
  int rope_dim = 0;                    // R = qk_rope_head_dim (64 for DeepSeek).
  int block_size = kDefaultBlockSize;  // Tokens per block.
  int num_layers = 0;     // Layers that own a cache (V3: 61; the MTP layer is not counted).
  int index_key_dim = 0;  // V3.2 indexer key width (index_head_dim); 0 = none.
  CacheDType index_dtype = CacheDType::kBF16;  // How the indexer keys are stored.
};

class CacheLayout {
 public:
  // Checks the shape: positive dims and layers, block_size in [1, 65536].
  static absl::StatusOr<CacheLayout> Create(const CacheLayoutConfig& config);

  CacheDType dtype() const { return config_.dtype; }
  int latent_dim() const { return config_.latent_dim; }
  int rope_dim() const { return config_.rope_dim; }
  int block_size() const { return config_.block_size; }
  int num_layers() const { return config_.num_layers; }
  const CacheLayoutConfig& config() const { return config_; }
  int index_key_dim() const { return config_.index_key_dim; }
  CacheDType index_dtype() const { return config_.index_dtype; }

  // Byte offsets inside one token's slot. scale_bytes() is 0 for kBF16, where
  // scale_offset() == rope_offset().
  int64_t latent_offset() const { return 0; }
  int64_t scale_offset() const { return scale_offset_; }
  int64_t scale_bytes() const { return rope_offset_ - scale_offset_; }
  int64_t rope_offset() const { return rope_offset_; }

  // Sizes. "token" = one token in one layer unless the name says otherwise. The
  // per-layer sizes are the latent slot's; the all-layer sizes include the indexer keys.
  int64_t bytes_per_token_per_layer() const { return token_bytes_; }
  int64_t index_bytes_per_token_per_layer() const {
    return config_.index_key_dim == 0 ? 0
                                      : IndexKeyBytes(config_.index_dtype, config_.index_key_dim);
  }
  int64_t bytes_per_token() const {
    return (token_bytes_ + index_bytes_per_token_per_layer()) * config_.num_layers;
  }
  int64_t bytes_per_block_per_layer() const { return token_bytes_ * config_.block_size; }
  int64_t index_bytes_per_block_per_layer() const {
    return index_bytes_per_token_per_layer() * config_.block_size;
  }
  int64_t bytes_per_block() const { return bytes_per_token() * config_.block_size; }

  // Blocks needed to hold `num_tokens` tokens (ceil; 0 for 0).
  int64_t BlocksForTokens(int64_t num_tokens) const {
    return (num_tokens + config_.block_size - 1) / config_.block_size;
  }

 private:
  CacheLayout() = default;

  CacheLayoutConfig config_;
  int64_t token_bytes_ = 0;
  int64_t scale_offset_ = 0;
  int64_t rope_offset_ = 0;
};

// The attention shape a plain multi-head cache would store, for reporting how much MLA
// saves: layers × heads × (k_nope + k_rope + v) × dtype_bytes per token.
struct MhaCacheShape {
  int num_layers = 0;
  int num_heads = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  int dtype_bytes = 2;
};

int64_t EquivalentMhaBytesPerToken(const MhaCacheShape& shape);

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_CACHE_LAYOUT_H_
