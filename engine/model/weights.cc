// Assembles ModelWeights from a checkpoint: names from the Hugging Face DeepSeek layout,
// shapes from the config, dtypes converted to what the kernels read (bf16 or f32).
#include "engine/model/weights.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/bf16.h"
#include "common/status_macros.h"
#include "engine/model/checkpoint.h"

namespace mla {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Shape arithmetic runs in 64 bits: a config built in code (ParseModelConfig bounds every
// field) could still hold values whose int sums or products wrap, which once printed
// shapes like [-2147483633, 128].
int64_t Sum(int a, int b) { return int64_t{a} + int64_t{b}; }

// The widest dimension the loader computes, heads * (a + b), or an error naming it.
absl::StatusOr<int64_t> HeadsTimes(const ModelConfig& c, int64_t per_head,
                                   absl::string_view what) {
  int64_t n;
  if (__builtin_mul_overflow(int64_t{c.num_attention_heads}, per_head, &n) ||
      n > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: ", what, " = ", c.num_attention_heads, " * ", per_head, " is too large"));
  }
  return n;
}

// Runs fn(begin, end) over [0, n) on a few threads; small jobs stay on this thread, where
// starting threads would cost more than the work.
template <typename Fn>
void ParallelRows(int64_t n, int64_t work_per_row, Fn fn) {
  constexpr int64_t kMinWorkPerThread = 1 << 20;
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads =
      std::clamp<int64_t>(n * work_per_row / kMinWorkPerThread, 1, std::min<int64_t>(hw, 8));
  if (threads == 1) return fn(int64_t{0}, n);
  std::vector<std::thread> pool;
  const int64_t chunk = CeilDiv(n, threads);
  for (int64_t begin = 0; begin < n; begin += chunk) {
    pool.emplace_back(fn, begin, std::min(n, begin + chunk));
  }
  for (std::thread& t : pool) t.join();
}

class Loader {
 public:
  Loader(const Checkpoint& ckpt, const ModelConfig& config) : ckpt_(ckpt), config_(config) {}

  bool all_bf16() const { return all_bf16_; }

  // `<prefix>.weight` as a [rows, cols] Matrix.
  absl::StatusOr<Matrix> Linear(const std::string& prefix, int64_t rows, int64_t cols,
                                absl::string_view what);
  // A 1-D float tensor of length n (norm weights, biases).
  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n,
                                            absl::string_view what);
  // An error naming the file and tensor `name`, which the config says should not exist.
  absl::Status Unexpected(const std::string& name, absl::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat(ckpt_.FileOf(name), ": tensor '", name,
                                                   "': ", why, " (config/checkpoint mismatch)"));
  }
  bool Has(const std::string& name) const { return ckpt_.Contains(name); }

 private:
  absl::Status CheckShape(const TensorView& t, std::vector<int64_t> expected,
                          absl::string_view what) const;
  absl::Status DequantizeFp8(const std::string& prefix, const TensorView& w, Matrix* out);

  const Checkpoint& ckpt_;
  const ModelConfig& config_;
  bool all_bf16_ = true;
};

absl::Status TensorError(const TensorView& t, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(*t.file, ": tensor '", t.info->name, "': ", what));
}

absl::Status Loader::CheckShape(const TensorView& t, std::vector<int64_t> expected,
                                absl::string_view what) const {
  if (t.shape() == expected) return absl::OkStatus();
  return TensorError(
      t, absl::StrCat("shape ", t.info->ShapeString(), " does not match the config: expected [",
                      absl::StrJoin(expected, ", "), "] = ", what));
}

absl::StatusOr<Matrix> Loader::Linear(const std::string& prefix, int64_t rows, int64_t cols,
                                      absl::string_view what) {
  MLA_ASSIGN_OR_RETURN(const TensorView t, ckpt_.Tensor(prefix + ".weight"));
  MLA_RETURN_IF_ERROR(CheckShape(t, {rows, cols}, what));
  const size_t count = static_cast<size_t>(rows * cols);
  Matrix m;
  switch (t.dtype()) {
    case DType::kBF16:
      m = Matrix::Allocate(rows, cols, DType::kBF16);
      std::memcpy(m.data.data(), t.data, t.info->nbytes);
      break;
    case DType::kF32:
      m = Matrix::Allocate(rows, cols, DType::kF32);
      std::memcpy(m.data.data(), t.data, t.info->nbytes);
      break;
    case DType::kF16:
      m = Matrix::Allocate(rows, cols, DType::kF32);
      ConvertToFloat(DType::kF16, t.data, count, m.f32());
      break;
    case DType::kF8E4M3:
      m = Matrix::Allocate(rows, cols, DType::kBF16);
      MLA_RETURN_IF_ERROR(DequantizeFp8(prefix, t, &m));
      break;
    default:
      return TensorError(t, absl::StrCat("dtype ", t.info->dtype_name,
                                         " cannot hold a linear weight (BF16, F16, F32, F8_E4M3)"));
  }
  if (m.dtype != DType::kBF16) all_bf16_ = false;
  ckpt_.ReleasePages(t);
  return m;
}

// W[i, j] = fp8[i, j] * scale_inv[i / block_rows, j / block_cols], rounded to bf16.
absl::Status Loader::DequantizeFp8(const std::string& prefix, const TensorView& w, Matrix* out) {
  const std::string scale_name = prefix + ".weight_scale_inv";
  if (!ckpt_.Contains(scale_name)) {
    return absl::NotFoundError(absl::StrCat(*w.file, ": tensor '", w.info->name,
                                            "' is F8_E4M3 but its scale tensor '", scale_name,
                                            "' is missing"));
  }
  MLA_ASSIGN_OR_RETURN(const TensorView s, ckpt_.Tensor(scale_name));
  const int64_t rows = out->rows, cols = out->cols;
  const int64_t br = config_.fp8_block_rows, bc = config_.fp8_block_cols;
  const int64_t srows = CeilDiv(rows, br), scols = CeilDiv(cols, bc);
  MLA_RETURN_IF_ERROR(CheckShape(
      s, {srows, scols}, absl::StrCat("[ceil(", rows, "/", br, "), ceil(", cols, "/", bc, ")]")));
  std::vector<float> scale(static_cast<size_t>(srows * scols));
  if (s.dtype() == DType::kF8E4M3 ||
      !ConvertToFloat(s.dtype(), s.data, scale.size(), scale.data())) {
    return TensorError(
        s, absl::StrCat("scale dtype ", s.info->dtype_name, " is not one of F32, BF16, F16"));
  }
  std::array<float, 256> lut;
  for (int v = 0; v < 256; ++v) lut[v] = Fp8E4M3ToFloat(static_cast<uint8_t>(v));
  const auto* src = reinterpret_cast<const uint8_t*>(w.data);
  bf16_t* dst = out->bf16();
  ParallelRows(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const float* srow = scale.data() + (i / br) * scols;
      for (int64_t j = 0; j < cols; ++j) {
        dst[i * cols + j] = FloatToBf16(lut[src[i * cols + j]] * srow[j / bc]);
      }
    }
  });
  ckpt_.ReleasePages(s);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Loader::Vector(const std::string& name, int64_t n,
                                                  absl::string_view what) {
  MLA_ASSIGN_OR_RETURN(const TensorView t, ckpt_.Tensor(name));
  MLA_RETURN_IF_ERROR(CheckShape(t, {n}, what));
  std::vector<float> v(static_cast<size_t>(n));
  if (t.dtype() == DType::kF8E4M3 || !ConvertToFloat(t.dtype(), t.data, v.size(), v.data())) {
    return TensorError(t, absl::StrCat("dtype ", t.info->dtype_name,
                                       " cannot hold a norm or bias (BF16, F16, F32)"));
  }
  return v;
}

absl::Status LoadMlp(Loader& l, const std::string& prefix, int64_t hidden, int64_t inter,
                     absl::string_view inter_name, MlpWeights* mlp) {
  const std::string in = absl::StrCat("[", inter_name, ", hidden_size]");
  const std::string out = absl::StrCat("[hidden_size, ", inter_name, "]");
  MLA_ASSIGN_OR_RETURN(mlp->gate, l.Linear(prefix + "gate_proj", inter, hidden, in));
  MLA_ASSIGN_OR_RETURN(mlp->up, l.Linear(prefix + "up_proj", inter, hidden, in));
  MLA_ASSIGN_OR_RETURN(mlp->down, l.Linear(prefix + "down_proj", hidden, inter, out));
  return absl::OkStatus();
}

absl::Status LoadIndexer(Loader& l, const ModelConfig& c, const std::string& p, IndexerWeights* w) {
  if (!c.has_indexer()) {
    if (l.Has(p + "wk.weight")) {
      return l.Unexpected(p + "wk.weight", "config has no index_n_heads (not DeepSeek-V3.2)");
    }
    return absl::OkStatus();
  }
  const int64_t heads = c.index_n_heads, dim = c.index_head_dim;
  MLA_ASSIGN_OR_RETURN(w->wq_b, l.Linear(p + "wq_b", heads * dim, c.q_lora_rank,
                                         "[index_n_heads*index_head_dim, q_lora_rank]"));
  MLA_ASSIGN_OR_RETURN(w->wk,
                       l.Linear(p + "wk", dim, c.hidden_size, "[index_head_dim, hidden_size]"));
  MLA_ASSIGN_OR_RETURN(w->k_norm, l.Vector(p + "k_norm.weight", dim, "[index_head_dim]"));
  MLA_ASSIGN_OR_RETURN(w->k_norm_bias, l.Vector(p + "k_norm.bias", dim, "[index_head_dim]"));
  MLA_ASSIGN_OR_RETURN(w->weights_proj, l.Linear(p + "weights_proj", heads, c.hidden_size,
                                                 "[index_n_heads, hidden_size]"));
  return absl::OkStatus();
}

absl::Status LoadAttention(Loader& l, const ModelConfig& c, const std::string& p,
                           AttentionWeights* a) {
  const int64_t hidden = c.hidden_size;
  MLA_ASSIGN_OR_RETURN(const int64_t q_out,
                       HeadsTimes(c, Sum(c.qk_nope_head_dim, c.qk_rope_head_dim),
                                  "heads*(qk_nope+qk_rope)"));
  MLA_ASSIGN_OR_RETURN(const int64_t kv_b_rows,
                       HeadsTimes(c, Sum(c.qk_nope_head_dim, c.v_head_dim),
                                  "heads*(qk_nope+v_head_dim)"));
  MLA_ASSIGN_OR_RETURN(const int64_t o_cols, HeadsTimes(c, c.v_head_dim, "heads*v_head_dim"));
  if (c.q_lora_rank > 0) {
    if (l.Has(p + "q_proj.weight")) {
      return l.Unexpected(p + "q_proj.weight",
                          "config sets q_lora_rank, so q_a_proj/q_b_proj "
                          "are expected instead");
    }
    MLA_ASSIGN_OR_RETURN(
        a->q_a_proj, l.Linear(p + "q_a_proj", c.q_lora_rank, hidden, "[q_lora_rank, hidden_size]"));
    MLA_ASSIGN_OR_RETURN(a->q_a_layernorm,
                         l.Vector(p + "q_a_layernorm.weight", c.q_lora_rank, "[q_lora_rank]"));
    MLA_ASSIGN_OR_RETURN(a->q_b_proj, l.Linear(p + "q_b_proj", q_out, c.q_lora_rank,
                                               "[heads*(qk_nope+qk_rope), q_lora_rank]"));
  } else {
    if (l.Has(p + "q_a_proj.weight")) {
      return l.Unexpected(p + "q_a_proj.weight", "config has q_lora_rank null (plain q_proj)");
    }
    MLA_ASSIGN_OR_RETURN(
        a->q_proj, l.Linear(p + "q_proj", q_out, hidden, "[heads*(qk_nope+qk_rope), hidden_size]"));
  }
  MLA_ASSIGN_OR_RETURN(a->kv_a_proj_with_mqa,
                       l.Linear(p + "kv_a_proj_with_mqa", Sum(c.kv_lora_rank, c.qk_rope_head_dim),
                                hidden,
                                "[kv_lora_rank+qk_rope, hidden_size]"));
  MLA_ASSIGN_OR_RETURN(a->kv_a_layernorm,
                       l.Vector(p + "kv_a_layernorm.weight", c.kv_lora_rank, "[kv_lora_rank]"));
  MLA_ASSIGN_OR_RETURN(a->kv_b_proj,
                       l.Linear(p + "kv_b_proj", kv_b_rows, c.kv_lora_rank,
                                "[heads*(qk_nope+v_head_dim), kv_lora_rank]"));
  MLA_ASSIGN_OR_RETURN(a->o_proj,
                       l.Linear(p + "o_proj", hidden, o_cols, "[hidden_size, heads*v_head_dim]"));
  return LoadIndexer(l, c, p + "indexer.", &a->indexer);
}

absl::Status LoadMoe(Loader& l, const ModelConfig& c, const std::string& p, MoeWeights* moe) {
  if (l.Has(p + "gate_proj.weight")) {
    return l.Unexpected(p + "gate_proj.weight", "config makes this layer MoE, not dense");
  }
  const int64_t experts = c.n_routed_experts, hidden = c.hidden_size;
  MLA_ASSIGN_OR_RETURN(moe->gate,
                       l.Linear(p + "gate", experts, hidden, "[n_routed_experts, hidden_size]"));
  const std::string bias = p + "gate.e_score_correction_bias";
  if (c.topk_method == TopkMethod::kNoauxTc) {
    MLA_ASSIGN_OR_RETURN(moe->score_bias, l.Vector(bias, experts, "[n_routed_experts]"));
  } else if (l.Has(bias)) {
    return l.Unexpected(bias, "config topk_method is not noaux_tc, which would ignore it");
  }
  moe->experts.resize(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) {
    MLA_RETURN_IF_ERROR(LoadMlp(l, absl::StrCat(p, "experts.", e, "."), hidden,
                                c.moe_intermediate_size, "moe_intermediate_size",
                                &moe->experts[e]));
  }
  const std::string shared = p + "shared_experts.";
  if (c.n_shared_experts > 0) {
    return LoadMlp(l, shared, hidden,
                   static_cast<int64_t>(c.n_shared_experts) * c.moe_intermediate_size,
                   "n_shared_experts*moe_intermediate_size", &moe->shared);
  }
  if (l.Has(shared + "gate_proj.weight")) {
    return l.Unexpected(shared + "gate_proj.weight", "config has n_shared_experts 0");
  }
  return absl::OkStatus();
}

absl::Status LoadLayer(Loader& l, const ModelConfig& c, int i, LayerWeights* layer) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  MLA_ASSIGN_OR_RETURN(layer->input_layernorm,
                       l.Vector(p + "input_layernorm.weight", c.hidden_size, "[hidden_size]"));
  MLA_ASSIGN_OR_RETURN(
      layer->post_attention_layernorm,
      l.Vector(p + "post_attention_layernorm.weight", c.hidden_size, "[hidden_size]"));
  MLA_RETURN_IF_ERROR(LoadAttention(l, c, p + "self_attn.", &layer->attn));
  layer->is_moe = c.IsMoeLayer(i);
  if (layer->is_moe) return LoadMoe(l, c, p + "mlp.", &layer->moe);
  if (l.Has(p + "mlp.gate.weight")) {
    return l.Unexpected(p + "mlp.gate.weight", "config makes this layer dense, not MoE");
  }
  return LoadMlp(l, p + "mlp.", c.hidden_size, c.intermediate_size, "intermediate_size",
                 &layer->mlp);
}

int64_t MatrixBytes(const Matrix& m) { return static_cast<int64_t>(m.data.size()); }
int64_t MlpBytes(const MlpWeights& m) {
  return MatrixBytes(m.gate) + MatrixBytes(m.up) + MatrixBytes(m.down);
}
int64_t VectorBytes(const std::vector<float>& v) {
  return static_cast<int64_t>(v.size() * sizeof(float));
}

int64_t CountBytes(const ModelWeights& w) {
  int64_t n = MatrixBytes(w.embed_tokens) + MatrixBytes(w.lm_head) + VectorBytes(w.norm);
  for (const LayerWeights& l : w.layers) {
    const AttentionWeights& a = l.attn;
    n += VectorBytes(l.input_layernorm) + VectorBytes(l.post_attention_layernorm);
    n += MatrixBytes(a.q_proj) + MatrixBytes(a.q_a_proj) + VectorBytes(a.q_a_layernorm) +
         MatrixBytes(a.q_b_proj) + MatrixBytes(a.kv_a_proj_with_mqa) +
         VectorBytes(a.kv_a_layernorm) + MatrixBytes(a.kv_b_proj) + MatrixBytes(a.o_proj);
    n += MatrixBytes(a.indexer.wq_b) + MatrixBytes(a.indexer.wk) + VectorBytes(a.indexer.k_norm) +
         VectorBytes(a.indexer.k_norm_bias) + MatrixBytes(a.indexer.weights_proj);
    n += MlpBytes(l.mlp) + MatrixBytes(l.moe.gate) + VectorBytes(l.moe.score_bias) +
         MlpBytes(l.moe.shared);
    for (const MlpWeights& e : l.moe.experts) n += MlpBytes(e);
  }
  return n;
}

Matrix CopyMatrix(const Matrix& m) {
  Matrix copy = Matrix::Allocate(m.rows, m.cols, m.dtype);
  std::memcpy(copy.data.data(), m.data.data(), m.data.size());
  return copy;
}

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const std::string& model_dir,
                                              const ModelConfig& config) {
  MLA_ASSIGN_OR_RETURN(const std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(model_dir));
  Loader l(*ckpt, config);
  ModelWeights w;
  MLA_ASSIGN_OR_RETURN(w.embed_tokens, l.Linear("model.embed_tokens", config.vocab_size,
                                                config.hidden_size, "[vocab_size, hidden_size]"));
  w.layers.resize(static_cast<size_t>(config.num_hidden_layers));
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    MLA_RETURN_IF_ERROR(LoadLayer(l, config, i, &w.layers[i]));
  }
  MLA_ASSIGN_OR_RETURN(w.norm, l.Vector("model.norm.weight", config.hidden_size, "[hidden_size]"));
  if (l.Has("lm_head.weight") || !config.tie_word_embeddings) {
    MLA_ASSIGN_OR_RETURN(w.lm_head, l.Linear("lm_head", config.vocab_size, config.hidden_size,
                                             "[vocab_size, hidden_size]"));
  } else {
    w.lm_head = CopyMatrix(w.embed_tokens);
  }
  w.dtype = l.all_bf16() ? DType::kBF16 : DType::kF32;
  w.bytes = CountBytes(w);
  return w;
}

}  // namespace mla
