// --breakdown's instrument for mla_model_bench: replays the forward pass's operations with
// the model's weights and shapes, in its order, with a timer around each group (see
// model_bench.cc). Header-only: it is used by that one binary.
#ifndef MLA_BENCH_SHADOW_FORWARD_H_
#define MLA_BENCH_SHADOW_FORWARD_H_

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "bench/roofline.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/status_macros.h"
#include "engine/kv_cache/latent_cache.h"
#include "engine/model/deepseek_model.h"
#include "engine/model/layer_ops.h"
#include "engine/model/mla_attention_step.h"

namespace mla::bench {

// clang-format off
enum Phase { kAttnProj, kAbsorb, kAttnKernel, kOutProj, kDenseMlp, kMoeShared, kMoeExperts,
             kLmHead, kNumPhases };
constexpr const char* kPhaseNames[kNumPhases] = {
    "attention projections (q, kv_a)", "absorb q_nope * W_UK", "MLA attention kernel",
    "W_UV + o_proj", "dense MLP", "MoE router + shared experts", "MoE routed experts", "lm_head"};
// clang-format on
using PhaseTimes = std::array<double, kNumPhases>;

// Replays the forward pass's operations with a timer around each group (see the top).
class ShadowForward {
 public:
  ShadowForward(const DeepseekModel& model, cpu::ThreadPool* pool)
      : c_(model.config()),
        w_(model.weights()),
        pool_(pool),
        scale_(static_cast<float>(SoftmaxScale(c_))) {
    // The model keeps W_UK transposed per head ([L, nope]) in a private member; build the
    // same copies so the absorb Gemm reads the same shapes and bytes.
    const int nope = c_.qk_nope_head_dim, lat = c_.kv_lora_rank;
    const int rows_per_head = nope + c_.v_head_dim;
    for (const LayerWeights& l : w_.layers) {
      const Matrix& kv_b = l.attn.kv_b_proj;
      const size_t elem = DTypeSize(kv_b.dtype);
      std::vector<Matrix> heads;
      for (int h = 0; h < c_.num_attention_heads; ++h) {
        Matrix t = Matrix::Allocate(lat, nope, kv_b.dtype);
        for (int i = 0; i < nope; ++i) {
          const std::byte* row =
              kv_b.data.data() + (size_t{1} * (h * rows_per_head + i) * lat) * elem;
          for (int j = 0; j < lat; ++j) {
            std::memcpy(t.data.data() + (size_t{1} * j * nope + i) * elem, row + j * elem, elem);
          }
        }
        heads.push_back(std::move(t));
      }
      w_uk_t_.push_back(std::move(heads));
    }
  }

  // One step of `m` tokens at positions [start, start + m) of `table`, whose cache slots
  // must be written; `logit_rows` rows go through lm_head. Adds seconds to `t`.
  absl::Status Run(const LatentCache& cache, const BlockTable& table, int64_t start, int64_t m,
                   int64_t logit_rows, PhaseTimes& t) {
    Resize(m);
    const ChunkRef ref{start, m, &table};
    const AttentionBatch batch = MakeAttentionBatch({&ref, 1});
    for (int l = 0; l < c_.num_hidden_layers; ++l) {
      MLA_RETURN_IF_ERROR(Attention(l, cache, batch, m, t));
      const LayerWeights& lw = w_.layers[l];
      if (lw.is_moe) {
        Moe(lw.moe, m, t);
      } else {
        Time(t[kDenseMlp], [&] { Mlp(lw.mlp, x_.data(), m, out_.data()); });
      }
    }
    Time(t[kLmHead], [&] {
      cpu::Gemm(x_.data(), c_.hidden_size, logit_rows, w_.lm_head.View(), logits_.data(),
                c_.vocab_size, pool_);
    });
    return absl::OkStatus();
  }

 private:
  template <typename Fn>
  static void Time(double& acc, Fn&& fn) {
    const double start = Now();
    fn();
    acc += Now() - start;
  }

  void Resize(int64_t m) {
    const int64_t hidden = c_.hidden_size, heads = c_.num_attention_heads;
    const int64_t wide = std::max<int64_t>(
        c_.intermediate_size, c_.moe_intermediate_size * std::max(1, c_.n_shared_experts));
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    x_.resize(m * hidden);
    for (float& v : x_) v = normal(rng);
    out_.resize(m * hidden);
    qa_.resize(m * std::max(1, c_.q_lora_rank));
    q_.resize(m * heads * c_.qk_head_dim());
    ckv_.resize(m * c_.latent_dim());
    q_abs_.resize(m * heads * c_.latent_dim());
    for (float& v : q_abs_) v = 0.05f * normal(rng);
    o_lat_.resize(m * heads * c_.kv_lora_rank);
    attn_.resize(m * heads * c_.v_head_dim);
    gate_.resize(m * wide);
    up_.resize(m * wide);
    act_.resize(m * wide);
    router_.resize(m * std::max(1, c_.n_routed_experts));
    logits_.resize(m * static_cast<int64_t>(c_.vocab_size));
  }

  absl::Status Attention(int l, const LatentCache& cache, const AttentionBatch& batch, int64_t m,
                         PhaseTimes& t) {
    const AttentionWeights& a = w_.layers[l].attn;
    const int64_t hidden = c_.hidden_size, heads = c_.num_attention_heads;
    const int64_t nope = c_.qk_nope_head_dim, qk = c_.qk_head_dim(), lat = c_.kv_lora_rank;
    const int64_t width = c_.latent_dim(), vdim = c_.v_head_dim;
    Time(t[kAttnProj], [&] {
      if (c_.q_lora_rank > 0) {
        cpu::Gemm(x_.data(), hidden, m, a.q_a_proj.View(), qa_.data(), c_.q_lora_rank, pool_);
        cpu::Gemm(qa_.data(), c_.q_lora_rank, m, a.q_b_proj.View(), q_.data(), heads * qk, pool_);
      } else {
        cpu::Gemm(x_.data(), hidden, m, a.q_proj.View(), q_.data(), heads * qk, pool_);
      }
      cpu::Gemm(x_.data(), hidden, m, a.kv_a_proj_with_mqa.View(), ckv_.data(), width, pool_);
    });
    Time(t[kAbsorb], [&] {
      for (int64_t h = 0; h < heads; ++h) {
        cpu::Gemm(q_.data() + h * qk, heads * qk, m, w_uk_t_[l][h].View(),
                  q_abs_.data() + h * width, heads * width, pool_);
      }
    });
    absl::Status status;
    Time(t[kAttnKernel], [&] {
      status = RunMlaAttention(batch, cache, l, static_cast<int>(heads), scale_, q_abs_.data(),
                               o_lat_.data(), lse_, pool_, &attention_ws_);
    });
    MLA_RETURN_IF_ERROR(status);
    Time(t[kOutProj], [&] {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t first = h * (nope + vdim) + nope;
        cpu::Gemm(o_lat_.data() + h * lat, heads * lat, m,
                  a.kv_b_proj.RowsView(first, first + vdim), attn_.data() + h * vdim, heads * vdim,
                  pool_);
      }
      cpu::Gemm(attn_.data(), heads * vdim, m, a.o_proj.View(), out_.data(), hidden, pool_);
    });
    return absl::OkStatus();
  }

  void Mlp(const MlpWeights& w, const float* x, int64_t n, float* out) {
    const int64_t inter = w.gate.rows, hidden = c_.hidden_size;
    cpu::Gemm(x, hidden, n, w.gate.View(), gate_.data(), inter, pool_);
    cpu::Gemm(x, hidden, n, w.up.View(), up_.data(), inter, pool_);
    SiluMul(gate_.data(), up_.data(), n, inter, inter, act_.data());
    cpu::Gemm(act_.data(), inter, n, w.down.View(), out, hidden, pool_);
  }

  void Moe(const MoeWeights& w, int64_t m, PhaseTimes& t) {
    const int64_t hidden = c_.hidden_size, experts = c_.n_routed_experts;
    std::vector<std::vector<std::pair<int64_t, float>>> assigned(experts);
    Time(t[kMoeShared], [&] {
      cpu::Gemm(x_.data(), hidden, m, w.gate.View(), router_.data(), experts, pool_);
      for (int64_t i = 0; i < m; ++i) {
        const ExpertChoice choice = RouteToken(router_.data() + i * experts, c_, w.score_bias);
        for (size_t k = 0; k < choice.experts.size(); ++k) {
          assigned[choice.experts[k]].push_back({i, choice.weights[k]});
        }
      }
      if (!w.shared.gate.empty()) Mlp(w.shared, x_.data(), m, out_.data());
    });
    Time(t[kMoeExperts], [&] {
      for (int64_t e = 0; e < experts; ++e) {
        const auto& rows = assigned[e];
        if (rows.empty()) continue;
        const int64_t n = static_cast<int64_t>(rows.size());
        expert_in_.resize(n * hidden);
        expert_out_.resize(n * hidden);
        for (int64_t i = 0; i < n; ++i) {
          std::memcpy(&expert_in_[i * hidden], &x_[rows[i].first * hidden], 4 * hidden);
        }
        Mlp(w.experts[e], expert_in_.data(), n, expert_out_.data());
        for (int64_t i = 0; i < n; ++i) {
          float* dst = &out_[rows[i].first * hidden];
          for (int64_t j = 0; j < hidden; ++j)
            dst[j] += rows[i].second * expert_out_[i * hidden + j];
        }
      }
    });
  }

  const ModelConfig& c_;
  const ModelWeights& w_;
  cpu::ThreadPool* pool_;
  float scale_;
  std::vector<std::vector<Matrix>> w_uk_t_;
  cpu::MlaAttentionWorkspace attention_ws_;
  std::vector<float> x_, out_, qa_, q_, ckv_, q_abs_, o_lat_, attn_, lse_;
  std::vector<float> gate_, up_, act_, router_, logits_, expert_in_, expert_out_;
};

}  // namespace mla::bench

#endif  // MLA_BENCH_SHADOW_FORWARD_H_
