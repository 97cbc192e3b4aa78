// CudaBackend's attention: cache writes, the generic paged attention, the split-KV decode
// path, the attention probe, and DeepSeek-V3.2's indexer and sparse attention (the
// decompressed path is in cuda_decompressed.cc).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/backend/cuda/kernels/indexer.h"
#include "engine/backend/cuda/kernels/mla_decode.h"

namespace mla::cuda {

using internal::F32;
using internal::Raw;
using internal::Shape;

void CudaBackend::WriteCache(int layer, const Tensor& latent, const Tensor& k_pe, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  const int64_t lat = layout_->latent_dim(), rope = layout_->rope_dim();
  if (latent.cols != lat || k_pe.cols != rope || latent.rows != k_pe.rows ||
      latent.rows != static_cast<int64_t>(step_->slots.size()) || layer < 0 ||
      layer >= layout_->num_layers()) {
    return Fail(op, absl::InvalidArgumentError(
                        absl::StrCat("latent ", Shape(latent), " and k_pe ", Shape(k_pe),
                                     " do not match the cache rows [", step_->slots.size(), ", ",
                                     lat, " + ", rope, "] of layer ", layer)));
  }
  // All slots are checked before anything is written: a bad step leaves the cache as it was.
  if (absl::Status s = CheckStepSlots(); !s.ok()) return Fail(op, std::move(s));
  CacheWriteF32Params p;
  p.latent = F32(latent);
  p.k_pe = F32(k_pe);
  p.slots = slots_.as<int64_t>();
  p.cache = CacheLayer(layer);
  p.cache_fp8 = CacheFp8();
  Fail(op, LaunchCacheWriteF32(p, stream_));
}

void CudaBackend::MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                               Tensor out, Tensor lse, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  if (absl::Status s = CheckAttentionTensors(heads, q, out, lse); !s.ok()) {
    return Fail(op, std::move(s));
  }
  last_heads_ = heads;
  // Sequences marked for DecompressedAttention are skipped, which only the generic kernel
  // does (the model marks decode rows only when the decompressed path is forced).
  const bool any_marked = !step_->decompress.empty();
  if (!any_marked && CanSplitKvDecode(heads)) {
    return Fail(op, SplitKvDecode(layer, heads, softmax_scale, q, out, lse));
  }
  MlaAttentionF32Params p = GenericAttentionParams(layer, heads, softmax_scale, q, out, lse);
  p.skip_seq = any_marked ? decompress_dev_.as<uint8_t>() : nullptr;
  Fail(op, LaunchMlaAttentionF32(p, stream_));
}

absl::Status CudaBackend::CheckStepSlots() const {
  const int64_t num_slots = int64_t{num_blocks_} * layout_->block_size();
  for (const int64_t slot : step_->slots) {
    if (slot < 0 || slot >= num_slots) {
      return absl::OutOfRangeError(
          absl::StrCat("cache slot ", slot, " outside [0, ", num_slots, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::CheckAttentionTensors(int heads, const Tensor& q, const Tensor& out,
                                                const Tensor& lse) const {
  const int64_t lat = layout_->latent_dim(), width = lat + layout_->rope_dim();
  if (q.cols != heads * width || q.stride != q.cols || out.cols != heads * lat ||
      out.stride != out.cols || lse.cols != heads || lse.stride != heads ||
      q.rows != step_->num_tokens || out.rows != q.rows || lse.rows != q.rows) {
    return absl::InvalidArgumentError(absl::StrCat("q ", Shape(q), ", out ", Shape(out), ", lse ",
                                                   Shape(lse), " must be dense rows of ", heads,
                                                   " heads for ", step_->num_tokens, " tokens"));
  }
  return absl::OkStatus();
}

MlaAttentionF32Params CudaBackend::GenericAttentionParams(int layer, int heads, float softmax_scale,
                                                          const Tensor& q, const Tensor& out,
                                                          const Tensor& lse) const {
  MlaAttentionF32Params p;
  p.num_rows = q.rows;
  p.heads = heads;
  p.latent = layout_->latent_dim();
  p.rope = layout_->rope_dim();
  p.block_size = layout_->block_size();
  p.max_blocks = table_width_;
  p.softmax_scale = softmax_scale;
  p.cache = CacheLayer(layer);
  p.cache_fp8 = CacheFp8();
  p.block_table = block_table_.as<int32_t>();
  p.q_pos0 = q_pos0_.as<int32_t>();
  p.cu_seqlens_q = cu_seqlens_q_.as<int32_t>();
  p.row_seq = row_seq_dev_.as<int32_t>();
  p.q = static_cast<const float*>(q.data);
  p.out = static_cast<float*>(out.data);
  p.lse = static_cast<float*>(lse.data);
  return p;
}

bool CudaBackend::CanSplitKvDecode(int heads) const { return decode_only_ && SplitKvTakes(heads); }

bool CudaBackend::SplitKvTakes(int heads) const {
  return split_kv_decode_ && layout_->block_size() == kMlaBlockSize &&
         layout_->latent_dim() <= kMlaMaxLatent && layout_->latent_dim() % 2 == 0 &&
         layout_->rope_dim() <= kMlaMaxRope && layout_->rope_dim() % 2 == 0 && heads >= 1 &&
         num_sms_ > 0;
}

absl::StatusOr<MlaDecodePlanOptions> CudaBackend::DecodePlanOptions(int heads) {
  const DecodeGridKey key{layout_->latent_dim(), layout_->rope_dim(), CacheFp8()};
  if (decode_grid_key_ != key) {  // Once per cache layout: a device query.
    MLA_ASSIGN_OR_RETURN(decode_ctas_per_sm_,
                         MlaDecodeCtasPerSm(key.latent, key.rope, MlaDecodeKernel::kAuto, key.fp8));
    MLA_ASSIGN_OR_RETURN(
        decode_rows_per_cta_,
        MlaDecodeRowsPerCta(key.latent, key.rope, MlaDecodeKernel::kAuto, key.fp8));
    decode_grid_key_ = key;
  }
  MlaDecodePlanOptions options;
  options.num_sms = num_sms_ * decode_ctas_per_sm_;  // CTAs resident at once
  options.num_heads = heads;
  options.rows_per_cta = decode_rows_per_cta_;
  options.max_blocks_per_seq = static_cast<int>(table_width_);
  return options;
}

absl::Status CudaBackend::UploadDecodePlan(const MlaDecodePlan& plan) {
  const size_t parts_bytes = plan.parts.size() * sizeof(MlaDecodePart);
  const size_t splits_bytes = plan.split_offsets.size() * sizeof(int32_t);
  MLA_RETURN_IF_ERROR(Reserve(plan_parts_dev_, std::max<size_t>(parts_bytes, 32)));
  MLA_RETURN_IF_ERROR(Reserve(plan_splits_dev_, std::max<size_t>(splits_bytes, 4)));
  // On the step's stream, like BeginStep's uploads: ordered after the work that may still
  // read the previous plan, and no device-wide wait (a pageable source is staged before
  // the call returns; the plan is a member all the same).
  MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(plan_parts_dev_.data(), plan.parts.data(), parts_bytes,
                                           cudaMemcpyHostToDevice, Raw(stream_)));
  MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(plan_splits_dev_.data(), plan.split_offsets.data(),
                                           splits_bytes, cudaMemcpyHostToDevice, Raw(stream_)));
  return absl::OkStatus();
}

MlaDecodeParams CudaBackend::SplitKvParams(int layer, int heads, float softmax_scale, int64_t batch,
                                           const MlaDecodePlan& plan) {
  MlaDecodeParams p;
  p.batch = static_cast<int>(batch);
  p.q_rows_per_seq = 1;
  p.num_heads = heads;
  p.kv_lora_rank = layout_->latent_dim();
  p.rope_dim = layout_->rope_dim();
  p.block_size = kMlaBlockSize;
  p.num_blocks = num_blocks_;
  p.max_blocks_per_seq = static_cast<int>(table_width_);
  p.softmax_scale = softmax_scale;
  p.num_parts = plan.num_parts;
  p.num_partial_slots = plan.num_partial_slots();
  p.q = q_bf16_.as<bf16_t>();
  p.kv_cache = CacheLayer(layer);
  p.kv_fp8 = CacheFp8();
  p.block_table = block_table_.as<int32_t>();
  p.parts = plan_parts_dev_.as<MlaDecodePart>();
  p.split_offsets = plan_splits_dev_.as<int32_t>();
  p.partial_out = partial_out_.as<float>();
  p.partial_lse = partial_lse_.as<float>();
  p.out = out_bf16_.as<bf16_t>();
  return p;
}

absl::Status CudaBackend::PlanSplitKv(int heads, int topk) {
  if (planned_step_ == step_number_ && planned_heads_ == heads && planned_topk_ == topk) {
    return absl::OkStatus();
  }
  // A plan made inside a recording would record a copy from host memory that the next
  // step changes: the region runs eagerly instead (BeginStep plans ahead of it when it can).
  if (capturing_) AbortCapture();
  MLA_ASSIGN_OR_RETURN(const MlaDecodePlanOptions options, DecodePlanOptions(heads));
  MlaDecodePlan& plan = decode_plan_;
  if (topk > 0) {  // A sequence attends to its selection's valid entries.
    plan_lens_.assign(step_->seq_lens.begin(), step_->seq_lens.end());
    for (int32_t& n : plan_lens_) n = std::min(n, topk);
  }
  MLA_RETURN_IF_ERROR(PlanMlaDecode(topk > 0 ? plan_lens_ : step_->seq_lens, options, &plan));
  // Partial results for the plan's bound, not its count, which changes whenever a sequence
  // crosses a block: buffers that moved would outdate every recorded step.
  const size_t slots = static_cast<size_t>(
      std::max<int64_t>(MaxPartialSlots(static_cast<int64_t>(step_->seq_lens.size()), options), 1));
  const size_t lat = static_cast<size_t>(layout_->latent_dim());
  MLA_RETURN_IF_ERROR(Reserve(partial_out_, slots * heads * lat * sizeof(float)));
  MLA_RETURN_IF_ERROR(Reserve(partial_lse_, slots * heads * sizeof(float)));
  MLA_RETURN_IF_ERROR(UploadDecodePlan(plan));
  planned_step_ = step_number_;
  planned_heads_ = heads;
  planned_topk_ = topk;
  return absl::OkStatus();
}

// q rounds to bf16 for the kernel (its scores are bf16 products with fp32 sums); its bf16
// output loses nothing downstream, since W_UV's GEMM rounds its input to bf16 anyway.
absl::Status CudaBackend::SplitKvDecode(int layer, int heads, float softmax_scale, const Tensor& q,
                                        const Tensor& out, const Tensor& lse,
                                        const int32_t* selected, int topk) {
  const int lat = layout_->latent_dim(), rope = layout_->rope_dim();
  const int64_t batch = step_->batch;
  MLA_RETURN_IF_ERROR(PlanSplitKv(heads, topk));
  const size_t rows = static_cast<size_t>(batch) * heads;
  MLA_RETURN_IF_ERROR(Reserve(q_bf16_, rows * (lat + rope) * sizeof(bf16_t)));
  MLA_RETURN_IF_ERROR(Reserve(out_bf16_, rows * lat * sizeof(bf16_t)));
  MLA_RETURN_IF_ERROR(LaunchToBf16(F32(q), q_bf16_.as<bf16_t>(), stream_));
  MlaDecodeParams p = SplitKvParams(layer, heads, softmax_scale, batch, decode_plan_);
  p.seq_lens = seq_lens_.as<int32_t>();
  p.lse = static_cast<float*>(lse.data);
  p.selected = selected;
  p.topk = topk;
  MLA_RETURN_IF_ERROR(LaunchMlaDecode(p, stream_));
  return LaunchFromBf16(out_bf16_.as<bf16_t>(), F32(out), stream_);
}

// A prefill step's sparse attention on the split-KV kernels: every query row is its own
// "sequence" (MlaDecodeParams::seq_of names its block-table row; seq_lens, the keys it
// sees), in groups of rows whose bf16 q and output and partial results fit
// kMaxSparsePrefillBytes. Each group is planned and its plan uploaded on the stream before
// its launch (the copies wait for the previous group's kernels, which read the same
// buffers); a prefill step is never recorded as a graph.
absl::Status CudaBackend::SparsePrefillSplitKv(int layer, int heads, float softmax_scale,
                                               const Tensor& q, const Tensor& out,
                                               const Tensor& lse, const int32_t* selected,
                                               int topk) {
  const int lat = layout_->latent_dim(), rope = layout_->rope_dim();
  const int64_t rows = step_->num_tokens;
  if (row_lens_step_ != step_number_) {  // Once a step: the keys each row sees.
    row_lens_.resize(static_cast<size_t>(rows));
    for (int64_t s = 0; s < step_->batch; ++s) {
      for (int32_t r = step_->cu_seqlens_q[s]; r < step_->cu_seqlens_q[s + 1]; ++r) {
        row_lens_[static_cast<size_t>(r)] = step_->q_pos0[s] + (r - step_->cu_seqlens_q[s]) + 1;
      }
    }
    MLA_RETURN_IF_ERROR(Reserve(row_lens_dev_, std::max<size_t>(row_lens_.size() * 4, 8)));
    MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(row_lens_dev_.data(), row_lens_.data(),
                                             row_lens_.size() * sizeof(int32_t),
                                             cudaMemcpyHostToDevice, Raw(stream_)));
    row_lens_step_ = step_number_;
  }
  MLA_ASSIGN_OR_RETURN(const MlaDecodePlanOptions options, DecodePlanOptions(heads));
  const int64_t group = SparsePrefillGroupRows(lat, rope, options, sparse_prefill_bytes_);
  const int64_t width = lat + rope;
  MLA_RETURN_IF_ERROR(Reserve(q_bf16_, static_cast<size_t>(group * heads * width * 2)));
  MLA_RETURN_IF_ERROR(Reserve(out_bf16_, static_cast<size_t>(group * heads * lat * 2)));
  const size_t slots = static_cast<size_t>(MaxPartialSlots(group, options));
  MLA_RETURN_IF_ERROR(Reserve(partial_out_, slots * heads * lat * sizeof(float)));
  MLA_RETURN_IF_ERROR(Reserve(partial_lse_, slots * heads * sizeof(float)));
  MlaDecodePlan& plan = decode_plan_;
  planned_step_ = -1;  // The decode plan's buffers now hold a group's plan.
  for (int64_t first = 0; first < rows; first += group) {
    const int64_t n = std::min(group, rows - first);
    plan_lens_.assign(row_lens_.begin() + first, row_lens_.begin() + first + n);
    for (int32_t& len : plan_lens_) len = std::min(len, topk);
    MLA_RETURN_IF_ERROR(PlanMlaDecode(plan_lens_, options, &plan));
    MLA_RETURN_IF_ERROR(UploadDecodePlan(plan));
    const F32Matrix q_rows = F32(q.Rows(first, n)), out_rows = F32(out.Rows(first, n));
    MLA_RETURN_IF_ERROR(LaunchToBf16(q_rows, q_bf16_.as<bf16_t>(), stream_));
    MlaDecodeParams p = SplitKvParams(layer, heads, softmax_scale, n, plan);
    p.seq_lens = row_lens_dev_.as<int32_t>() + first;
    p.seq_of = row_seq_dev_.as<int32_t>() + first;
    p.lse = static_cast<float*>(lse.data) + first * heads;
    p.selected = selected + first * topk;
    p.topk = topk;
    MLA_RETURN_IF_ERROR(LaunchMlaDecode(p, stream_));
    MLA_RETURN_IF_ERROR(LaunchFromBf16(out_bf16_.as<bf16_t>(), out_rows, stream_));
  }
  return absl::OkStatus();
}

absl::StatusOr<AttentionSharpness> CudaBackend::ProbeAttention(int layer, int64_t seq,
                                                               int64_t num_keys,
                                                               const Tensor& q_row, int heads,
                                                               float softmax_scale, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr || seq < 0 || seq >= step_->batch) {
    return absl::InvalidArgumentError(
        absl::StrCat(op.name, ": sequence ", seq, " outside the step's batch"));
  }
  const int64_t width = layout_->latent_dim() + layout_->rope_dim();
  if (num_keys < 1 || num_keys > step_->max_blocks * layout_->block_size() || q_row.rows != 1 ||
      q_row.cols != heads * width) {
    return absl::InvalidArgumentError(
        absl::StrCat(op.name, ": ", num_keys, " keys, q ", Shape(q_row), " for ", heads, " heads"));
  }
  MLA_RETURN_IF_ERROR(Reserve(probe_stats_, static_cast<size_t>(heads) * 3 * sizeof(float)));
  ProbeF32Params p;
  p.heads = heads;
  p.latent = layout_->latent_dim();
  p.rope = layout_->rope_dim();
  p.block_size = layout_->block_size();
  p.num_keys = num_keys;
  p.softmax_scale = softmax_scale;
  p.cache = CacheLayer(layer);
  p.cache_fp8 = CacheFp8();
  p.blocks = block_table_.as<int32_t>() + seq * table_width_;
  p.q = static_cast<const float*>(q_row.data);
  p.stats = probe_stats_.as<float>();
  MLA_RETURN_IF_ERROR(LaunchProbeF32(p, stream_));
  std::vector<float> stats(static_cast<size_t>(heads) * 3);
  MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(stats.data(), probe_stats_.data(),
                                           stats.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                           Raw(stream_)));
  MLA_RETURN_IF_ERROR(Sync());
  AttentionSharpness out;
  out.layer = layer;
  out.context_tokens = num_keys;
  for (int h = 0; h < heads; ++h) {
    const double m = stats[h * 3], z = stats[h * 3 + 1], a = stats[h * 3 + 2];
    out.entropy += m + std::log(z) - a / z;  // H = m + log Z − A / Z
    out.max_weight += 1.0 / z;               // the max key has weight e⁰ / Z
  }
  out.entropy /= heads;
  out.max_weight /= heads;
  return out;
}

// --- DeepSeek-V3.2 sparse attention ----------------------------------------------------

void CudaBackend::LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                            Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  if (weight.cols != x.cols || bias.cols != x.cols) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(
                        "x ", Shape(x), ", weight ", Shape(weight), ", bias ", Shape(bias))));
  }
  LayerNormF32Params p;
  p.x = F32(x);
  p.out = F32(out);
  p.eps = eps;
  internal::VectorOf(weight, &p.weight_f32, &p.weight_bf16);
  internal::VectorOf(bias, &p.bias_f32, &p.bias_bf16);
  Fail(op, LaunchLayerNormF32(p, stream_));
}

void CudaBackend::RopeHalves(const Tensor& cos, const Tensor& sin, Tensor x, int heads,
                             int64_t head_stride, Op op) {
  RopeImpl(cos, sin, x, heads, head_stride, /*halves=*/true, op);
}

void CudaBackend::WriteIndexKeys(int layer, const Tensor& keys, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  const int64_t dim = layout_->index_key_dim();
  if (dim == 0 || keys.cols != dim || keys.rows != static_cast<int64_t>(step_->slots.size()) ||
      layer < 0 || layer >= layout_->num_layers()) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(
                        "keys ", Shape(keys), " for layer ", layer, " of a cache with ", dim,
                        " indexer values per token and ", step_->slots.size(), " step rows")));
  }
  if (absl::Status s = CheckStepSlots(); !s.ok()) return Fail(op, std::move(s));
  Fail(op, LaunchIndexKeyWriteF32(F32(keys), slots_.as<int64_t>(), IndexKeyLayer(layer),
                                  layout_->index_dtype() == CacheDType::kFp8E4M3,
                                  layout_->block_size(), stream_));
}

void CudaBackend::IndexerTopK(int layer, int heads, float scale, float weight_scale,
                              const Tensor& q, const Tensor& w, Tensor selected, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  const int64_t dim = layout_->index_key_dim(), rows = step_->num_tokens;
  if (dim == 0 || layer < 0 || layer >= layout_->num_layers() || q.cols != heads * dim ||
      q.stride != q.cols || w.cols != heads || w.stride != heads || selected.dtype != DType::kI32 ||
      selected.stride != selected.cols || q.rows != rows || w.rows != rows ||
      selected.rows != rows) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(
                        "q ", Shape(q), ", w ", Shape(w), ", selected ", Shape(selected), " for ",
                        heads, " heads of ", dim, " (selected must be kI32)")));
  }
  if (rows == 0) return;
  IndexerF32Params p;
  p.heads = heads;
  p.dim = static_cast<int>(dim);
  p.block_size = layout_->block_size();
  p.max_blocks = table_width_;
  p.topk = static_cast<int>(selected.cols);
  p.scale = scale;
  p.weight_scale = weight_scale;
  p.keys = IndexKeyLayer(layer);
  p.keys_fp8 = layout_->index_dtype() == CacheDType::kFp8E4M3;
  p.block_table = block_table_.as<int32_t>();
  p.q_pos0 = q_pos0_.as<int32_t>();
  p.cu_seqlens_q = cu_seqlens_q_.as<int32_t>();
  p.row_seq = row_seq_dev_.as<int32_t>();
  p.q = static_cast<const float*>(q.data);
  p.w = static_cast<const float*>(w.data);
  p.selected = static_cast<int32_t*>(selected.data);
  // A step with more rows than sequences holds a prefill chunk, whose rows share keys.
  p.row_tile = rows > step_->batch ? kIndexerMaxRowTile : 1;
  // Scores of a group of rows at a time, so that a long prefill chunk over a long context
  // needs at most kMaxIndexerScoreBytes of scratch (or one row's worth), the split
  // selection's candidates (few rows) included. A row's scratch spans the block table's
  // width, not the longest sequence: the launches then bake in nothing that changes from
  // one decode step to the next, so a CUDA graph replays them (the score kernel's surplus
  // CTAs see no visible keys and return).
  const int64_t stride = table_width_ * layout_->block_size();
  p.scores_stride = stride;
  const int64_t row_bytes = stride * 4 + IndexerSelectScratchBytes(1, stride, p.topk);
  const int64_t group =
      std::clamp<int64_t>(kMaxIndexerScoreBytes / std::max<int64_t>(1, row_bytes), 1, rows);
  const int64_t score_bytes = group * stride * 4;
  // The most candidates a launch of at most `group` rows keeps (only launches of at most
  // kIndexerSplitSelectMaxRows rows split, the last group's too).
  const int64_t select_bytes =
      IndexerSelectScratchBytes(std::min(group, kIndexerSplitSelectMaxRows), stride, p.topk);
  if (absl::Status s = Reserve(indexer_scores_, static_cast<size_t>(score_bytes + select_bytes));
      !s.ok()) {
    return Fail(op, std::move(s));
  }
  p.scores = indexer_scores_.as<float>();
  p.select_scratch = static_cast<unsigned char*>(indexer_scores_.data()) + score_bytes;
  for (int64_t first = 0; first < rows; first += group) {
    p.first_row = first;
    p.num_rows = std::min(group, rows - first);
    if (absl::Status s = LaunchIndexerTopK(p, stream_); !s.ok()) return Fail(op, std::move(s));
  }
}

void CudaBackend::SparseMlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                                     const Tensor& selected, Tensor out, Tensor lse, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  if (absl::Status s = CheckAttentionTensors(heads, q, out, lse); !s.ok()) {
    return Fail(op, std::move(s));
  }
  if (selected.dtype != DType::kI32 || selected.stride != selected.cols ||
      selected.rows != q.rows || selected.cols < 1) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(
                        "selected ", Shape(selected), " must be dense kI32 rows, one per q row")));
  }
  const int topk = static_cast<int>(selected.cols);
  last_heads_ = heads;
  last_topk_ = topk;
  // The split-KV kernels gather each row's selected keys (tensor cores where they take the
  // widths), a decode step's rows as its sequences, any other step's rows each on its own;
  // otherwise (block sizes other than 64, more rows than a grid holds) the generic kernel.
  if (SplitKvTakes(heads) && step_->decompress.empty()) {
    const auto* sel = static_cast<const int32_t*>(selected.data);
    return Fail(op,
                decode_only_
                    ? SplitKvDecode(layer, heads, softmax_scale, q, out, lse, sel, topk)
                    : SparsePrefillSplitKv(layer, heads, softmax_scale, q, out, lse, sel, topk));
  }
  MlaAttentionF32Params p = GenericAttentionParams(layer, heads, softmax_scale, q, out, lse);
  p.selected = static_cast<const int32_t*>(selected.data);
  p.topk = topk;
  Fail(op, LaunchMlaAttentionF32(p, stream_));
}

}  // namespace mla::cuda
