#include "engine/model/deepseek_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/moe_config.h"

namespace mla {
namespace {

// Activation buffers of a step (Backend::Activation slots).
// clang-format off
enum Slot {
  kCos, kSin, kH, kXn, kTmp, kQ, kQa, kCkv, kQAbs, kOLat, kAttn, kLse,
  kGate, kUp, kAct, kRouter, kSelected, kNormed, kLogits,
  kIdxQ, kIdxK, kIdxW, kIdxSel,  // V3.2 indexer: queries, keys, head weights, selection.
};
// clang-format on

struct MlpNames {
  const char* gate;
  const char* up;
  const char* silu;
  const char* down;
};
constexpr MlpNames kDenseNames{"ffn_gate", "ffn_up", "ffn_silu", "ffn_down"};
constexpr MlpNames kSharedNames{"ffn_shared_gate", "ffn_shared_up", "ffn_shared_silu",
                                "ffn_shared_down"};

// transformers' DeepseekV32Indexer: nn.LayerNorm(index_head_dim, eps=1e-6).
constexpr float kIndexerNormEps = 1e-6f;

MatrixView VectorView(const std::vector<float>& v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return MatrixView{v.data(), DType::kF32, 1, n, n};
}

}  // namespace

// One layer's weights as the backend holds them.
struct DeepseekModel::Layer {
  Tensor input_norm, post_norm;
  Tensor q_proj, q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b, o_proj;
  std::vector<Tensor> w_uk_t;                                         // Per head [L, nope].
  Tensor idx_wq_b, idx_wk, idx_k_norm, idx_k_norm_bias, idx_weights;  // V3.2 indexer.
  bool is_moe = false;
  ExpertTensors mlp;  // Dense layers.
  Tensor router, router_bias;
  ExpertTensors shared;  // Empty gate when the layer has no shared experts.
  std::vector<ExpertTensors> experts;
};

DeepseekModel::~DeepseekModel() = default;

absl::StatusOr<std::unique_ptr<DeepseekModel>> DeepseekModel::Load(const std::string& model_dir,
                                                                   Backend* backend) {
  MLA_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  MLA_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(model_dir, config));
  return Create(std::move(config), std::move(weights), backend);
}

absl::StatusOr<std::unique_ptr<DeepseekModel>> DeepseekModel::Create(ModelConfig config,
                                                                     ModelWeights weights,
                                                                     Backend* backend) {
  std::unique_ptr<DeepseekModel> model(
      new DeepseekModel(std::move(config), std::move(weights), backend));
  MLA_RETURN_IF_ERROR(model->UploadWeights());
  return model;
}

DeepseekModel::DeepseekModel(ModelConfig config, ModelWeights weights, Backend* backend)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      backend_(backend),
      rope_(config_),
      softmax_scale_(static_cast<float>(SoftmaxScale(config_))),
      moe_policy_(MoeRoutingFromConfig(config_)) {}

absl::Status DeepseekModel::UploadWeights() {
  const ModelConfig& c = config_;
  Backend& be = *backend_;
  const int heads = c.num_attention_heads, nope = c.qk_nope_head_dim;
  const int lat = c.kv_lora_rank, head_rows = nope + c.v_head_dim;
  auto add = [&](const std::string& name, const MatrixView& v, Tensor& out) -> absl::Status {
    MLA_ASSIGN_OR_RETURN(out, be.AddWeight(name, v));
    return absl::OkStatus();
  };
  auto add_mlp = [&](const std::string& prefix, const MlpWeights& w,
                     ExpertTensors& out) -> absl::Status {
    MLA_RETURN_IF_ERROR(add(prefix + ".gate_proj", w.gate.View(), out.gate));
    MLA_RETURN_IF_ERROR(add(prefix + ".up_proj", w.up.View(), out.up));
    return add(prefix + ".down_proj", w.down.View(), out.down);
  };
  MLA_RETURN_IF_ERROR(add("model.embed_tokens", weights_.embed_tokens.View(), embed_));
  MLA_RETURN_IF_ERROR(add("model.norm", VectorView(weights_.norm), norm_));
  MLA_RETURN_IF_ERROR(add("lm_head", weights_.lm_head.View(), lm_head_));
  // W_UK transposed per head, built once on the host.
  w_uk_t_.reserve(static_cast<size_t>(c.num_hidden_layers) * heads);
  layers_.resize(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    const AttentionWeights& a = lw.attn;
    Layer& t = layers_[l];
    const std::string p = absl::StrCat("model.layers.", l);
    MLA_RETURN_IF_ERROR(add(p + ".input_layernorm", VectorView(lw.input_layernorm), t.input_norm));
    MLA_RETURN_IF_ERROR(
        add(p + ".post_attention_layernorm", VectorView(lw.post_attention_layernorm), t.post_norm));
    if (c.q_lora_rank > 0) {
      MLA_RETURN_IF_ERROR(add(p + ".self_attn.q_a_proj", a.q_a_proj.View(), t.q_a));
      MLA_RETURN_IF_ERROR(
          add(p + ".self_attn.q_a_layernorm", VectorView(a.q_a_layernorm), t.q_a_norm));
      MLA_RETURN_IF_ERROR(add(p + ".self_attn.q_b_proj", a.q_b_proj.View(), t.q_b));
    } else {
      MLA_RETURN_IF_ERROR(add(p + ".self_attn.q_proj", a.q_proj.View(), t.q_proj));
    }
    MLA_RETURN_IF_ERROR(
        add(p + ".self_attn.kv_a_proj_with_mqa", a.kv_a_proj_with_mqa.View(), t.kv_a));
    MLA_RETURN_IF_ERROR(
        add(p + ".self_attn.kv_a_layernorm", VectorView(a.kv_a_layernorm), t.kv_a_norm));
    MLA_RETURN_IF_ERROR(add(p + ".self_attn.kv_b_proj", a.kv_b_proj.View(), t.kv_b));
    MLA_RETURN_IF_ERROR(add(p + ".self_attn.o_proj", a.o_proj.View(), t.o_proj));
    if (c.has_indexer()) {
      const IndexerWeights& iw = a.indexer;
      const std::string ip = p + ".self_attn.indexer.";
      MLA_RETURN_IF_ERROR(add(ip + "wq_b", iw.wq_b.View(), t.idx_wq_b));
      MLA_RETURN_IF_ERROR(add(ip + "wk", iw.wk.View(), t.idx_wk));
      MLA_RETURN_IF_ERROR(add(ip + "k_norm", VectorView(iw.k_norm), t.idx_k_norm));
      MLA_RETURN_IF_ERROR(add(ip + "k_norm.bias", VectorView(iw.k_norm_bias), t.idx_k_norm_bias));
      MLA_RETURN_IF_ERROR(add(ip + "weights_proj", iw.weights_proj.View(), t.idx_weights));
    }
    const Matrix& kv_b = a.kv_b_proj;
    const size_t elem = DTypeSize(kv_b.dtype);
    for (int h = 0; h < heads; ++h) {
      Matrix m = Matrix::Allocate(lat, nope, kv_b.dtype);
      for (int i = 0; i < nope; ++i) {
        const int64_t row = static_cast<int64_t>(h) * head_rows + i;
        for (int col = 0; col < lat; ++col) {
          std::memcpy(m.data.data() + (static_cast<size_t>(col) * nope + i) * elem,
                      kv_b.data.data() + (static_cast<size_t>(row) * lat + col) * elem, elem);
        }
      }
      w_uk_t_.push_back(std::move(m));
      Tensor w;
      MLA_RETURN_IF_ERROR(add(absl::StrCat(p, ".self_attn.w_uk_t.", h), w_uk_t_.back().View(), w));
      t.w_uk_t.push_back(w);
    }
    t.is_moe = lw.is_moe;
    if (!lw.is_moe) {
      MLA_RETURN_IF_ERROR(add_mlp(p + ".mlp", lw.mlp, t.mlp));
      continue;
    }
    MLA_RETURN_IF_ERROR(add(p + ".mlp.gate", lw.moe.gate.View(), t.router));
    if (!lw.moe.score_bias.empty()) {
      MLA_RETURN_IF_ERROR(add(p + ".mlp.gate.e_score_correction_bias",
                              VectorView(lw.moe.score_bias), t.router_bias));
    }
    if (!lw.moe.shared.gate.empty()) {
      MLA_RETURN_IF_ERROR(add_mlp(p + ".mlp.shared_experts", lw.moe.shared, t.shared));
    }
    t.experts.resize(lw.moe.experts.size());
    for (size_t e = 0; e < lw.moe.experts.size(); ++e) {
      MLA_RETURN_IF_ERROR(
          add_mlp(absl::StrCat(p, ".mlp.experts.", e), lw.moe.experts[e], t.experts[e]));
    }
  }
  return absl::OkStatus();
}

absl::Status DeepseekModel::CheckChunks(std::span<const SequenceChunk> chunks) const {
  const CacheLayout& layout = backend_->cache_layout();
  if (layout.latent_dim() != config_.kv_lora_rank ||
      layout.rope_dim() != config_.qk_rope_head_dim ||
      layout.num_layers() != config_.num_hidden_layers ||
      layout.index_key_dim() != config_.index_head_dim) {
    return absl::InvalidArgumentError("the KV cache layout does not match the model");
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SequenceChunk& c = chunks[i];
    if (c.tokens.empty()) continue;
    if (c.table == nullptr || c.start_pos < 0 ||
        c.table->capacity() < c.start_pos + static_cast<int64_t>(c.tokens.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, ": block table has no room for positions ", c.start_pos, "..",
                       c.start_pos + static_cast<int64_t>(c.tokens.size()) - 1));
    }
    if (c.table->block_size() != layout.block_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, ": block table of ", c.table->block_size(),
                       "-token blocks for a cache of ", layout.block_size()));
    }
    for (int32_t t : c.tokens) {
      if (t < 0 || t >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("chunk ", i, ": token id ", t,
                                                       " is outside the vocabulary [0, ",
                                                       config_.vocab_size, ")"));
      }
    }
  }
  return absl::OkStatus();
}

void DeepseekModel::BuildStep(std::span<const SequenceChunk> chunks) {
  StepBatch& b = step_;
  // Cleared, not replaced: the vectors keep their capacity, so a step allocates nothing.
  b.num_tokens = b.batch = b.max_blocks = 0;
  for (std::vector<int32_t>* v : {&b.block_table, &b.seq_lens, &b.q_pos0, &b.cu_seqlens_q}) {
    v->clear();
  }
  b.slots.clear();
  b.decompress.clear();
  step_tokens_.clear();
  const int64_t half = config_.qk_rope_head_dim / 2;
  cos_.clear();
  sin_.clear();
  for (const SequenceChunk& c : chunks) {
    if (!c.tokens.empty()) b.max_blocks = std::max(b.max_blocks, c.table->num_blocks());
  }
  b.cu_seqlens_q.push_back(0);
  for (const SequenceChunk& c : chunks) {
    const int64_t m = static_cast<int64_t>(c.tokens.size());
    if (m == 0) continue;
    const std::vector<int32_t>& ids = c.table->block_ids();
    b.block_table.insert(b.block_table.end(), ids.begin(), ids.end());
    b.block_table.resize((b.batch + 1) * b.max_blocks, 0);
    b.seq_lens.push_back(static_cast<int32_t>(c.start_pos + m));
    b.q_pos0.push_back(static_cast<int32_t>(c.start_pos));
    b.cu_seqlens_q.push_back(b.cu_seqlens_q.back() + static_cast<int32_t>(m));
    ++b.batch;
    const int64_t bs = c.table->block_size();
    for (int64_t i = 0; i < m; ++i) {
      const int64_t pos = c.start_pos + i;
      b.slots.push_back(int64_t{ids[pos / bs]} * bs + pos % bs);
      cos_.resize(cos_.size() + half);
      sin_.resize(sin_.size() + half);
      rope_.Angles(pos, cos_.data() + cos_.size() - half, sin_.data() + sin_.size() - half);
    }
    step_tokens_.insert(step_tokens_.end(), c.tokens.begin(), c.tokens.end());
    b.decompress.push_back(Decompress(c) ? 1 : 0);
  }
  b.num_tokens = static_cast<int64_t>(step_tokens_.size());
  // Empty when no chunk attends decompressed: the backends' usual absorbed path.
  if (std::none_of(b.decompress.begin(), b.decompress.end(), [](uint8_t d) { return d != 0; })) {
    b.decompress.clear();
  }
  // V3.2: up to index_topk visible keys every row attends to all of them, so no layer
  // selects. Decided once per step (every layer sees the same lengths); a recorded region
  // is keyed by it.
  sparse_step_ = config_.has_indexer() && b.num_tokens > 0 &&
                 *std::max_element(b.seq_lens.begin(), b.seq_lens.end()) > config_.index_topk;
}

bool DeepseekModel::Decompress(const SequenceChunk& chunk) const {
  if (config_.has_indexer() || !backend_->SupportsDecompressedAttention()) return false;
  switch (attention_path_) {
    case AttentionPath::kAbsorbed:
      return false;
    case AttentionPath::kDecompressed:
      return true;
    case AttentionPath::kAuto:
      break;
  }
  return PreferDecompressed(config_, static_cast<int64_t>(chunk.tokens.size()), chunk.start_pos);
}

absl::Status DeepseekModel::ProbeAttention(int layer, std::span<const SequenceChunk> chunks) {
  const int heads = config_.num_attention_heads;
  const Tensor q_abs =
      backend_->Activation(kQAbs, step_.num_tokens, int64_t{heads} * config_.latent_dim());
  int64_t row = 0, seq = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SequenceChunk& ch = chunks[i];
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    if (m == 0) continue;
    row += m;
    ++seq;
    if (!ch.probe_attention) continue;
    MLA_ASSIGN_OR_RETURN(
        AttentionSharpness sharpness,
        backend_->ProbeAttention(layer, seq - 1, ch.start_pos + m, q_abs.Rows(row - 1, 1), heads,
                                 softmax_scale_, {"attn_probe", layer}));
    probes_.push_back({i, sharpness});
    if (layer == 0) ++probed_rows_;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> DeepseekModel::Indexer(int l) {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const Layer& w = layers_[l];
  const int64_t n = step_.num_tokens, heads = c.index_n_heads, dim = c.index_head_dim;
  const int64_t rope = c.qk_rope_head_dim;
  const Tensor xn = be.Activation(kXn, n, c.hidden_size), qa = be.Activation(kQa, n, c.q_lora_rank);
  const Tensor cos = be.Activation(kCos, n, rope / 2), sin = be.Activation(kSin, n, rope / 2);
  // Key: LayerNorm(wk · x), its first qk_rope_head_dim values rotated half-split.
  const Tensor k = be.Activation(kIdxK, n, dim);
  be.Gemm(xn, w.idx_wk, k, {"idx_k", l});
  be.LayerNorm(k, w.idx_k_norm, w.idx_k_norm_bias, kIndexerNormEps, k, {"idx_k_norm", l});
  be.RopeHalves(cos, sin, k.Cols(0, rope), 1, dim, {"idx_rope_k", l});
  be.WriteIndexKeys(l, k, {"idx_cache_write", l});
  if (!sparse_step_) return false;
  // Queries from the low-rank query residual, per-head weights from x.
  const Tensor q = be.Activation(kIdxQ, n, heads * dim), wts = be.Activation(kIdxW, n, heads);
  be.Gemm(qa, w.idx_wq_b, q, {"idx_q", l});
  be.RopeHalves(cos, sin, q.Cols(0, rope), static_cast<int>(heads), dim, {"idx_rope_q", l});
  be.Gemm(xn, w.idx_weights, wts, {"idx_weights", l});
  Tensor selected = be.Activation(kIdxSel, n, c.index_topk);
  selected.dtype = DType::kI32;  // Same 4-byte slots, holding positions.
  be.IndexerTopK(l, static_cast<int>(heads), static_cast<float>(1.0 / std::sqrt(double(dim))),
                 static_cast<float>(1.0 / std::sqrt(double(heads))), q, wts, selected,
                 {"idx_topk", l});
  return true;
}

absl::Status DeepseekModel::RecordIndexerRecall(int l, std::span<const SequenceChunk> chunks,
                                                bool sparse) {
  const int64_t topk = config_.index_topk;
  int64_t row = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SequenceChunk& ch = chunks[i];
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    row += m;
    if (m == 0 || ch.watch_end <= ch.watch_begin) continue;
    const int64_t visible = ch.start_pos + m;
    const int64_t lo = std::max<int64_t>(ch.watch_begin, 0);
    const int64_t hi = std::min(ch.watch_end, visible);
    ChunkIndexerRecall r{i, l, 0, std::max<int64_t>(hi - lo, 0)};
    if (!sparse || visible <= topk) {
      r.selected = r.watched;  // Dense: every visible position is attended.
    } else {
      Tensor sel = backend_->Activation(kIdxSel, step_.num_tokens, topk);
      selection_row_.resize(static_cast<size_t>(topk));
      backend_->Download(sel.Rows(row - 1, 1), selection_row_, {"idx_recall", l});
      MLA_RETURN_IF_ERROR(backend_->TakeError());
      for (const float f : selection_row_) {
        int32_t pos;
        std::memcpy(&pos, &f, sizeof(pos));  // The slots hold int32 positions.
        if (pos >= lo && pos < hi) ++r.selected;
      }
    }
    recall_.push_back(r);
  }
  return absl::OkStatus();
}

absl::Status DeepseekModel::AbsorbedAttention(int l, bool sparse, const Tensor& q, Tensor attn,
                                              std::span<const SequenceChunk> chunks) {
  Backend& be = *backend_;
  const Layer& w = layers_[l];
  const int heads = config_.num_attention_heads;
  const int64_t n = q.rows, nope = config_.qk_nope_head_dim, rope = config_.qk_rope_head_dim;
  const int64_t lat = config_.kv_lora_rank, vdim = config_.v_head_dim;
  const int64_t qk = nope + rope, width = lat + rope;
  // Absorb W_UK into the query: q_abs[t, h] = [q_nope·W_UK[h] | q_pe].
  const Tensor q_abs = be.Activation(kQAbs, n, heads * width);
  for (int h = 0; h < heads; ++h) {
    be.Gemm(q.Cols(h * qk, nope), w.w_uk_t[h], q_abs.Cols(h * width, lat), {"attn_absorb", l});
    be.Copy(q.Cols(h * qk + nope, rope), q_abs.Cols(h * width + lat, rope), {"attn_absorb", l});
  }
  const Tensor o_lat = be.Activation(kOLat, n, heads * lat);
  const Tensor lse = be.Activation(kLse, n, heads);
  if (sparse) {
    Tensor selected = be.Activation(kIdxSel, n, config_.index_topk);
    selected.dtype = DType::kI32;
    be.SparseMlaAttention(l, heads, softmax_scale_, q_abs, selected, o_lat, lse,
                          {"attn_sparse_mla", l});
  } else {
    be.MlaAttention(l, heads, softmax_scale_, q_abs, o_lat, lse, {"attn_mla", l});
  }
  MLA_RETURN_IF_ERROR(be.TakeError());
  MLA_RETURN_IF_ERROR(ProbeAttention(l, chunks));
  // Decompress through W_UV per head (a row slice of kv_b_proj), then o_proj.
  for (int h = 0; h < heads; ++h) {
    be.Gemm(o_lat.Cols(h * lat, lat), w.kv_b.Rows(h * (nope + vdim) + nope, vdim),
            attn.Cols(h * vdim, vdim), {"attn_uv", l});
  }
  return absl::OkStatus();
}

absl::Status DeepseekModel::Attention(int l, std::span<const SequenceChunk> chunks) {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const Layer& w = layers_[l];
  const int64_t n = step_.num_tokens;
  const int heads = c.num_attention_heads;
  const int64_t nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, lat = c.kv_lora_rank;
  const int64_t vdim = c.v_head_dim, qk = nope + rope, width = lat + rope, half = rope / 2;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const Tensor xn = be.Activation(kXn, n, c.hidden_size);
  const Tensor q = be.Activation(kQ, n, heads * qk);
  const Tensor ckv = be.Activation(kCkv, n, width);
  const Tensor cos = be.Activation(kCos, n, half), sin = be.Activation(kSin, n, half);
  // Queries: [T, H, nope + rope].
  if (c.q_lora_rank > 0) {
    const Tensor qa = be.Activation(kQa, n, c.q_lora_rank);
    be.Gemm(xn, w.q_a, qa, {"attn_q_a", l});
    be.RmsNorm(qa, w.q_a_norm, eps, qa, {"attn_q_a_norm", l});
    be.Gemm(qa, w.q_b, q, {"attn_q_b", l});
  } else {
    be.Gemm(xn, w.q_proj, q, {"attn_q", l});
  }
  // Latent and RoPE key: normalize c, rotate k_pe and q_pe, then cache both.
  be.Gemm(xn, w.kv_a, ckv, {"attn_kv_a", l});
  const Tensor latent = ckv.Cols(0, lat), k_pe = ckv.Cols(lat, rope);
  be.RmsNorm(latent, w.kv_a_norm, eps, latent, {"attn_kv_a_norm", l});
  be.Rope(cos, sin, k_pe, 1, width, {"attn_rope_k", l});
  be.Rope(cos, sin, q.Cols(nope, rope), heads, qk, {"attn_rope_q", l});
  be.WriteCache(l, latent, k_pe, {"attn_cache_write", l});
  bool sparse = false;
  if (c.has_indexer()) {
    MLA_ASSIGN_OR_RETURN(sparse, Indexer(l));
    MLA_RETURN_IF_ERROR(RecordIndexerRecall(l, chunks, sparse));
  }
  // Absorbed attention for the chunks that take it, and for the probes (they read q_abs).
  const std::vector<uint8_t>& decompress = step_.decompress;
  const bool any_decompressed = !decompress.empty();
  const bool any_absorbed =
      !any_decompressed ||
      std::any_of(decompress.begin(), decompress.end(), [](uint8_t d) { return d == 0; }) ||
      std::any_of(chunks.begin(), chunks.end(),
                  [](const SequenceChunk& ch) { return ch.probe_attention; });
  const Tensor attn = be.Activation(kAttn, n, heads * vdim);
  if (any_absorbed) MLA_RETURN_IF_ERROR(AbsorbedAttention(l, sparse, q, attn, chunks));
  // The decompressed chunks' rows: written over whatever the absorbed path left there.
  if (any_decompressed) {
    be.DecompressedAttention(l, heads, softmax_scale_, q, w.kv_b, attn, {"attn_decompressed", l});
    MLA_RETURN_IF_ERROR(be.TakeError());
  }
  be.Gemm(attn, w.o_proj, be.Activation(kTmp, n, c.hidden_size), {"attn_o", l});
  return absl::OkStatus();
}

void DeepseekModel::Mlp(const ExpertTensors& w, const Tensor& x, Tensor out, int layer,
                        bool shared) {
  Backend& be = *backend_;
  const MlpNames& names = shared ? kSharedNames : kDenseNames;
  const int64_t n = x.rows, inter = w.gate.rows;
  const Tensor gate = be.Activation(kGate, n, inter), up = be.Activation(kUp, n, inter);
  const Tensor act = be.Activation(kAct, n, inter);
  be.Gemm(x, w.gate, gate, {names.gate, layer});
  be.Gemm(x, w.up, up, {names.up, layer});
  be.SiluMul(gate, up, act, {names.silu, layer});
  be.Gemm(act, w.down, out, {names.down, layer});
}

void DeepseekModel::Moe(int l, const Tensor& x, Tensor out) {
  Backend& be = *backend_;
  const Layer& w = layers_[l];
  const Tensor router = be.Activation(kRouter, x.rows, config_.n_routed_experts);
  be.Gemm(x, w.router, router, {"ffn_router", l});
  if (!w.shared.gate.empty()) {
    Mlp(w.shared, x, out, l, /*shared=*/true);
  } else {
    be.Fill(out, 0.0f, {"ffn_zero", l});
  }
  be.MoeExperts(moe_policy_, router, w.router_bias, w.experts, x, out, {"moe_experts", l});
}

absl::StatusOr<ForwardOutput> DeepseekModel::Forward(std::span<const SequenceChunk> chunks) {
  MLA_RETURN_IF_ERROR(CheckChunks(chunks));
  probes_.clear();
  recall_.clear();
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  BuildStep(chunks);
  const int64_t n = step_.num_tokens;
  ForwardOutput out;
  if (n == 0) return out;
  MLA_RETURN_IF_ERROR(be.TakeError());  // Nothing left over from an earlier failed step.
  const int64_t hidden = c.hidden_size, half = c.qk_rope_head_dim / 2;
  const float eps = static_cast<float>(c.rms_norm_eps);
  be.BeginStep(step_);
  const Tensor h = be.Activation(kH, n, hidden), xn = be.Activation(kXn, n, hidden);
  const Tensor tmp = be.Activation(kTmp, n, hidden);
  // The step's inputs in device buffers; the region below reads them (and updates h).
  auto inputs = [&] {
    be.Upload(cos_, be.Activation(kCos, n, half), {"rope_angles"});
    be.Upload(sin_, be.Activation(kSin, n, half), {"rope_angles"});
    be.Embed(embed_, step_tokens_, h, {"embed"});
  };
  inputs();
  // Final norm and lm_head only for the rows whose logits are wanted.
  int64_t rows = 0;
  for (const SequenceChunk& ch : chunks) {
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    rows += m == 0 ? 0 : (ch.all_logits ? m : 1);
  }
  const Tensor selected = be.Activation(kSelected, rows, hidden);
  const Tensor normed = be.Activation(kNormed, rows, hidden);
  out.rows = rows;
  out.hidden = selected;
  out.logits = be.Activation(kLogits, rows, c.vocab_size);
  // Everything from here reads only device state set above: the region a backend may
  // record and replay (Backend::BeginGraphRegion).
  auto region = [&]() -> absl::Status {
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      const Layer& w = layers_[l];
      be.RmsNorm(h, w.input_norm, eps, xn, {"attn_norm", l});
      MLA_RETURN_IF_ERROR(Attention(l, chunks));
      be.Add(tmp, h, {"attn_residual", l});
      be.RmsNorm(h, w.post_norm, eps, xn, {"ffn_norm", l});
      if (w.is_moe) {
        Moe(l, xn, tmp);
      } else {
        Mlp(w.mlp, xn, tmp, l, /*shared=*/false);
      }
      be.Add(tmp, h, {"ffn_residual", l});
      MLA_RETURN_IF_ERROR(be.TakeError());
    }
    int64_t row = 0, dst = 0;
    for (const SequenceChunk& ch : chunks) {
      const int64_t m = static_cast<int64_t>(ch.tokens.size());
      if (m == 0) continue;
      const int64_t count = ch.all_logits ? m : 1;
      be.Copy(h.Rows(row + m - count, count), selected.Rows(dst, count), {"output_rows"});
      dst += count;
      row += m;
    }
    be.RmsNorm(selected, norm_, eps, normed, {"output_norm"});
    be.Gemm(normed, lm_head_, out.logits, {"lm_head"});
    return be.TakeError();
  };
  switch (Replayable(chunks) ? be.BeginGraphRegion(sparse_step_ ? 1 : 0) : GraphRegion::kEager) {
    case GraphRegion::kReplayed:
      break;
    case GraphRegion::kCapturing: {
      absl::Status status = region();
      if (be.EndGraphRegion(status.ok())) {
        // Nothing was recorded, or part of the region ran eagerly over h: from the inputs.
        inputs();
        status = region();
      }
      MLA_RETURN_IF_ERROR(status);
      break;
    }
    case GraphRegion::kEager:
      MLA_RETURN_IF_ERROR(region());
      break;
  }
  MLA_RETURN_IF_ERROR(be.TakeError());
  return out;
}

bool DeepseekModel::Replayable(std::span<const SequenceChunk> chunks) const {
  // Telemetry reads results back mid-region, and decompressed chunks are prefill: eager.
  // V3.2's host decision (dense or sparse) is the region's variant.
  if (!step_.decompress.empty()) return false;
  return std::all_of(chunks.begin(), chunks.end(), [](const SequenceChunk& ch) {
    return ch.tokens.size() <= 1 && !ch.probe_attention && ch.watch_end <= ch.watch_begin;
  });
}

absl::StatusOr<std::vector<float>> DeepseekModel::ForwardToHost(
    std::span<const SequenceChunk> chunks) {
  MLA_ASSIGN_OR_RETURN(ForwardOutput out, Forward(chunks));
  std::vector<float> logits(static_cast<size_t>(out.rows * config_.vocab_size));
  if (out.rows == 0) return logits;
  backend_->Download(out.logits, logits, {"logits_download"});
  MLA_RETURN_IF_ERROR(backend_->TakeError());
  return logits;
}

}  // namespace mla
