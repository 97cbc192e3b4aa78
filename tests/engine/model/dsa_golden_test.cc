// DeepSeek-V3.2 sparse attention against transformers' DeepseekV32ForCausalLM, in layers
// (golden_test.cc checks the whole model's logits against the bf16-kv goldens).
//
// Why layers: on a small random checkpoint the k-th and (k+1)-th index scores are often
// close, so a change of precision (bf16 indexer keys against an fp32 reference) flips
// which token is selected, and the logits alone cannot tell a bug from a flip. So:
//   1. the index scores, from the reference's own indexer inputs, against its scores
//      (continuous, tight);
//   2. the selection where the reference's k-th/(k+1)-th gap is clear (exact set);
//   3. index_topk >= context: bit-identical to dense MLA;
//   4. the whole model against the plain fp32 reference, statistically (median and p90 of
//      |Δ logprob|), and how often bf16 keys change the fp32 selection;
//   5. the indexer-recall telemetry against the reference's selection.
// The sparse attention given a selection is checked against its definition (dense MLA
// over the selected keys) in tests/engine/backend/cpu/dsa_kernels_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/indexer.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/model/attention_path.h"
#include "engine/model/deepseek_model.h"
#include "tests/engine/model/golden_util.h"

namespace mla {
namespace {

// tests/data/goldens/<file>, or null with a test failure.
std::unique_ptr<SafetensorsFile> OpenGolden(const std::string& file) {
  auto f = SafetensorsFile::Open(std::string(MLA_TEST_DATA_DIR) + "/goldens/" + file);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? std::move(*f) : nullptr;
}

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v32";
constexpr int kLongPrompt = 5;  // p5: 150 tokens; its indexer tensors are in the goldens.

// One layer's indexer tensors of the long prompt, as the reference computed them.
struct IndexerGolden {
  int64_t t = 0, heads = 0, dim = 0, topk = 0;
  std::vector<float> q, k, w, scores;  // [T, H·D], [T, D], [T, H], [T, T] (-inf: masked)
  std::vector<int32_t> selected;       // [T, topk]; rows seeing < topk keys pad with masked ones
};

IndexerGolden LoadIndexerGolden(const SafetensorsFile& f, int layer, const ModelConfig& c) {
  const std::string p = "p" + std::to_string(kLongPrompt) + ".idx" + std::to_string(layer) + ".";
  IndexerGolden g;
  g.q = ReadF32(f, p + "q");
  g.k = ReadF32(f, p + "k");
  g.w = ReadF32(f, p + "w");
  g.scores = ReadF32(f, p + "scores");
  g.selected = ReadI32(f, p + "topk");
  g.heads = c.index_n_heads;
  g.dim = c.index_head_dim;
  g.topk = c.index_topk;
  g.t = static_cast<int64_t>(g.k.size()) / g.dim;
  return g;
}

// The reference's selection of `row`, cut to the positions the row may see.
std::set<int32_t> ReferenceSelection(const IndexerGolden& g, int64_t row) {
  std::set<int32_t> out;
  for (int64_t i = 0; i < g.topk; ++i) {
    const int32_t pos = g.selected[row * g.topk + i];
    if (pos <= row) out.insert(pos);
  }
  return out;
}

// The gap between the row's k-th and (k+1)-th reference scores, relative to its largest;
// infinite when the row sees at most k keys.
double SelectionGap(const IndexerGolden& g, int64_t row) {
  if (row + 1 <= g.topk) return INFINITY;
  std::vector<double> s(g.scores.begin() + row * g.t, g.scores.begin() + row * g.t + row + 1);
  std::sort(s.begin(), s.end(), std::greater<>());
  return (s[g.topk - 1] - s[g.topk]) / std::max(std::fabs(s[0]), 1e-9);
}

struct IndexerRun {
  std::vector<bf16_t> cache;
  std::vector<int32_t> table, seq_lens, q_pos0, cu, selected;
  cpu::IndexerParams params;
};

// The reference's keys in a one-block cache and its queries and weights (n_heads^-0.5
// already applied) as one prefill of every row.
void PrepareIndexer(const IndexerGolden& g, IndexerRun& r) {
  r.cache.resize(g.k.size());
  for (size_t i = 0; i < g.k.size(); ++i) r.cache[i] = FloatToBf16(g.k[i]);
  r.table = {0};
  r.seq_lens = {static_cast<int32_t>(g.t)};
  r.q_pos0 = {0};
  r.cu = {0, static_cast<int32_t>(g.t)};
  r.selected.assign(static_cast<size_t>(g.t * g.topk), -1);
  r.params = {1,
              g.heads,
              g.dim,
              g.t,
              1,
              1,
              g.topk,
              1.0f / std::sqrt(float(g.dim)),
              1.0f,
              r.cache.data(),
              r.table.data(),
              r.seq_lens.data(),
              r.q_pos0.data(),
              r.cu.data(),
              g.q.data(),
              g.w.data(),
              r.selected.data()};
}

ModelConfig V32Config() {
  auto c = LoadModelConfig(kModel);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(DsaGoldenTest, IndexScoresAndClearSelectionsMatchReference) {
  const ModelConfig c = V32Config();
  auto f = OpenGolden("tiny-v32.bf16-kv.safetensors");
  ASSERT_TRUE(f);
  int64_t checked = 0, skipped = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const IndexerGolden g = LoadIndexerGolden(*f, l, c);
    ASSERT_EQ(g.t, 150);
    IndexerRun r;
    PrepareIndexer(g, r);
    ASSERT_TRUE(cpu::IndexerTopK(r.params, nullptr).ok());
    for (int64_t row = 0; row < g.t; ++row) {
      const std::vector<float> got = cpu::IndexerRowScores(r.params, 0, row);
      double scale = 1e-6;
      for (int64_t s = 0; s <= row; ++s)
        scale = std::max(scale, double{std::fabs(g.scores[row * g.t + s])});
      for (int64_t s = 0; s <= row; ++s) {
        ASSERT_NEAR(got[s], g.scores[row * g.t + s], 1e-5 * scale)
            << "layer " << l << " row " << row;
      }
      // fp32 summation order moves scores by ~1e-7 of their scale: a gap 100x that is clear.
      if (SelectionGap(g, row) < 1e-5) {
        ++skipped;
        continue;
      }
      const std::set<int32_t> want = ReferenceSelection(g, row);
      std::set<int32_t> have;
      for (int64_t i = 0; i < g.topk; ++i) {
        if (r.selected[row * g.topk + i] >= 0) have.insert(r.selected[row * g.topk + i]);
      }
      ASSERT_EQ(have, want) << "layer " << l << " row " << row;
      ++checked;
    }
  }
  EXPECT_EQ(skipped, 0) << "near-ties in the goldens: regenerate with another seed";
  EXPECT_EQ(checked, 3 * 150);
}

// The CPU backend, which can also record every IndexerTopK selection of a run and make a
// later run of the same steps use them (the FP8 test below: drift from the cache alone,
// without the selection flips a quantized latent causes).
class ReplayingBackend : public cpu::CpuBackend {
 public:
  ReplayingBackend() : cpu::CpuBackend(2) {}
  void IndexerTopK(int layer, int heads, float scale, float weight_scale, const Tensor& q,
                   const Tensor& w, Tensor selected, Op op) override {
    cpu::CpuBackend::IndexerTopK(layer, heads, scale, weight_scale, q, w, selected, op);
    int32_t* sel = static_cast<int32_t*>(selected.data);
    const size_t n = static_cast<size_t>(selected.rows * selected.cols);
    if (replay_from == nullptr) {
      recorded.emplace_back(sel, sel + n);
      return;
    }
    ASSERT_LT(replayed, replay_from->size()) << "more selections than the recorded run";
    ASSERT_EQ((*replay_from)[replayed].size(), n);
    std::copy((*replay_from)[replayed].begin(), (*replay_from)[replayed].end(), sel);
    ++replayed;
  }
  std::vector<std::vector<int32_t>> recorded;
  const std::vector<std::vector<int32_t>>* replay_from = nullptr;
  size_t replayed = 0;
};

// The golden prompts of tiny-v32 (empty, with a test failure, when the file is missing).
std::vector<std::vector<int32_t>> GoldenPrompts() {
  std::vector<std::vector<int32_t>> prompts;
  auto f = OpenGolden("tiny-v32.bf16-kv.safetensors");
  for (int i = 0; f && f->Contains("p" + std::to_string(i) + ".prompt"); ++i) {
    prompts.push_back(ReadI32(*f, "p" + std::to_string(i) + ".prompt"));
  }
  return prompts;
}

class DsaModelTest : public ::testing::Test {
 protected:
  // A model on its own backend with a NaN-poisoned cache of 16-token blocks.
  struct Instance {
    ReplayingBackend backend;
    std::unique_ptr<DeepseekModel> model;
    std::unique_ptr<BlockPool> pool;
  };

  static std::unique_ptr<Instance> Make(ModelConfig config, CacheDType dtype = CacheDType::kBF16,
                                        CacheDType index_dtype = CacheDType::kBF16) {
    auto in = std::make_unique<Instance>();
    auto weights = LoadModelWeights(kModel, V32Config());
    EXPECT_TRUE(weights.ok()) << weights.status();
    CacheLayoutConfig lc{dtype, config.kv_lora_rank,      config.qk_rope_head_dim,
                         16,    config.num_hidden_layers, config.index_head_dim};
    lc.index_dtype = index_dtype;
    EXPECT_TRUE(in->backend.AllocateCache(*CacheLayout::Create(lc), 64).ok());
    in->backend.latent_cache()->PoisonWithNaN();
    in->pool = std::make_unique<BlockPool>(64);
    auto model = DeepseekModel::Create(std::move(config), std::move(*weights), &in->backend);
    EXPECT_TRUE(model.ok()) << model.status();
    in->model = std::move(*model);
    return in;
  }

  static std::vector<float> Prefill(Instance& in, const std::vector<int32_t>& prompt,
                                    int64_t watch_begin = 0, int64_t watch_end = 0) {
    BlockTable table(16);
    EXPECT_TRUE(table.Append(static_cast<int64_t>(prompt.size()), *in.pool).ok());
    SequenceChunk chunk{prompt, 0, &table, true};
    chunk.watch_begin = watch_begin;
    chunk.watch_end = watch_end;
    auto logits = in.model->ForwardToHost({&chunk, 1});
    EXPECT_TRUE(logits.ok()) << logits.status();
    EXPECT_TRUE(table.Release(*in.pool).ok());
    return logits.ok() ? *logits : std::vector<float>();
  }
};

TEST_F(DsaModelTest, TopkCoveringTheContextIsDenseMlaBitForBit) {
  auto f = OpenGolden("tiny-v32.bf16-kv.safetensors");
  ASSERT_TRUE(f);
  const std::vector<int32_t> prompt = ReadI32(*f, "p5.prompt");
  ModelConfig wide = V32Config();
  wide.index_topk = static_cast<int>(prompt.size());  // Every row sees <= topk keys.
  ModelConfig dense = V32Config();
  dense.index_n_heads = dense.index_head_dim = dense.index_topk = 0;  // V3's MLA.
  auto a = Make(wide), b = Make(dense);
  // A V3.2 model always attends absorbed (attention_path.h); the V3 model must too, or a
  // long chunk would take the decompressed path and differ in the last bits.
  b->model->set_attention_path(AttentionPath::kAbsorbed);
  const std::vector<float> sparse_logits = Prefill(*a, prompt), dense_logits = Prefill(*b, prompt);
  ASSERT_EQ(sparse_logits.size(), dense_logits.size());
  for (size_t i = 0; i < dense_logits.size(); ++i) {
    ASSERT_EQ(sparse_logits[i], dense_logits[i]) << i;  // Exact, not close.
  }
  // And index_topk one below the context does change the last rows.
  wide.index_topk = static_cast<int>(prompt.size()) - 1;
  auto c = Make(wide);
  EXPECT_NE(Prefill(*c, prompt), dense_logits);
}

// Log-softmax of each row's logits at `token` of that row.
std::vector<double> LogProbs(const std::vector<float>& logits, int vocab,
                             const std::vector<int32_t>& tokens) {
  std::vector<double> out;
  for (size_t r = 0; r < tokens.size(); ++r) {
    const float* row = logits.data() + r * vocab;
    const double mx = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(row[i] - mx);
    out.push_back(row[tokens[r]] - mx - std::log(sum));
  }
  return out;
}

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

TEST_F(DsaModelTest, PlainFp32ReferenceStatistically) {
  auto fp32 = OpenGolden("tiny-v32.safetensors");
  auto bf16 = OpenGolden("tiny-v32.bf16-kv.safetensors");
  ASSERT_TRUE(fp32 && bf16);
  const ModelConfig config = V32Config();
  auto in = Make(config);
  const int vocab = config.vocab_size;
  std::vector<double> deltas;
  for (int i = 0; fp32->Contains("p" + std::to_string(i) + ".prompt"); ++i) {
    const std::string p = "p" + std::to_string(i);
    const std::vector<int32_t> prompt = ReadI32(*fp32, p + ".prompt");
    const std::vector<float> want = ReadF32(*fp32, p + ".logits");
    const std::vector<float> got = Prefill(*in, prompt);
    // Each row's logprob of the reference's own argmax token.
    std::vector<int32_t> argmax;
    for (size_t r = 0; r < prompt.size(); ++r) {
      argmax.push_back(std::max_element(want.begin() + r * vocab, want.begin() + (r + 1) * vocab) -
                       (want.begin() + r * vocab));
    }
    const std::vector<double> a = LogProbs(got, vocab, argmax), b = LogProbs(want, vocab, argmax);
    for (size_t r = 0; r < a.size(); ++r) deltas.push_back(std::fabs(a[r] - b[r]));
  }
  const double median = Quantile(deltas, 0.5), p90 = Quantile(deltas, 0.9);
  const double worst = Quantile(deltas, 1.0);
  // How often bf16 indexer keys change the fp32 reference's selection (both references).
  int64_t differ = 0, rows = 0;
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const IndexerGolden a = LoadIndexerGolden(*fp32, l, config);
    const IndexerGolden b = LoadIndexerGolden(*bf16, l, config);
    for (int64_t row = config.index_topk; row < a.t; ++row, ++rows) {
      differ += ReferenceSelection(a, row) != ReferenceSelection(b, row);
    }
  }
  std::printf(
      "tiny-v32 vs fp32 reference over %zu positions: |Δ logprob| median %.2e, p90 %.2e, "
      "max %.2e; bf16 indexer keys change the selection in %lld of %lld sparse rows\n",
      deltas.size(), median, p90, worst, static_cast<long long>(differ),
      static_cast<long long>(rows));
  RecordProperty("median_abs_dlogprob", std::to_string(median));
  RecordProperty("p90_abs_dlogprob", std::to_string(p90));
  RecordProperty("selection_differs", std::to_string(differ) + "/" + std::to_string(rows));
  // Measured: median 2.9e-3, p90 5.7e-2 (15% of the sparse rows select differently). An
  // indexer RoPE in the interleaved layout instead of half-split, which keeps every dense
  // row exact, measures median 0.56 / p90 2.0 here.
  EXPECT_LT(median, 8e-3);
  EXPECT_LT(p90, 1.5e-1);
}

// An FP8 latent cache (the indexer keys stay bf16): the sparse model's drift from its own
// bf16-cache logits, with the bf16 run's selections replayed, against the drift the same
// weights show with dense attention (index_topk covering every prompt), whose FP8 path
// golden_test checks against a float64 simulation: the sparse rows read the same
// dequantized keys (dsa_kernels_test: sparse over every key equals dense on an FP8
// cache), so the bounds of golden_test's FP8 check hold. Left free, a quantized latent
// also flips selections, and on this small random model (index_topk 16, near-ties
// everywhere) a flip moves the rows after it: measured median 0.068 / p90 0.33 / argmax
// agreement 0.74 free against 0.028 / 0.10 / 0.89 dense (replayed: 0.032 / 0.094 /
// 0.87); the free run is held to 4× the dense median and p90 and 20 points of agreement.
TEST_F(DsaModelTest, Fp8CacheDriftsAsDenseAttentionDoes) {
  const std::vector<std::vector<int32_t>> prompts = GoldenPrompts();
  ASSERT_FALSE(prompts.empty());
  const ModelConfig sparse = V32Config();
  ModelConfig dense = V32Config();
  dense.index_topk = 1 << 20;  // Every row sees at most index_topk keys: dense MLA.
  enum Run { kDense, kSparseReplayed, kSparseFree };
  Drift drift[3];
  for (const Run run : {kDense, kSparseReplayed, kSparseFree}) {
    const ModelConfig& config = run == kDense ? dense : sparse;
    auto bf16 = Make(config, CacheDType::kBF16), fp8 = Make(config, CacheDType::kFp8E4M3);
    if (run == kSparseReplayed) fp8->backend.replay_from = &bf16->backend.recorded;
    std::vector<std::vector<float>> a, b;
    for (const std::vector<int32_t>& prompt : prompts) {
      a.push_back(Prefill(*bf16, prompt));
      b.push_back(Prefill(*fp8, prompt));
    }
    if (run == kSparseReplayed) {
      ASSERT_FALSE(bf16->backend.recorded.empty()) << "no prompt took the sparse path";
      EXPECT_EQ(fp8->backend.replayed, bf16->backend.recorded.size());
    }
    drift[run] = MeasureDrift(prompts, a, b, config.vocab_size);
    std::printf(
        "tiny-v32 %s, fp8 vs bf16 cache over %lld tokens: |delta logprob| median %.4f p90 "
        "%.4f max %.4f, argmax agreement %.4f\n",
        run == kDense            ? "dense"
        : run == kSparseReplayed ? "sparse, selections replayed"
                                 : "sparse, free",
        static_cast<long long>(drift[run].tokens), drift[run].median, drift[run].p90,
        drift[run].max, drift[run].argmax_agreement);
  }
  ExpectDriftWithin(drift[kSparseReplayed], drift[kDense],
                    "sparse with fixed selections against dense attention's FP8 drift");
  EXPECT_LE(drift[kSparseFree].median, 4 * drift[kDense].median);
  EXPECT_LE(drift[kSparseFree].p90, 4 * drift[kDense].p90);
  EXPECT_GE(drift[kSparseFree].argmax_agreement, drift[kDense].argmax_agreement - 0.2);
}

// FP8 indexer keys (codes and a scale per key) against bf16 keys, the latent in bf16 in
// both: what share of each sparse row's selection they keep, and the logits' drift, next
// to the drift an FP8 latent cache causes with bf16 keys (the test above: 0.068 / 0.33 /
// 0.74 with free selections). On this model the index scores of a row are close together
// (index_topk 16 of up to 150 keys, random weights), so a key's few-percent quantization
// error swaps near-tied keys at the edge of the selection, and a swap moves the rows after
// it as the FP8 latent's free selections do. Measured: 92.8% of the entries kept, median
// 0.031, p90 0.39, agreement 0.76. The bounds sit between that and scores that drop each
// key's scale (81.8% kept, median 0.125, p90 0.80, agreement 0.58).
TEST_F(DsaModelTest, Fp8IndexerKeysKeepMostOfTheSelection) {
  const std::vector<std::vector<int32_t>> prompts = GoldenPrompts();
  ASSERT_FALSE(prompts.empty());
  const ModelConfig config = V32Config();
  auto bf16 = Make(config, CacheDType::kBF16, CacheDType::kBF16);
  auto fp8 = Make(config, CacheDType::kBF16, CacheDType::kFp8E4M3);
  std::vector<std::vector<float>> a, b;
  for (const std::vector<int32_t>& prompt : prompts) {
    a.push_back(Prefill(*bf16, prompt));
    b.push_back(Prefill(*fp8, prompt));
  }
  ASSERT_FALSE(bf16->backend.recorded.empty()) << "no prompt took the sparse path";
  ASSERT_EQ(fp8->backend.recorded.size(), bf16->backend.recorded.size());
  // Each call is one prompt's prefill in one layer: row r sees r + 1 keys, sparse from
  // r = index_topk on.
  const int64_t k = config.index_topk;
  int64_t kept = 0, total = 0;
  for (size_t call = 0; call < bf16->backend.recorded.size(); ++call) {
    const std::vector<int32_t>& x = bf16->backend.recorded[call];
    const std::vector<int32_t>& y = fp8->backend.recorded[call];
    ASSERT_EQ(x.size(), y.size());
    for (int64_t r = k; r < static_cast<int64_t>(x.size()) / k; ++r) {
      const std::set<int32_t> want(x.begin() + r * k, x.begin() + (r + 1) * k);
      for (int64_t i = 0; i < k; ++i) kept += want.count(y[r * k + i]);
      total += k;
    }
  }
  ASSERT_GT(total, 0);
  const double kept_share = static_cast<double>(kept) / static_cast<double>(total);
  const Drift drift = MeasureDrift(prompts, a, b, config.vocab_size);
  std::printf(
      "tiny-v32, fp8 vs bf16 indexer keys: %.1f%% of %lld sparse selection entries kept; "
      "|delta logprob| median %.4f p90 %.4f max %.4f, argmax agreement %.4f\n",
      100 * kept_share, static_cast<long long>(total), drift.median, drift.p90, drift.max,
      drift.argmax_agreement);
  EXPECT_GE(kept_share, 0.87);
  EXPECT_LE(drift.median, 0.0625);
  EXPECT_LE(drift.p90, 0.6);
  EXPECT_GE(drift.argmax_agreement, 0.68);
}

TEST_F(DsaModelTest, IndexerRecallCountsTheWatchedPositionsSelected) {
  auto f = OpenGolden("tiny-v32.bf16-kv.safetensors");
  ASSERT_TRUE(f);
  const ModelConfig config = V32Config();
  const std::vector<int32_t> prompt = ReadI32(*f, "p5.prompt");
  const int64_t last = static_cast<int64_t>(prompt.size()) - 1;
  auto in = Make(config);
  for (const auto& [begin, end] :
       std::vector<std::pair<int64_t, int64_t>>{{40, 60}, {0, 150}, {140, 400}}) {
    Prefill(*in, prompt, begin, end);
    const std::vector<ChunkIndexerRecall> recall = in->model->TakeIndexerRecall();
    ASSERT_EQ(recall.size(), static_cast<size_t>(config.num_hidden_layers));
    for (const ChunkIndexerRecall& r : recall) {
      const IndexerGolden g = LoadIndexerGolden(*f, r.layer, config);
      int64_t want = 0;
      for (int32_t pos : ReferenceSelection(g, last)) want += pos >= begin && pos < end;
      EXPECT_EQ(r.watched, std::min<int64_t>(end, last + 1) - begin);
      EXPECT_EQ(r.selected, want) << "layer " << r.layer << " watch [" << begin << ", " << end
                                  << ")";
    }
  }
  // Dense (context <= index_topk): every watched visible position counts as selected.
  const std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + config.index_topk);
  Prefill(*in, short_prompt, 3, 9);
  for (const ChunkIndexerRecall& r : in->model->TakeIndexerRecall()) {
    EXPECT_EQ(r.selected, 6);
    EXPECT_EQ(r.watched, 6);
  }
}

}  // namespace
}  // namespace mla
