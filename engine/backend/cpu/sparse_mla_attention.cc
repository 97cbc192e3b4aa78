#include "engine/backend/cpu/sparse_mla_attention.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::cpu {
namespace {

// The key of sequence j's position `pos` as every kernel sees it (bf16 values, or FP8
// codes times their scale; DecodeCacheRow) into dst [kv_lora_rank + rope_dim].
void KeyAt(const MlaAttentionParams& p, int64_t j, int64_t pos, float* dst) {
  const int32_t id = p.block_table[j * p.max_blocks_per_seq + pos / p.block_size];
  const int64_t row_bytes = CacheRowBytes(p.kv_dtype, p.kv_lora_rank, p.rope_dim);
  const uint8_t* row = static_cast<const uint8_t*>(p.kv_cache) +
                       (int64_t{id} * p.block_size + pos % p.block_size) * row_bytes;
  DecodeCacheRow(p.kv_dtype, p.kv_lora_rank, p.rope_dim, row, dst, dst + p.kv_lora_rank);
}

// The row's selected positions (the -1 padding cut off).
std::span<const int32_t> Selection(const SparseMlaParams& p, int64_t row) {
  const int32_t* s = p.selected + row * p.topk;
  return {s, static_cast<size_t>(std::find(s, s + p.topk, -1) - s)};
}

// One query row, all heads.
void SparseRow(const SparseMlaParams& sp, int64_t j, int64_t row, ThreadPool* pool,
               SparseMlaWorkspace& ws) {
  const MlaAttentionParams& p = sp.mla;
  const std::span<const int32_t> sel = Selection(sp, row);
  const int64_t n = static_cast<int64_t>(sel.size()), lat = p.kv_lora_rank;
  const int64_t width = lat + p.rope_dim, heads = p.num_heads;
  ws.keys.resize(static_cast<size_t>(n * width));
  ws.latent_t.resize(static_cast<size_t>(lat * n));
  ws.scores.resize(static_cast<size_t>(heads * n));
  for (int64_t s = 0; s < n; ++s) KeyAt(p, j, sel[s], ws.keys.data() + s * width);
  // The latent transposed in tiles of 16 keys, so that each write fills a cache line
  // (a plain column-by-column transpose writes one float per line and dominated the time).
  constexpr int64_t kTile = 16;
  for (int64_t s0 = 0; s0 < n; s0 += kTile) {
    const int64_t s1 = std::min(n, s0 + kTile);
    for (int64_t d = 0; d < lat; ++d) {
      float* dst = ws.latent_t.data() + d * n;
      for (int64_t s = s0; s < s1; ++s) dst[s] = ws.keys[s * width + d];
    }
  }
  const MatrixView keys{ws.keys.data(), DType::kF32, n, width, width};
  Gemm(p.q + row * heads * width, width, heads, keys, ws.scores.data(), n, pool);
  std::vector<float> sums(static_cast<size_t>(heads));
  for (int64_t h = 0; h < heads; ++h) {
    float* sc = ws.scores.data() + h * n;
    float max_score = -INFINITY;
    for (int64_t s = 0; s < n; ++s) max_score = std::max(max_score, sc[s] *= p.softmax_scale);
    double sum = 0;
    for (int64_t s = 0; s < n; ++s) sum += sc[s] = std::exp(sc[s] - max_score);
    sums[h] = static_cast<float>(sum);
    p.lse[row * heads + h] = max_score + std::log(sums[h]);
  }
  const MatrixView latent_t{ws.latent_t.data(), DType::kF32, lat, n, n};
  float* out = p.out + row * heads * lat;
  Gemm(ws.scores.data(), n, heads, latent_t, out, lat, pool);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t d = 0; d < lat; ++d) out[h * lat + d] /= sums[h];
  }
}

}  // namespace

absl::Status ValidateSparseMlaParams(const SparseMlaParams& sp) {
  if (absl::Status s = ValidateMlaAttentionParams(sp.mla); !s.ok()) return s;
  const MlaAttentionParams& p = sp.mla;
  if (sp.topk < 1) return absl::InvalidArgumentError("SparseMlaAttention: topk must be >= 1");
  if (p.batch > 0 && p.cu_seqlens_q[p.batch] > 0 && sp.selected == nullptr) {
    return absl::InvalidArgumentError("SparseMlaAttention: null selection");
  }
  for (int64_t j = 0; j < p.batch; ++j) {
    for (int64_t row = p.cu_seqlens_q[j]; row < p.cu_seqlens_q[j + 1]; ++row) {
      const int64_t visible = p.q_pos0[j] + (row - p.cu_seqlens_q[j]) + 1;
      const std::span<const int32_t> sel = Selection(sp, row);
      if (sel.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("SparseMlaAttention: row ", row, " selects no key"));
      }
      for (const int32_t pos : sel) {
        if (pos < 0 || pos >= visible) {
          return absl::InvalidArgumentError(absl::StrCat("SparseMlaAttention: row ", row,
                                                         " selects position ", pos, " outside [0, ",
                                                         visible, ")"));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status SparseMlaAttention(const SparseMlaParams& sp, ThreadPool* pool,
                                SparseMlaWorkspace* workspace) {
  if (absl::Status s = ValidateSparseMlaParams(sp); !s.ok()) return s;
  SparseMlaWorkspace local;
  SparseMlaWorkspace& ws = workspace ? *workspace : local;
  const MlaAttentionParams& p = sp.mla;
  for (int64_t j = 0; j < p.batch; ++j) {
    for (int64_t row = p.cu_seqlens_q[j]; row < p.cu_seqlens_q[j + 1]; ++row) {
      SparseRow(sp, j, row, pool, ws);
    }
  }
  return absl::OkStatus();
}

absl::Status SparseMlaAttentionReference(const SparseMlaParams& sp) {
  if (absl::Status s = ValidateSparseMlaParams(sp); !s.ok()) return s;
  const MlaAttentionParams& p = sp.mla;
  const int64_t lat = p.kv_lora_rank, width = lat + p.rope_dim;
  for (int64_t j = 0; j < p.batch; ++j) {
    for (int64_t row = p.cu_seqlens_q[j]; row < p.cu_seqlens_q[j + 1]; ++row) {
      const std::span<const int32_t> sel = Selection(sp, row);
      std::vector<float> keys(sel.size() * static_cast<size_t>(width));
      for (size_t i = 0; i < sel.size(); ++i) KeyAt(p, j, sel[i], keys.data() + i * width);
      for (int64_t h = 0; h < p.num_heads; ++h) {
        const float* q = p.q + (row * p.num_heads + h) * width;
        std::vector<double> scores;
        double max_score = -INFINITY;
        for (size_t i = 0; i < sel.size(); ++i) {
          const float* k = keys.data() + i * width;
          double s = 0;
          for (int64_t d = 0; d < width; ++d) s += double{q[d]} * k[d];
          scores.push_back(s * p.softmax_scale);
          max_score = std::max(max_score, scores.back());
        }
        double sum = 0;
        std::vector<double> acc(static_cast<size_t>(lat), 0.0);
        for (size_t i = 0; i < sel.size(); ++i) {
          const double w = std::exp(scores[i] - max_score);
          sum += w;
          const float* k = keys.data() + i * width;
          for (int64_t d = 0; d < lat; ++d) acc[d] += w * k[d];
        }
        float* out = p.out + (row * p.num_heads + h) * lat;
        for (int64_t d = 0; d < lat; ++d) out[d] = static_cast<float>(acc[d] / sum);
        p.lse[row * p.num_heads + h] = static_cast<float>(max_score + std::log(sum));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
