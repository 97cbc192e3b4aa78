// DecompressedAttentionReference (decompressed_attention.h): the definition written out,
// per row, head and key, in double precision.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/backend/cpu/decompressed_attention.h"
#include "engine/common/bf16.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::cpu {
namespace {

double Weight(const MatrixView& w, int64_t r, int64_t c) {
  if (w.dtype == DType::kF32) return static_cast<const float*>(w.data)[r * w.row_stride + c];
  return Bf16ToFloat(static_cast<const bf16_t*>(w.data)[r * w.row_stride + c]);
}

// k_nope and v of every head for the keys [0, keys) of sequence j:
// [keys, heads, nope + v], W · c in double.
std::vector<double> UpProject(const DecompressedAttentionParams& params, int64_t j, int64_t keys,
                              std::vector<float>& kpe) {
  const MlaAttentionParams& p = params.paged;
  const int64_t latent = p.kv_lora_rank, rope = p.rope_dim;
  const int64_t per_key = p.num_heads * (params.nope_dim + params.v_dim);
  const int64_t row_bytes = CacheRowBytes(p.kv_dtype, latent, rope);
  const int32_t* table = p.block_table + j * p.max_blocks_per_seq;
  std::vector<double> kv(static_cast<size_t>(keys * per_key));
  std::vector<float> c(latent);
  kpe.resize(static_cast<size_t>(keys * rope));
  for (int64_t t = 0; t < keys; ++t) {
    const uint8_t* row =
        static_cast<const uint8_t*>(p.kv_cache) +
        (int64_t{table[t / p.block_size]} * p.block_size + t % p.block_size) * row_bytes;
    DecodeCacheRow(p.kv_dtype, latent, rope, row, c.data(), &kpe[t * rope]);
    for (int64_t r = 0; r < per_key; ++r) {
      double acc = 0;
      for (int64_t d = 0; d < latent; ++d) acc += Weight(params.kv_b, r, d) * c[d];
      kv[t * per_key + r] = acc;
    }
  }
  return kv;
}

}  // namespace

absl::Status DecompressedAttentionReference(const DecompressedAttentionParams& params) {
  if (absl::Status s = ValidateDecompressedAttentionParams(params); !s.ok()) return s;
  const MlaAttentionParams& p = params.paged;
  const int64_t heads = p.num_heads, rope = p.rope_dim;
  const int64_t nope = params.nope_dim, vdim = params.v_dim, qk = nope + rope;
  const int64_t per_head = nope + vdim;
  for (int64_t j = 0; j < p.batch; ++j) {
    const int64_t first_row = p.cu_seqlens_q[j], rows = p.cu_seqlens_q[j + 1] - first_row;
    if ((params.take != nullptr && params.take[j] == 0) || rows == 0) continue;
    std::vector<float> kpe;
    const std::vector<double> kv = UpProject(params, j, p.q_pos0[j] + rows, kpe);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t keys = p.q_pos0[j] + i + 1;  // causal
      for (int64_t h = 0; h < heads; ++h) {
        const float* q = params.q + ((first_row + i) * heads + h) * qk;
        std::vector<double> score(keys);
        for (int64_t t = 0; t < keys; ++t) {
          const double* k = &kv[(t * heads + h) * per_head];
          double s = 0;
          for (int64_t d = 0; d < nope; ++d) s += q[d] * k[d];
          for (int64_t d = 0; d < rope; ++d) s += double{q[nope + d]} * kpe[t * rope + d];
          score[t] = s * p.softmax_scale;
        }
        const double peak = *std::max_element(score.begin(), score.end());
        double total = 0;
        for (double& s : score) total += (s = std::exp(s - peak));
        float* out = params.out + ((first_row + i) * heads + h) * vdim;
        for (int64_t d = 0; d < vdim; ++d) {
          double acc = 0;
          for (int64_t t = 0; t < keys; ++t)
            acc += score[t] * kv[(t * heads + h) * per_head + nope + d];
          out[d] = static_cast<float>(acc / total);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
