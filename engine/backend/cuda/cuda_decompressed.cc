// CudaBackend's decompressed attention: long prefill chunks attend through keys
// up-projected by kv_b_proj, chunk by chunk (host/decompress_plan.h), instead of the
// absorbed kernel's latent-space scores (engine/model/attention_path.h has the costs).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/host/decompress_plan.h"
#include "engine/backend/cuda/kernels/decompressed_attention.h"

namespace mla::cuda {

using internal::F32;
using internal::Shape;

void CudaBackend::DecompressedAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                                        const Tensor& kv_b, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  const int64_t lat = layout_->latent_dim(), rope = layout_->rope_dim();
  const int64_t nope = heads > 0 ? q.cols / heads - rope : 0;
  const int64_t v = heads > 0 ? out.cols / heads : 0;
  if (heads < 1 || nope < 1 || v < 1 || q.cols != heads * (nope + rope) || out.cols != heads * v ||
      q.rows != step_->num_tokens || out.rows != q.rows || layer < 0 ||
      layer >= layout_->num_layers()) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(
                        "q ", Shape(q), ", out ", Shape(out), " must be rows of ", heads,
                        " heads for ", step_->num_tokens, " tokens, layer ", layer)));
  }
  if (kv_b.rows != heads * (nope + v) || kv_b.cols != lat) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat("kv_b ", Shape(kv_b), " must be [",
                                                            heads * (nope + v), ", ", lat, "]")));
  }
  for (int64_t s = 0; s < static_cast<int64_t>(step_->decompress.size()); ++s) {
    if (step_->decompress[static_cast<size_t>(s)] == 0) continue;
    if (absl::Status st = DecompressSequence(layer, s, heads, static_cast<int>(nope),
                                             static_cast<int>(v), softmax_scale, q, kv_b, out);
        !st.ok()) {
      return Fail(op, std::move(st));
    }
  }
}

absl::Status CudaBackend::DecompressSequence(int layer, int64_t seq, int heads, int nope, int v,
                                             float softmax_scale, const Tensor& q,
                                             const Tensor& kv_b, const Tensor& out) {
  const int lat = layout_->latent_dim(), rope = layout_->rope_dim();
  const int64_t row0 = step_->cu_seqlens_q[static_cast<size_t>(seq)];
  const int64_t rows = step_->cu_seqlens_q[static_cast<size_t>(seq) + 1] - row0;
  const int64_t keys = step_->seq_lens[static_cast<size_t>(seq)];
  if (rows == 0) return absl::OkStatus();
  MLA_ASSIGN_OR_RETURN(DecompressChunking plan,
                       PlanDecompressChunks(heads, nope, v, lat, decompress_chunk_bytes_));
  const int64_t chunk = std::min(plan.keys_per_chunk, keys);
  MLA_RETURN_IF_ERROR(Reserve(decompress_latent_, static_cast<size_t>(4 * chunk * lat)));
  MLA_RETURN_IF_ERROR(Reserve(decompress_kv_, static_cast<size_t>(4 * chunk * heads * (nope + v))));
  MLA_RETURN_IF_ERROR(
      Reserve(decompress_state_, static_cast<size_t>(DecompressStateBytes(rows, heads, v))));
  const int32_t* blocks = block_table_.as<int32_t>() + seq * table_width_;
  for (int64_t first = 0; first < keys; first += chunk) {
    const int64_t n = std::min(chunk, keys - first);
    const Tensor latent{decompress_latent_.data(), DType::kF32, n, lat, lat};
    const Tensor kv{decompress_kv_.data(), DType::kF32, n, int64_t{heads} * (nope + v),
                    int64_t{heads} * (nope + v)};
    GatherLatentF32Params g;
    g.cache = CacheLayer(layer);
    g.cache_fp8 = CacheFp8();
    g.blocks = blocks;
    g.block_size = layout_->block_size();
    g.latent = lat;
    g.rope = rope;
    g.first_key = first;
    g.out = F32(latent);
    MLA_RETURN_IF_ERROR(LaunchGatherLatentF32(g, stream_));
    MLA_RETURN_IF_ERROR(GemmImpl(latent, kv_b, kv));
    DecompressedChunkF32Params p;
    p.num_rows = rows;
    p.heads = heads;
    p.nope = nope;
    p.rope = rope;
    p.v = v;
    p.latent = lat;
    p.block_size = layout_->block_size();
    p.q_pos0 = step_->q_pos0[static_cast<size_t>(seq)];
    p.first_key = first;
    p.num_keys = n;
    p.first_chunk = first == 0;
    p.last_chunk = first + n >= keys;
    p.softmax_scale = softmax_scale;
    p.cache = CacheLayer(layer);
    p.cache_fp8 = CacheFp8();
    p.blocks = blocks;
    p.q = static_cast<const float*>(q.data) + row0 * q.stride;
    p.q_stride = q.stride;
    p.kv = decompress_kv_.as<float>();
    p.state = decompress_state_.as<float>();
    p.out = static_cast<float*>(out.data) + row0 * out.stride;
    p.out_stride = out.stride;
    MLA_RETURN_IF_ERROR(LaunchDecompressedChunkF32(p, stream_));
  }
  return absl::OkStatus();
}

}  // namespace mla::cuda
