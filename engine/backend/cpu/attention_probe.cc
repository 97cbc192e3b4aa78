#include "engine/backend/cpu/attention_probe.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv_cache/cache_row.h"

namespace mla {
namespace {

// Online accumulation of one head's scores (see the header for the identities).
struct HeadAccumulator {
  double m = -std::numeric_limits<double>::infinity();
  double z = 0.0;
  double a = 0.0;

  void Add(double s) {
    if (s > m) {
      const double r = std::exp(m - s);  // 0 for the first score (m = -inf)
      z *= r;
      a *= r;
      m = s;
    }
    const double e = std::exp(s - m);
    z += e;
    a += e * s;
  }
  double Entropy() const { return m + std::log(z) - a / z; }
  double MaxWeight() const { return 1.0 / z; }
};

}  // namespace

absl::StatusOr<AttentionSharpness> ProbeAttentionRow(const LatentCache& cache, int layer,
                                                     std::span<const int32_t> block_ids,
                                                     int64_t num_keys,
                                                     const float* q_abs_row, int heads,
                                                     float softmax_scale) {
  if (num_keys < 1 || heads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("attention probe: num_keys ", num_keys,
                                                   " and heads ", heads, " must be >= 1"));
  }
  const int64_t bs = cache.layout().block_size();
  if (num_keys > static_cast<int64_t>(block_ids.size()) * bs) {
    return absl::InvalidArgumentError(absl::StrCat("attention probe: ", num_keys,
                                                   " keys do not fit in ", block_ids.size(),
                                                   " blocks"));
  }
  for (int32_t b : block_ids) {
    if (b < 0 || b >= cache.num_blocks()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention probe: block id ", b, " outside [0, ", cache.num_blocks(), ")"));
    }
  }
  const CacheLayout& layout = cache.layout();
  const int lat = layout.latent_dim(), rope = layout.rope_dim();
  const uint8_t* base = cache.LayerBytes(layer);
  const int64_t width = lat + rope;
  const int64_t row_bytes = layout.bytes_per_token_per_layer();
  // Keys are read a tile at a time, so memory stays small at any context length.
  const int64_t tile = std::max<int64_t>(cache.layout().block_size(), 64);
  std::vector<float> keys(static_cast<size_t>(tile * width));
  std::vector<HeadAccumulator> acc(static_cast<size_t>(heads));
  for (int64_t first = 0; first < num_keys; first += tile) {
    const int64_t n = std::min(tile, num_keys - first);
    for (int64_t s = 0; s < n; ++s) {
      const int64_t pos = first + s;
      const uint8_t* src = base + (block_ids[pos / bs] * bs + pos % bs) * row_bytes;
      DecodeCacheRow(layout.dtype(), lat, rope, src, &keys[s * width], &keys[s * width + lat]);
    }
    for (int h = 0; h < heads; ++h) {
      const float* q = q_abs_row + static_cast<int64_t>(h) * width;
      for (int64_t s = 0; s < n; ++s) {
        const float* k = keys.data() + s * width;
        float dot = 0.0f;
        for (int64_t i = 0; i < width; ++i) dot += q[i] * k[i];
        acc[static_cast<size_t>(h)].Add(static_cast<double>(dot * softmax_scale));
      }
    }
  }
  AttentionSharpness out;
  out.layer = layer;
  out.context_tokens = num_keys;
  for (const HeadAccumulator& a : acc) {
    out.entropy += a.Entropy();
    out.max_weight += a.MaxWeight();
  }
  out.entropy /= heads;
  out.max_weight /= heads;
  return out;
}

}  // namespace mla
