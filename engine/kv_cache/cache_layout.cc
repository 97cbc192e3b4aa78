#include "engine/kv_cache/cache_layout.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mla {

const char* CacheDTypeName(CacheDType dtype) {
  switch (dtype) {
    case CacheDType::kBF16:
      return "bf16";
    case CacheDType::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "?";
}

absl::StatusOr<CacheDType> ParseCacheDType(std::string_view name) {
  if (name == "bf16") return CacheDType::kBF16;
  if (name == "fp8" || name == "fp8_e4m3") return CacheDType::kFp8E4M3;
  return absl::InvalidArgumentError(absl::StrCat("KV cache dtype \"", std::string(name),
                                                 "\" is not one of bf16, fp8 (fp8_e4m3)"));
}

absl::StatusOr<CacheLayout> CacheLayout::Create(const CacheLayoutConfig& config) {
  constexpr int kMaxBlockSize = 1 << 16;
  if (config.latent_dim <= 0 || config.rope_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache layout: latent_dim (",
                                                   config.latent_dim, ") and rope_dim (",
                                                   config.rope_dim, ") must be positive"));
  }
  if (config.num_layers <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache layout: num_layers must be positive, got ", config.num_layers));
  }
  if (config.block_size <= 0 || config.block_size > kMaxBlockSize) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache layout: block_size must be in [1, ",
                                                   kMaxBlockSize, "], got ", config.block_size));
  }
  if (config.index_key_dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache layout: index_key_dim must be >= 0, got ", config.index_key_dim));
  }
  CacheLayout layout;
  layout.config_ = config;
  const int64_t latent = config.latent_dim;
  const int64_t rope = config.rope_dim;
  switch (config.dtype) {
    case CacheDType::kBF16:
      layout.scale_offset_ = latent * 2;
      layout.rope_offset_ = latent * 2;
      break;
    case CacheDType::kFp8E4M3:
      layout.scale_offset_ = latent;
      layout.rope_offset_ = latent + Fp8ScaleGroups(latent) * 4;
      break;
  }
  layout.token_bytes_ = layout.rope_offset_ + rope * 2;  // k_pe is bf16 in both layouts.
  return layout;
}

int64_t EquivalentMhaBytesPerToken(const MhaCacheShape& shape) {
  const int64_t per_head =
      int64_t{shape.qk_nope_head_dim} + shape.qk_rope_head_dim + shape.v_head_dim;
  return int64_t{shape.num_layers} * shape.num_heads * per_head * shape.dtype_bytes;
}

}  // namespace mla
