#include "engine/backend/cpu/mla_attention_reference.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/kv_cache/cache_row.h"

namespace mla::cpu {
namespace {

// One query vector against keys [0, num_keys) of sequence j.
void ReferenceVector(const MlaAttentionParams& p, int64_t j, const float* q, int64_t num_keys,
                     float* out, float* lse) {
  const int64_t latent = p.kv_lora_rank;
  const int64_t width = latent + p.rope_dim;
  const int32_t* table = p.block_table + j * p.max_blocks_per_seq;
  const int64_t row_bytes = CacheRowBytes(p.kv_dtype, latent, p.rope_dim);
  // The keys as the cache gives them back (bf16, or fp8 code · scale), [num_keys, width].
  std::vector<float> keys(num_keys * width);
  for (int64_t t = 0; t < num_keys; ++t) {
    const uint8_t* row =
        static_cast<const uint8_t*>(p.kv_cache) +
        (int64_t{table[t / p.block_size]} * p.block_size + t % p.block_size) * row_bytes;
    DecodeCacheRow(p.kv_dtype, latent, p.rope_dim, row, &keys[t * width],
                   &keys[t * width + latent]);
  }
  auto key = [&](int64_t t) { return keys.data() + t * width; };
  std::vector<double> scores(num_keys);
  double max_score = -INFINITY;
  for (int64_t t = 0; t < num_keys; ++t) {
    const float* k = key(t);
    double s = 0;
    for (int64_t d = 0; d < width; ++d) s += static_cast<double>(q[d]) * k[d];
    scores[t] = s * p.softmax_scale;
    max_score = std::max(max_score, scores[t]);
  }
  double sum = 0;
  for (double& s : scores) {
    s = std::exp(s - max_score);
    sum += s;
  }
  std::vector<double> acc(latent, 0.0);
  for (int64_t t = 0; t < num_keys; ++t) {
    const float* k = key(t);
    for (int64_t d = 0; d < latent; ++d) acc[d] += scores[t] * k[d];
  }
  for (int64_t d = 0; d < latent; ++d) out[d] = static_cast<float>(acc[d] / sum);
  *lse = static_cast<float>(max_score + std::log(sum));
}

}  // namespace

absl::Status MlaAttentionReference(const MlaAttentionParams& p) {
  const absl::Status valid = ValidateMlaAttentionParams(p);
  if (!valid.ok()) return valid;
  const int64_t heads = p.num_heads;
  const int64_t width = p.kv_lora_rank + p.rope_dim;
  for (int64_t j = 0; j < p.batch; ++j) {
    for (int64_t row = p.cu_seqlens_q[j]; row < p.cu_seqlens_q[j + 1]; ++row) {
      // Causal: the row at position q_pos0 + i sees keys [0, q_pos0 + i].
      const int64_t num_keys = p.q_pos0[j] + (row - p.cu_seqlens_q[j]) + 1;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t v = row * heads + h;
        ReferenceVector(p, j, p.q + v * width, num_keys, p.out + v * p.kv_lora_rank, p.lse + v);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
