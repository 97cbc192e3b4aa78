#include "engine/model/deepseek_model.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/common/status_macros.h"
#include "engine/model/layer_ops.h"
#include "engine/model/mla_attention_step.h"

namespace mla {

// Activation buffers of one Forward call, sized for its T tokens.
struct DeepseekModel::Workspace {
  int64_t tokens = 0;
  std::vector<int64_t> positions;  // [T]
  std::vector<float> cos, sin;     // [T, rope/2]
  std::vector<float> h, xn, tmp;   // [T, hidden]
  std::vector<float> q, qa;        // [T, H*(nope+rope)], [T, q_lora]
  std::vector<float> ckv;          // [T, L+R]
  std::vector<float> q_abs;        // [T, H, L+R]
  std::vector<float> o_lat;        // [T, H, L]
  std::vector<float> attn;         // [T, H*v]
  std::vector<float> gate, up, act, expert_in, expert_out;
  std::vector<float> router;       // [T, n_routed_experts]
  std::vector<float> lse;          // [T, H]
  AttentionBatch batch;            // Block tables and positions, shared by all layers.

  // Bytes the buffers hold now (capacity, not size: what the process really keeps).
  size_t Bytes() const {
    size_t floats = 0;
    for (const std::vector<float>* v :
         {&cos, &sin, &h, &xn, &tmp, &q, &qa, &ckv, &q_abs, &o_lat, &attn, &gate, &up, &act,
          &expert_in, &expert_out, &router, &lse}) {
      floats += v->capacity();
    }
    return floats * sizeof(float) + positions.capacity() * sizeof(int64_t) +
           (batch.block_table.capacity() + batch.seq_lens.capacity() +
            batch.q_pos0.capacity() + batch.cu_seqlens_q.capacity()) *
               sizeof(int32_t);
  }
};

DeepseekModel::~DeepseekModel() = default;

absl::StatusOr<std::unique_ptr<DeepseekModel>> DeepseekModel::Load(const std::string& model_dir,
                                                                   cpu::ThreadPool* pool) {
  MLA_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  MLA_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(model_dir, config));
  return std::make_unique<DeepseekModel>(std::move(config), std::move(weights), pool);
}

DeepseekModel::DeepseekModel(ModelConfig config, ModelWeights weights, cpu::ThreadPool* pool)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      pool_(pool),
      rope_(config_),
      softmax_scale_(static_cast<float>(SoftmaxScale(config_))),
      workspace_(std::make_unique<Workspace>()) {
  const int heads = config_.num_attention_heads, nope = config_.qk_nope_head_dim;
  const int lat = config_.kv_lora_rank, head_rows = nope + config_.v_head_dim;
  w_uk_t_.resize(config_.num_hidden_layers);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const Matrix& kv_b = weights_.layers[l].attn.kv_b_proj;
    for (int h = 0; h < heads; ++h) {
      Matrix t = Matrix::Allocate(lat, nope, kv_b.dtype);
      const size_t elem = DTypeSize(kv_b.dtype);
      const std::byte* src = kv_b.data.data();
      for (int i = 0; i < nope; ++i) {
        const int64_t row = static_cast<int64_t>(h) * head_rows + i;
        for (int c = 0; c < lat; ++c) {
          std::memcpy(t.data.data() + (static_cast<size_t>(c) * nope + i) * elem,
                      src + (static_cast<size_t>(row) * lat + c) * elem, elem);
        }
      }
      w_uk_t_[l].push_back(std::move(t));
    }
  }
}

absl::Status DeepseekModel::CheckChunks(std::span<const SequenceChunk> chunks,
                                        const LatentCache& cache) const {
  const CacheLayout& layout = cache.layout();
  if (layout.latent_dim() != config_.kv_lora_rank || layout.rope_dim() != config_.qk_rope_head_dim ||
      layout.num_layers() != config_.num_hidden_layers) {
    return absl::InvalidArgumentError("the KV cache layout does not match the model");
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SequenceChunk& c = chunks[i];
    if (c.tokens.empty()) continue;
    if (c.table == nullptr || c.start_pos < 0 ||
        c.table->capacity() < c.start_pos + static_cast<int64_t>(c.tokens.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, ": block table has no room for positions ", c.start_pos,
                       "..", c.start_pos + static_cast<int64_t>(c.tokens.size()) - 1));
    }
    for (int32_t t : c.tokens) {
      if (t < 0 || t >= config_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunk ", i, ": token id ", t, " is outside the vocabulary [0, ",
                         config_.vocab_size, ")"));
      }
    }
  }
  return absl::OkStatus();
}

void DeepseekModel::Embed(std::span<const SequenceChunk> chunks, float* h) const {
  const int hidden = config_.hidden_size;
  int64_t row = 0;
  for (const SequenceChunk& c : chunks) {
    for (int32_t t : c.tokens) {
      const MatrixView e = weights_.embed_tokens.RowsView(t, t + 1);
      float* out = h + row * hidden;
      if (e.dtype == DType::kBF16) {
        const bf16_t* src = static_cast<const bf16_t*>(e.data);
        for (int i = 0; i < hidden; ++i) out[i] = Bf16ToFloat(src[i]);
      } else {
        std::memcpy(out, e.data, sizeof(float) * hidden);
      }
      ++row;
    }
  }
}

void DeepseekModel::Mlp(const MlpWeights& w, const float* x, int64_t n, float* out,
                        Workspace& ws) {
  const int64_t inter = w.gate.rows;
  ws.gate.resize(n * inter);
  ws.up.resize(n * inter);
  ws.act.resize(n * inter);
  const int64_t hidden = config_.hidden_size;
  cpu::Gemm(x, hidden, n, w.gate.View(), ws.gate.data(), inter, pool_);
  cpu::Gemm(x, hidden, n, w.up.View(), ws.up.data(), inter, pool_);
  SiluMul(ws.gate.data(), ws.up.data(), n, inter, inter, ws.act.data());
  cpu::Gemm(ws.act.data(), inter, n, w.down.View(), out, hidden, pool_);
}

void DeepseekModel::Moe(const MoeWeights& w, const float* x, int64_t n, float* out,
                        Workspace& ws) {
  const int64_t hidden = config_.hidden_size;
  const int experts = config_.n_routed_experts;
  ws.router.resize(n * experts);
  cpu::Gemm(x, hidden, n, w.gate.View(), ws.router.data(), experts, pool_);
  // Group the tokens by expert so that each expert's weights are read once per step.
  std::vector<std::vector<std::pair<int64_t, float>>> assigned(experts);
  for (int64_t t = 0; t < n; ++t) {
    ExpertChoice choice = RouteToken(ws.router.data() + t * experts, config_, w.score_bias);
    for (size_t k = 0; k < choice.experts.size(); ++k) {
      assigned[choice.experts[k]].push_back({t, choice.weights[k]});
    }
  }
  if (!w.shared.gate.empty()) {
    Mlp(w.shared, x, n, out, ws);
  } else {
    std::fill(out, out + n * hidden, 0.0f);
  }
  for (int e = 0; e < experts; ++e) {
    const auto& rows = assigned[e];
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    ws.expert_in.resize(m * hidden);
    ws.expert_out.resize(m * hidden);
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(ws.expert_in.data() + i * hidden, x + rows[i].first * hidden,
                  sizeof(float) * hidden);
    }
    Mlp(w.experts[e], ws.expert_in.data(), m, ws.expert_out.data(), ws);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out + rows[i].first * hidden;
      const float* src = ws.expert_out.data() + i * hidden;
      const float weight = rows[i].second;
      for (int64_t j = 0; j < hidden; ++j) dst[j] += weight * src[j];
    }
  }
}

absl::Status DeepseekModel::ProbeAttention(int layer, std::span<const SequenceChunk> chunks,
                                           const LatentCache& cache, const Workspace& ws) {
  const int heads = config_.num_attention_heads;
  const int64_t abs_stride = static_cast<int64_t>(heads) * config_.latent_dim();
  int64_t row = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SequenceChunk& ch = chunks[i];
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    row += m;
    if (m == 0 || !ch.probe_attention) continue;
    MLA_ASSIGN_OR_RETURN(
        AttentionSharpness sharpness,
        ProbeAttentionRow(cache, layer, *ch.table, ch.start_pos + m,
                          ws.q_abs.data() + (row - 1) * abs_stride, heads, softmax_scale_));
    probes_.push_back({i, sharpness});
    if (layer == 0) ++probed_rows_;
  }
  return absl::OkStatus();
}

absl::Status DeepseekModel::Attention(int layer, std::span<const SequenceChunk> chunks,
                                      LatentCache& cache, Workspace& ws) {
  const ModelConfig& c = config_;
  const AttentionWeights& w = weights_.layers[layer].attn;
  const int64_t n = ws.tokens, hidden = c.hidden_size;
  const int heads = c.num_attention_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim;
  const int lat = c.kv_lora_rank, vdim = c.v_head_dim, qk = nope + rope, half = rope / 2;
  const float eps = static_cast<float>(c.rms_norm_eps);
  // Queries: [T, H, nope + rope].
  if (c.q_lora_rank > 0) {
    ws.qa.resize(n * c.q_lora_rank);
    cpu::Gemm(ws.xn.data(), hidden, n, w.q_a_proj.View(), ws.qa.data(), c.q_lora_rank, pool_);
    RmsNorm(ws.qa.data(), c.q_lora_rank, n, c.q_lora_rank, w.q_a_layernorm.data(), eps,
            ws.qa.data(), c.q_lora_rank);
    cpu::Gemm(ws.qa.data(), c.q_lora_rank, n, w.q_b_proj.View(), ws.q.data(), heads * qk, pool_);
  } else {
    cpu::Gemm(ws.xn.data(), hidden, n, w.q_proj.View(), ws.q.data(), heads * qk, pool_);
  }
  // Latent and RoPE key: normalize c, rotate k_pe and q_pe, then cache both.
  cpu::Gemm(ws.xn.data(), hidden, n, w.kv_a_proj_with_mqa.View(), ws.ckv.data(), lat + rope,
            pool_);
  RmsNorm(ws.ckv.data(), lat + rope, n, lat, w.kv_a_layernorm.data(), eps, ws.ckv.data(),
          lat + rope);
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = ws.cos.data() + t * half;
    const float* sn = ws.sin.data() + t * half;
    rope_.Apply(cs, sn, ws.ckv.data() + t * (lat + rope) + lat, 1, 0);
    rope_.Apply(cs, sn, ws.q.data() + t * heads * qk + nope, heads, qk);
  }
  int64_t row = 0;
  for (const SequenceChunk& ch : chunks) {
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    if (m == 0) continue;
    const float* ckv = ws.ckv.data() + row * (lat + rope);
    MLA_RETURN_IF_ERROR(cache.WriteTokens(layer, *ch.table, ch.start_pos, m, ckv, lat + rope,
                                          ckv + lat, lat + rope));
    row += m;
  }
  // Absorb W_UK into the query: q_abs[t, h] = [q_nope·W_UK[h] | q_pe].
  const int64_t abs_stride = static_cast<int64_t>(heads) * (lat + rope);
  for (int h = 0; h < heads; ++h) {
    cpu::Gemm(ws.q.data() + h * qk, heads * qk, n, w_uk_t_[layer][h].View(),
              ws.q_abs.data() + h * (lat + rope), abs_stride, pool_);
  }
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < heads; ++h) {
      std::memcpy(ws.q_abs.data() + t * abs_stride + h * (lat + rope) + lat,
                  ws.q.data() + (t * heads + h) * qk + nope, sizeof(float) * rope);
    }
  }
  MLA_RETURN_IF_ERROR(RunMlaAttention(ws.batch, cache, layer, heads, softmax_scale_,
                                      ws.q_abs.data(), ws.o_lat.data(), ws.lse, pool_,
                                      &attention_ws_));
  MLA_RETURN_IF_ERROR(ProbeAttention(layer, chunks, cache, ws));
  // Decompress through W_UV per head, then o_proj.
  for (int h = 0; h < heads; ++h) {
    const int64_t first = static_cast<int64_t>(h) * (nope + vdim) + nope;
    cpu::Gemm(ws.o_lat.data() + h * lat, static_cast<int64_t>(heads) * lat, n,
              w.kv_b_proj.RowsView(first, first + vdim), ws.attn.data() + h * vdim,
              static_cast<int64_t>(heads) * vdim, pool_);
  }
  cpu::Gemm(ws.attn.data(), static_cast<int64_t>(heads) * vdim, n, w.o_proj.View(),
            ws.tmp.data(), hidden, pool_);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DeepseekModel::Forward(std::span<const SequenceChunk> chunks,
                                                          LatentCache& cache) {
  MLA_RETURN_IF_ERROR(CheckChunks(chunks, cache));
  probes_.clear();
  const ModelConfig& c = config_;
  // Reused across steps: its buffers keep their pages, so a step does not fault in
  // fresh activations (Forward runs on one thread at a time).
  Workspace& ws = *workspace_;
  ws.positions.clear();
  int64_t n = 0, out_rows = 0;
  for (const SequenceChunk& ch : chunks) {
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    for (int64_t i = 0; i < m; ++i) ws.positions.push_back(ch.start_pos + i);
    n += m;
    out_rows += m == 0 ? 0 : (ch.all_logits ? m : 1);
  }
  if (n == 0) return std::vector<float>();
  ws.tokens = n;
  const int64_t hidden = c.hidden_size, half = c.qk_rope_head_dim / 2;
  const int heads = c.num_attention_heads;
  ws.cos.resize(n * half);
  ws.sin.resize(n * half);
  for (int64_t t = 0; t < n; ++t) {
    rope_.Angles(ws.positions[t], ws.cos.data() + t * half, ws.sin.data() + t * half);
  }
  ws.h.resize(n * hidden);
  ws.xn.resize(n * hidden);
  ws.tmp.resize(n * hidden);
  ws.q.resize(n * heads * c.qk_head_dim());
  ws.ckv.resize(n * c.latent_dim());
  ws.q_abs.resize(n * heads * c.latent_dim());
  ws.o_lat.resize(n * heads * c.kv_lora_rank);
  ws.attn.resize(n * heads * c.v_head_dim);
  std::vector<ChunkRef> refs;
  for (const SequenceChunk& ch : chunks) {
    refs.push_back({ch.start_pos, static_cast<int64_t>(ch.tokens.size()), ch.table});
  }
  ws.batch = MakeAttentionBatch(refs);
  Embed(chunks, ws.h.data());
  const float eps = static_cast<float>(c.rms_norm_eps);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    RmsNorm(ws.h.data(), hidden, n, hidden, lw.input_layernorm.data(), eps, ws.xn.data(), hidden);
    MLA_RETURN_IF_ERROR(Attention(l, chunks, cache, ws));
    for (int64_t i = 0; i < n * hidden; ++i) ws.h[i] += ws.tmp[i];
    RmsNorm(ws.h.data(), hidden, n, hidden, lw.post_attention_layernorm.data(), eps,
            ws.xn.data(), hidden);
    if (lw.is_moe) {
      Moe(lw.moe, ws.xn.data(), n, ws.tmp.data(), ws);
    } else {
      Mlp(lw.mlp, ws.xn.data(), n, ws.tmp.data(), ws);
    }
    for (int64_t i = 0; i < n * hidden; ++i) ws.h[i] += ws.tmp[i];
  }
  // Final norm and lm_head only for the rows whose logits are wanted.
  std::vector<float> selected(out_rows * hidden);
  int64_t row = 0, out = 0;
  for (const SequenceChunk& ch : chunks) {
    const int64_t m = static_cast<int64_t>(ch.tokens.size());
    if (m == 0) continue;
    const int64_t first = ch.all_logits ? row : row + m - 1;
    const int64_t count = ch.all_logits ? m : 1;
    RmsNorm(ws.h.data() + first * hidden, hidden, count, hidden, weights_.norm.data(), eps,
            selected.data() + out * hidden, hidden);
    out += count;
    row += m;
  }
  std::vector<float> logits(out_rows * c.vocab_size);
  cpu::Gemm(selected.data(), hidden, out_rows, weights_.lm_head.View(), logits.data(),
            c.vocab_size, pool_);
  workspace_bytes_.store(static_cast<int64_t>(ws.Bytes() + attention_ws_.bytes()),
                         std::memory_order_relaxed);
  return logits;
}

}  // namespace mla
