#include "engine/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/attention_probe.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/decompressed_attention.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/backend/cpu/indexer.h"
#include "engine/backend/cpu/pointwise.h"
#include "engine/backend/host_sampling.h"
#include "engine/kv_cache/cache_row.h"
#include "engine/kv_cache/index_key_row.h"

namespace mla::cpu {
namespace {

float* F32(const Tensor& t) { return static_cast<float*>(t.data); }

MatrixView ViewOf(const Tensor& w) { return MatrixView{w.data, w.dtype, w.rows, w.cols, w.stride}; }

std::string Shape(const Tensor& t) { return absl::StrCat("[", t.rows, ", ", t.cols, "]"); }

// out[r] = silu(gate[r]) · up[r] for `rows` rows of `cols`, rows split over the pool once
// there are enough of them: a prefill chunk's dense MLP has 512 × 10,944, and one exp each
// (kept scalar: std::exp is what the golden tests were made against) took 4% of a chunk
// on one thread once the GEMMs ran on AMX tiles.
void SiluMulRows(cpu::ThreadPool& pool, const float* gate, int64_t gate_stride, const float* up,
                 int64_t up_stride, float* out, int64_t out_stride, int64_t rows, int64_t cols) {
  constexpr int64_t kMinParallelValues = 1 << 15;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      mla::SiluMul(gate + r * gate_stride, up + r * up_stride, 1, cols, 0, out + r * out_stride);
    }
  };
  if (rows * cols < kMinParallelValues) {
    run(0, rows);
  } else {
    pool.ParallelFor(rows, run);
  }
}

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {}
CpuBackend::~CpuBackend() = default;

std::string CpuBackend::Describe() const {
  // The faster inexact level is opt-in (cpu_features.h); say so where the CPU has it.
  const std::string detected(CpuIsaName(DetectedIsa()));
  const std::string hint =
      DetectedIsa() > ActiveIsa()
          ? absl::StrCat("; ", detected, " available, opt in with MLA_CPU_ISA=", detected)
          : "";
  return absl::StrCat("cpu (", pool_.num_threads(), " threads, ",
                      std::string(CpuIsaName(ActiveIsa())), hint, ")");
}

void CpuBackend::Fail(absl::Status status) {
  if (error_.ok()) error_ = std::move(status);
}

absl::Status CpuBackend::TakeError() { return std::exchange(error_, absl::OkStatus()); }

absl::StatusOr<Tensor> CpuBackend::AddWeight(std::string_view name, const MatrixView& host) {
  if (host.dtype != DType::kBF16 && host.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": the CPU backend takes bf16 or f32 weights, got ",
                     DTypeName(host.dtype)));
  }
  // Read in place: the checkpoint's host copy is what the kernels stream.
  return Tensor{const_cast<void*>(host.data), host.dtype, host.rows, host.cols, host.row_stride};
}

absl::Status CpuBackend::AllocateCache(const CacheLayout& layout, int32_t num_blocks) {
  absl::StatusOr<LatentCache> cache = LatentCache::CreateWithBlocks(layout, num_blocks);
  if (!cache.ok()) return cache.status();
  cache_.emplace(std::move(*cache));
  return absl::OkStatus();
}

absl::Status CpuBackend::CheckBlockCopy(int32_t block, size_t bytes) const {
  if (!cache_ || block < 0 || block >= cache_->num_blocks() ||
      static_cast<int64_t>(bytes) != cache_->layout().bytes_per_block()) {
    return absl::InvalidArgumentError(absl::StrCat("cache block copy: block ", block, " of ",
                                                   cache_num_blocks(), ", ", bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) {
  if (absl::Status s = CheckBlockCopy(block, bytes.size()); !s.ok()) return s;
  const int64_t per_layer = cache_->layout().bytes_per_block_per_layer();
  const int layers = cache_->layout().num_layers();
  for (int l = 0; l < layers; ++l) {
    std::memcpy(bytes.data() + l * per_layer, cache_->LayerBytes(l) + block * per_layer, per_layer);
  }
  // V3.2: the indexer keys of every layer follow the latents.
  const int64_t per_index = IndexBytesPerBlock();
  uint8_t* index = bytes.data() + layers * per_layer;
  for (int l = 0; l < layers && per_index > 0; ++l) {
    std::memcpy(index + l * per_index, cache_->IndexKeyBytes(l) + block * per_index, per_index);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) {
  if (absl::Status s = CheckBlockCopy(block, bytes.size()); !s.ok()) return s;
  const int64_t per_layer = cache_->layout().bytes_per_block_per_layer();
  const int layers = cache_->layout().num_layers();
  for (int l = 0; l < layers; ++l) {
    std::memcpy(cache_->LayerBytes(l) + block * per_layer, bytes.data() + l * per_layer, per_layer);
  }
  const int64_t per_index = IndexBytesPerBlock();
  const uint8_t* index = bytes.data() + layers * per_layer;
  for (int l = 0; l < layers && per_index > 0; ++l) {
    std::memcpy(cache_->IndexKeyBytes(l) + block * per_index, index + l * per_index, per_index);
  }
  return absl::OkStatus();
}

int64_t CpuBackend::IndexBytesPerBlock() const {
  return cache_->layout().index_bytes_per_block_per_layer();
}

Tensor CpuBackend::Activation(int slot, int64_t rows, int64_t cols) {
  if (slot >= static_cast<int>(activations_.size())) activations_.resize(slot + 1);
  AlignedBuffer& b = activations_[slot];
  const size_t bytes = static_cast<size_t>(rows * cols) * sizeof(float);
  if (b.size() < bytes) b = AlignedBuffer(bytes);
  return Tensor{b.data(), DType::kF32, rows, cols, cols};
}

BackendMemory CpuBackend::Memory() const {
  BackendMemory m;
  m.cache_bytes = cache_ ? static_cast<int64_t>(cache_->bytes()) : 0;
  size_t bytes = attention_ws_.bytes() + sparse_ws_.bytes();
  for (const AlignedBuffer& b : activations_) bytes += b.size();
  for (const std::vector<float>* v : {&expert_in_, &expert_out_, &gate_, &up_, &act_}) {
    bytes += v->capacity() * sizeof(float);
  }
  m.workspace_bytes = static_cast<int64_t>(bytes);
  return m;
}

void CpuBackend::Upload(std::span<const float> host, Tensor dst, Op op) {
  auto timer = profiler_.Time(op);
  if (static_cast<int64_t>(host.size()) != dst.rows * dst.cols) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(op.name, ": ", host.size(), " values for a ", Shape(dst), " tensor")));
  }
  for (int64_t r = 0; r < dst.rows; ++r) {
    std::memcpy(F32(dst) + r * dst.stride, host.data() + r * dst.cols, sizeof(float) * dst.cols);
  }
}

void CpuBackend::Download(const Tensor& src, std::span<float> host, Op op) {
  auto timer = profiler_.Time(op);
  if (static_cast<int64_t>(host.size()) != src.rows * src.cols) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(op.name, ": ", host.size(), " values for a ", Shape(src), " tensor")));
  }
  for (int64_t r = 0; r < src.rows; ++r) {
    std::memcpy(host.data() + r * src.cols, F32(src) + r * src.stride, sizeof(float) * src.cols);
  }
}

void CpuBackend::Embed(const Tensor& table, std::span<const int32_t> tokens, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= table.rows) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(op.name, ": token id ", t, " outside [0, ", table.rows, ")")));
    }
    float* dst = F32(out) + static_cast<int64_t>(i) * out.stride;
    if (table.dtype == DType::kBF16) {
      const bf16_t* src = static_cast<const bf16_t*>(table.data) + t * table.stride;
      for (int64_t c = 0; c < table.cols; ++c) dst[c] = Bf16ToFloat(src[c]);
    } else {
      std::memcpy(dst, F32(table) + t * table.stride, sizeof(float) * table.cols);
    }
  }
}

void CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  mla::RmsNorm(F32(x), x.stride, x.rows, static_cast<int>(x.cols), F32(weight), eps, F32(out),
               out.stride);
}

void CpuBackend::Gemm(const Tensor& x, const Tensor& w, Tensor y, Op op) {
  auto timer = profiler_.Time(op);
  if (x.cols != w.cols || y.cols != w.rows || y.rows != x.rows) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(op.name, " (layer ", op.layer, "): x ", Shape(x),
                                                " · w ", Shape(w), "ᵀ into y ", Shape(y))));
  }
  cpu::Gemm(F32(x), x.stride, x.rows, ViewOf(w), F32(y), y.stride, &pool_);
}

void CpuBackend::Copy(const Tensor& src, Tensor dst, Op op) {
  auto timer = profiler_.Time(op);
  if (src.rows != dst.rows || src.cols != dst.cols) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(op.name, ": copy of ", Shape(src), " into ", Shape(dst))));
  }
  for (int64_t r = 0; r < dst.rows; ++r) {
    std::memcpy(F32(dst) + r * dst.stride, F32(src) + r * src.stride, sizeof(float) * dst.cols);
  }
}

void CpuBackend::Fill(Tensor t, float value, Op op) {
  auto timer = profiler_.Time(op);
  for (int64_t r = 0; r < t.rows; ++r) std::fill_n(F32(t) + r * t.stride, t.cols, value);
}

void CpuBackend::Add(const Tensor& x, Tensor y, Op op) {
  auto timer = profiler_.Time(op);
  for (int64_t r = 0; r < y.rows; ++r) {
    const float* src = F32(x) + r * x.stride;
    float* dst = F32(y) + r * y.stride;
    for (int64_t c = 0; c < y.cols; ++c) dst[c] += src[c];
  }
}

void CpuBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  SiluMulRows(pool_, F32(gate), gate.stride, F32(up), up.stride, F32(out), out.stride, out.rows,
              out.cols);
}

void CpuBackend::Rope(const Tensor& cos, const Tensor& sin, Tensor x, int heads,
                      int64_t head_stride, Op op) {
  auto timer = profiler_.Time(op);
  const int half = static_cast<int>(cos.cols);
  for (int64_t t = 0; t < x.rows; ++t) {
    RotateInterleaved(F32(cos) + t * cos.stride, F32(sin) + t * sin.stride, half,
                      F32(x) + t * x.stride, heads, head_stride);
  }
}

absl::Status CpuBackend::CheckSlots(int64_t rows, Op op) const {
  const int64_t num_slots = int64_t{cache_->num_blocks()} * cache_->layout().block_size();
  if (rows != static_cast<int64_t>(step_->slots.size())) {
    return absl::InvalidArgumentError(absl::StrCat(op.name, ": ", rows, " rows for the step's ",
                                                   step_->slots.size(), " cache slots"));
  }
  for (const int64_t slot : step_->slots) {
    if (slot < 0 || slot >= num_slots) {
      return absl::OutOfRangeError(
          absl::StrCat(op.name, ": cache slot ", slot, " outside [0, ", num_slots, ")"));
    }
  }
  return absl::OkStatus();
}

void CpuBackend::WriteCache(int layer, const Tensor& latent, const Tensor& k_pe, Op op) {
  auto timer = profiler_.Time(op);
  const CacheLayout& layout = cache_->layout();
  const int64_t lat = layout.latent_dim(), rope = layout.rope_dim();
  if (latent.cols != lat || k_pe.cols != rope || latent.rows != k_pe.rows) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        op.name, ": latent ", Shape(latent), " and k_pe ", Shape(k_pe),
        " do not match the cache rows [", step_->slots.size(), ", ", lat, " + ", rope, "]")));
  }
  // All slots are checked before anything is written: a bad step leaves the cache as it was.
  if (absl::Status s = CheckSlots(latent.rows, op); !s.ok()) return Fail(std::move(s));
  // Quantized here, once per token, whatever the dtype: the kernels only read.
  uint8_t* base = cache_->LayerBytes(layer);
  const int64_t row_bytes = layout.bytes_per_token_per_layer();
  for (int64_t t = 0; t < latent.rows; ++t) {
    EncodeCacheRow(layout.dtype(), lat, rope, F32(latent) + t * latent.stride,
                   F32(k_pe) + t * k_pe.stride, base + step_->slots[t] * row_bytes);
  }
}

absl::Status CpuBackend::CheckAttentionTensors(int heads, const Tensor& q, const Tensor& out,
                                               const Tensor& lse, Op op) const {
  const CacheLayout& layout = cache_->layout();
  const int64_t width = layout.latent_dim() + layout.rope_dim();
  if (q.cols != heads * width || q.stride != q.cols || out.cols != heads * layout.latent_dim() ||
      out.stride != out.cols || lse.cols != heads || lse.stride != heads) {
    return absl::InvalidArgumentError(absl::StrCat(op.name, ": q ", Shape(q), ", out ", Shape(out),
                                                   ", lse ", Shape(lse), " must be dense rows of ",
                                                   heads, " heads"));
  }
  return absl::OkStatus();
}

MlaAttentionParams CpuBackend::AttentionParams(int layer, int heads, float softmax_scale,
                                               const Tensor& q, Tensor out, Tensor lse) const {
  const CacheLayout& layout = cache_->layout();
  MlaAttentionParams p;
  p.batch = step_->batch;
  p.num_heads = heads;
  p.kv_lora_rank = layout.latent_dim();
  p.rope_dim = layout.rope_dim();
  p.block_size = layout.block_size();
  p.num_blocks = cache_->num_blocks();
  p.max_blocks_per_seq = step_->max_blocks;
  p.softmax_scale = softmax_scale;
  p.kv_dtype = layout.dtype();
  p.kv_cache = cache_->LayerBytes(layer);
  p.block_table = step_->block_table.data();
  p.seq_lens = step_->seq_lens.data();
  p.q_pos0 = step_->q_pos0.data();
  p.cu_seqlens_q = step_->cu_seqlens_q.data();
  p.q = F32(q);
  p.out = F32(out);
  p.lse = F32(lse);
  return p;
}

void CpuBackend::MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                              Tensor out, Tensor lse, Op op) {
  auto timer = profiler_.Time(op);
  if (absl::Status s = CheckAttentionTensors(heads, q, out, lse, op); !s.ok()) {
    return Fail(std::move(s));
  }
  const MlaAttentionParams p = AttentionParams(layer, heads, softmax_scale, q, out, lse);
  const std::vector<uint8_t>& skip = step_->decompress;
  if (skip.empty()) {
    if (absl::Status s = cpu::MlaAttention(p, &pool_, &attention_ws_); !s.ok()) Fail(std::move(s));
    return;
  }
  // Sequences that attend decompressed are left out: one call per run of the others.
  for (int64_t begin = 0; begin < p.batch;) {
    if (skip[begin] != 0) {
      ++begin;
      continue;
    }
    int64_t end = begin + 1;
    while (end < p.batch && skip[end] == 0) ++end;
    if (absl::Status s = MlaAttentionRange(p, begin, end); !s.ok()) return Fail(std::move(s));
    begin = end;
  }
}

absl::Status CpuBackend::MlaAttentionRange(const MlaAttentionParams& all, int64_t begin,
                                           int64_t end) {
  MlaAttentionParams p = all;
  const int64_t row0 = all.cu_seqlens_q[begin];
  range_cu_seqlens_.clear();
  for (int64_t j = begin; j <= end; ++j) {
    range_cu_seqlens_.push_back(all.cu_seqlens_q[j] - static_cast<int32_t>(row0));
  }
  p.batch = end - begin;
  p.block_table += begin * all.max_blocks_per_seq;
  p.seq_lens += begin;
  p.q_pos0 += begin;
  p.cu_seqlens_q = range_cu_seqlens_.data();
  p.q += row0 * all.num_heads * (all.kv_lora_rank + all.rope_dim);
  p.out += row0 * all.num_heads * all.kv_lora_rank;
  p.lse += row0 * all.num_heads;
  return cpu::MlaAttention(p, &pool_, &attention_ws_);
}

void CpuBackend::DecompressedAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                                       const Tensor& kv_b, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  const CacheLayout& layout = cache_->layout();
  const int64_t nope = heads > 0 ? q.cols / heads - layout.rope_dim() : 0;
  const int64_t vdim = heads > 0 ? out.cols / heads : 0;
  if (heads < 1 || q.cols != heads * (nope + layout.rope_dim()) || q.stride != q.cols ||
      out.cols != heads * vdim || out.stride != out.cols || q.rows != step_->num_tokens ||
      out.rows != q.rows) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(op.name, ": q ", Shape(q), ", out ", Shape(out),
                                                " must be dense rows of ", heads, " heads")));
  }
  DecompressedAttentionParams p;
  // AttentionParams' q, out and lse are for the absorbed kernel; this one has its own.
  p.paged = AttentionParams(layer, heads, softmax_scale, q, out, out);
  p.nope_dim = nope;
  p.v_dim = vdim;
  p.kv_b = ViewOf(kv_b);
  p.take = step_->decompress.empty() ? nullptr : step_->decompress.data();
  p.q = F32(q);
  p.out = F32(out);
  if (p.take == nullptr) return;  // Nothing marked: nothing to compute.
  if (absl::Status s = cpu::DecompressedAttention(p, &pool_); !s.ok()) Fail(std::move(s));
}

void CpuBackend::LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                           Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  if (weight.cols != x.cols || bias.cols != x.cols || out.cols != x.cols || out.rows != x.rows) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(op.name, ": x ", Shape(x), ", weight ",
                                                        Shape(weight), ", bias ", Shape(bias))));
  }
  mla::LayerNorm(F32(x), x.stride, x.rows, static_cast<int>(x.cols), F32(weight), F32(bias), eps,
                 F32(out), out.stride);
}

void CpuBackend::RopeHalves(const Tensor& cos, const Tensor& sin, Tensor x, int heads,
                            int64_t head_stride, Op op) {
  auto timer = profiler_.Time(op);
  const int half = static_cast<int>(cos.cols);
  for (int64_t t = 0; t < x.rows; ++t) {
    RotateHalves(F32(cos) + t * cos.stride, F32(sin) + t * sin.stride, half, F32(x) + t * x.stride,
                 heads, head_stride);
  }
}

void CpuBackend::WriteIndexKeys(int layer, const Tensor& keys, Op op) {
  auto timer = profiler_.Time(op);
  const int64_t dim = cache_->layout().index_key_dim();
  if (dim == 0 || keys.cols != dim) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(op.name, ": keys ", Shape(keys), " for a cache with indexer keys of ", dim)));
  }
  if (absl::Status s = CheckSlots(keys.rows, op); !s.ok()) return Fail(std::move(s));
  const CacheLayout& layout = cache_->layout();
  uint8_t* base = cache_->IndexKeyBytes(layer);
  const int64_t block_size = layout.block_size();
  for (int64_t t = 0; t < keys.rows; ++t) {
    const int64_t slot = step_->slots[t];
    EncodeIndexKey(layout.index_dtype(), dim, block_size, F32(keys) + t * keys.stride,
                   base + slot / block_size * layout.index_bytes_per_block_per_layer(),
                   slot % block_size);
  }
}

void CpuBackend::IndexerTopK(int layer, int heads, float scale, float weight_scale, const Tensor& q,
                             const Tensor& w, Tensor selected, Op op) {
  auto timer = profiler_.Time(op);
  const CacheLayout& layout = cache_->layout();
  const int64_t dim = layout.index_key_dim(), rows = step_->num_tokens;
  if (dim == 0 || q.cols != heads * dim || q.stride != q.cols || w.cols != heads ||
      w.stride != heads || selected.dtype != DType::kI32 || selected.stride != selected.cols ||
      q.rows != rows || w.rows != rows || selected.rows != rows) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(op.name, ": q ", Shape(q), ", w ", Shape(w), ", selected ", Shape(selected),
                     " for ", heads, " heads of ", dim, " (selected must be kI32)")));
  }
  IndexerParams p;
  p.batch = step_->batch;
  p.num_heads = heads;
  p.head_dim = dim;
  p.block_size = layout.block_size();
  p.num_blocks = cache_->num_blocks();
  p.max_blocks_per_seq = step_->max_blocks;
  p.topk = selected.cols;
  p.scale = scale;
  p.weight_scale = weight_scale;
  p.key_cache = cache_->IndexKeyBytes(layer);
  p.key_dtype = layout.index_dtype();
  p.block_table = step_->block_table.data();
  p.seq_lens = step_->seq_lens.data();
  p.q_pos0 = step_->q_pos0.data();
  p.cu_seqlens_q = step_->cu_seqlens_q.data();
  p.q = F32(q);
  p.weights = F32(w);
  p.selected = static_cast<int32_t*>(selected.data);
  if (absl::Status s = cpu::IndexerTopK(p, &pool_); !s.ok()) Fail(std::move(s));
}

void CpuBackend::SparseMlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                                    const Tensor& selected, Tensor out, Tensor lse, Op op) {
  auto timer = profiler_.Time(op);
  if (absl::Status s = CheckAttentionTensors(heads, q, out, lse, op); !s.ok()) {
    return Fail(std::move(s));
  }
  if (selected.dtype != DType::kI32 || selected.stride != selected.cols ||
      selected.rows != q.rows) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        op.name, ": selected ", Shape(selected), " must be dense kI32 rows, one per q row")));
  }
  SparseMlaParams p;
  p.mla = AttentionParams(layer, heads, softmax_scale, q, out, lse);
  p.topk = selected.cols;
  p.selected = static_cast<const int32_t*>(selected.data);
  if (absl::Status s = cpu::SparseMlaAttention(p, &pool_, &sparse_ws_); !s.ok()) {
    Fail(std::move(s));
  }
}

void CpuBackend::ExpertMlp(const ExpertTensors& e, int64_t m, int64_t hidden) {
  const int64_t inter = e.gate.rows;
  gate_.resize(m * inter);
  up_.resize(m * inter);
  act_.resize(m * inter);
  cpu::Gemm(expert_in_.data(), hidden, m, ViewOf(e.gate), gate_.data(), inter, &pool_);
  cpu::Gemm(expert_in_.data(), hidden, m, ViewOf(e.up), up_.data(), inter, &pool_);
  SiluMulRows(pool_, gate_.data(), inter, up_.data(), inter, act_.data(), inter, m, inter);
  cpu::Gemm(act_.data(), inter, m, ViewOf(e.down), expert_out_.data(), hidden, &pool_);
}

void CpuBackend::MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits,
                            const Tensor& bias, std::span<const ExpertTensors> experts,
                            const Tensor& x, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  const int64_t n = x.rows, hidden = x.cols;
  if (static_cast<int>(experts.size()) != policy.num_experts ||
      router_logits.cols < policy.num_experts || router_logits.rows != n) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(op.name, ": ", experts.size(), " experts and router logits ",
                     Shape(router_logits), " for ", policy.num_experts, " experts, ", n, " rows")));
  }
  const std::span<const float> bias_values =
      bias.empty() ? std::span<const float>() : std::span<const float>(F32(bias), bias.cols);
  // Group the tokens by expert so that each expert's weights are read once per step.
  std::vector<std::vector<std::pair<int64_t, float>>> assigned(experts.size());
  for (int64_t t = 0; t < n; ++t) {
    const ExpertChoice choice =
        RouteToken(F32(router_logits) + t * router_logits.stride, policy, bias_values);
    for (size_t k = 0; k < choice.experts.size(); ++k) {
      assigned[choice.experts[k]].push_back({t, choice.weights[k]});
    }
  }
  for (size_t e = 0; e < experts.size(); ++e) {
    const auto& rows = assigned[e];
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    expert_in_.resize(m * hidden);
    expert_out_.resize(m * hidden);
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(expert_in_.data() + i * hidden, F32(x) + rows[i].first * x.stride,
                  sizeof(float) * hidden);
    }
    ExpertMlp(experts[e], m, hidden);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = F32(out) + rows[i].first * out.stride;
      const float* src = expert_out_.data() + i * hidden;
      const float weight = rows[i].second;
      for (int64_t j = 0; j < hidden; ++j) dst[j] += weight * src[j];
    }
  }
}

absl::StatusOr<AttentionSharpness> CpuBackend::ProbeAttention(int layer, int64_t seq,
                                                              int64_t num_keys, const Tensor& q_row,
                                                              int heads, float softmax_scale,
                                                              Op op) {
  auto timer = profiler_.Time(op);
  if (seq < 0 || seq >= step_->batch) {
    return absl::InvalidArgumentError(
        absl::StrCat(op.name, ": sequence ", seq, " outside the step's ", step_->batch));
  }
  const std::span<const int32_t> blocks(step_->block_table.data() + seq * step_->max_blocks,
                                        static_cast<size_t>(step_->max_blocks));
  return ProbeAttentionRow(*cache_, layer, blocks, num_keys, F32(q_row), heads, softmax_scale);
}

void CpuBackend::Sample(const Tensor& logits, std::span<const RowSampling> rows,
                        std::span<RowSample> out, Op op) {
  auto timer = profiler_.Time(op);
  for (size_t i = 0; i < rows.size(); ++i) {
    SampleHostRow(std::span<const float>(F32(logits) + rows[i].row * logits.stride,
                                         static_cast<size_t>(logits.cols)),
                  rows[i], out[i]);
  }
}

}  // namespace mla::cpu
