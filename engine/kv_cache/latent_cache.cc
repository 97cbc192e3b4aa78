#include "engine/kv_cache/latent_cache.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/kv_cache/cache_row.h"

namespace mla {

absl::StatusOr<int32_t> LatentCache::BlocksForBudget(const CacheLayout& layout,
                                                     int64_t budget_bytes) {
  const int64_t per_block = layout.bytes_per_block();
  const int64_t blocks = budget_bytes > 0 ? budget_bytes / per_block : 0;
  if (blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache budget of ", budget_bytes, " bytes holds less than one block (", per_block,
        " bytes: ", layout.block_size(), " tokens x ", layout.bytes_per_token(),
        " bytes per token over ", layout.num_layers(), " layers)"));
  }
  return static_cast<int32_t>(std::min<int64_t>(blocks, std::numeric_limits<int32_t>::max()));
}

absl::StatusOr<LatentCache> LatentCache::CreateWithBudget(const CacheLayout& layout,
                                                          int64_t budget_bytes) {
  MLA_ASSIGN_OR_RETURN(const int32_t blocks, BlocksForBudget(layout, budget_bytes));
  return CreateWithBlocks(layout, blocks);
}

absl::StatusOr<LatentCache> LatentCache::CreateWithBlocks(const CacheLayout& layout,
                                                          int32_t num_blocks) {
  if (num_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache needs at least one block, got ", num_blocks));
  }
  return LatentCache(layout, num_blocks);
}

LatentCache::LatentCache(const CacheLayout& layout, int32_t num_blocks)
    : layout_(layout), num_blocks_(num_blocks) {
  const size_t layer_bytes =
      static_cast<size_t>(num_blocks) * static_cast<size_t>(layout.bytes_per_block_per_layer());
  layers_.reserve(layout.num_layers());
  for (int l = 0; l < layout.num_layers(); ++l) layers_.emplace_back(layer_bytes);
  if (layout.index_key_dim() == 0) return;
  const size_t index_bytes = static_cast<size_t>(num_blocks) *
                             static_cast<size_t>(layout.index_bytes_per_block_per_layer());
  index_layers_.reserve(layout.num_layers());
  for (int l = 0; l < layout.num_layers(); ++l) index_layers_.emplace_back(index_bytes);
}

size_t LatentCache::bytes() const {
  size_t total = 0;
  for (const AlignedBuffer& b : layers_) total += b.size();
  for (const AlignedBuffer& b : index_layers_) total += b.size();
  return total;
}

void LatentCache::PoisonWithNaN() {
  // 0xff bytes are NaN in every element type here (fp8 e4m3 and bf16 alike).
  for (std::vector<AlignedBuffer>* component : {&layers_, &index_layers_}) {
    for (AlignedBuffer& b : *component) std::fill_n(b.as<uint8_t>(), b.size(), kCacheNaNByte);
  }
}

absl::Status LatentCache::CheckAccess(int layer, const BlockTable& table, int64_t first_pos,
                                      int64_t n, const void* latent, int64_t latent_stride,
                                      const void* k_pe, int64_t k_pe_stride) const {
  if (layer < 0 || layer >= layout_.num_layers()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: layer ", layer, " out of range [0, ", layout_.num_layers(), ")"));
  }
  if (table.block_size() != layout_.block_size()) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: block table has block_size ",
                                                   table.block_size(), ", the cache ",
                                                   layout_.block_size()));
  }
  if (first_pos < 0 || n < 0 || first_pos + n > table.capacity()) {
    return absl::OutOfRangeError(absl::StrCat(
        "KV cache: positions [", first_pos, ", ", first_pos + n,
        ") are not covered by the sequence's blocks (capacity ", table.capacity(), ")"));
  }
  if (n > 0 && (latent == nullptr || k_pe == nullptr || latent_stride < layout_.latent_dim() ||
                k_pe_stride < layout_.rope_dim())) {
    return absl::InvalidArgumentError("KV cache: null data or row stride below the row width");
  }
  for (int64_t b = first_pos / table.block_size();
       n > 0 && b <= (first_pos + n - 1) / table.block_size(); ++b) {
    const int32_t id = table.block_ids()[b];
    if (id < 0 || id >= num_blocks_) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV cache: block id ", id, " out of range [0, ", num_blocks_, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status LatentCache::WriteTokens(int layer, const BlockTable& table, int64_t first_pos,
                                      int64_t n, const float* latent, int64_t latent_stride,
                                      const float* k_pe, int64_t k_pe_stride) {
  MLA_RETURN_IF_ERROR(
      CheckAccess(layer, table, first_pos, n, latent, latent_stride, k_pe, k_pe_stride));
  const int64_t row = layout_.bytes_per_token_per_layer();
  uint8_t* base = LayerBytes(layer);
  for (int64_t i = 0; i < n; ++i) {
    const BlockTable::Slot slot = table.SlotOf(first_pos + i);
    EncodeCacheRow(layout_.dtype(), layout_.latent_dim(), layout_.rope_dim(),
                   latent + i * latent_stride, k_pe + i * k_pe_stride,
                   base + (int64_t{slot.block} * layout_.block_size() + slot.offset) * row);
  }
  return absl::OkStatus();
}

absl::Status LatentCache::ReadTokens(int layer, const BlockTable& table, int64_t first_pos,
                                     int64_t n, float* latent, int64_t latent_stride, float* k_pe,
                                     int64_t k_pe_stride) const {
  MLA_RETURN_IF_ERROR(
      CheckAccess(layer, table, first_pos, n, latent, latent_stride, k_pe, k_pe_stride));
  const int64_t row = layout_.bytes_per_token_per_layer();
  const uint8_t* base = LayerBytes(layer);
  for (int64_t i = 0; i < n; ++i) {
    const BlockTable::Slot slot = table.SlotOf(first_pos + i);
    DecodeCacheRow(layout_.dtype(), layout_.latent_dim(), layout_.rope_dim(),
                   base + (int64_t{slot.block} * layout_.block_size() + slot.offset) * row,
                   latent + i * latent_stride, k_pe + i * k_pe_stride);
  }
  return absl::OkStatus();
}

}  // namespace mla
