// Attention-sharpness telemetry: the probe's entropy and max weight against hand-computed
// and naive values, and the engine's sampling of probed rows (off means not computed).
#include "engine/backend/cpu/attention_probe.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "absl/synchronization/mutex.h"
#include "engine/common/bf16.h"
#include "engine/engine.h"
#include "engine/kv_cache/block_pool.h"

namespace mla {
namespace {

struct SmallCache {
  SmallCache(int latent, int rope, int block_size, int32_t blocks)
      : layout(*CacheLayout::Create({CacheDType::kBF16, latent, rope, block_size, 1})),
        cache(*LatentCache::CreateWithBlocks(layout, blocks)),
        pool(blocks),
        table(block_size) {
    cache.PoisonWithNaN();  // Slots past the probed keys must never be read.
  }
  void Write(const std::vector<float>& rows) {  // [n, L + R]
    const int64_t width = layout.latent_dim() + layout.rope_dim();
    const int64_t n = static_cast<int64_t>(rows.size()) / width;
    ASSERT_TRUE(table.Append(n, pool).ok());
    ASSERT_TRUE(cache
                    .WriteTokens(0, table, table.num_tokens() - n, n, rows.data(), width,
                                 rows.data() + layout.latent_dim(), width)
                    .ok());
  }
  CacheLayout layout;
  LatentCache cache;
  BlockPool pool;
  BlockTable table;
};

TEST(AttentionProbeTest, HandComputedDistribution) {
  // Keys' first latent value is the score (q = e0, scale 1): scores 0, 0, s2 with s2
  // the bf16 rounding of ln 2, so p = (1, 1, e^s2) / (2 + e^s2).
  SmallCache c(/*latent=*/2, /*rope=*/2, /*block_size=*/2, /*blocks=*/4);
  c.Write({0, 5, 1, 1, 0, -3, 2, 2, std::log(2.0f), 7, -1, 0});
  const double s2 = Bf16ToFloat(FloatToBf16(std::log(2.0f)));
  const double z = 2 + std::exp(s2);
  const double p[] = {1 / z, 1 / z, std::exp(s2) / z};
  double entropy = 0;
  for (double x : p) entropy -= x * std::log(x);
  const float q[] = {1, 0, 0, 0};
  auto probe = ProbeAttentionRow(c.cache, 0, c.table.block_ids(), 3, q, 1, 1.0f);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_NEAR(probe->entropy, entropy, 1e-6);  // 1.5 ln 2 up to the rounding of s2
  EXPECT_NEAR(probe->max_weight, p[2], 1e-6);
  EXPECT_EQ(probe->context_tokens, 3);
  EXPECT_EQ(probe->layer, 0);
}

TEST(AttentionProbeTest, OneKeyIsCertainAndUniformKeysAreFlat) {
  SmallCache c(4, 2, 16, 8);
  std::vector<float> rows(100 * 6, 0.5f);  // identical keys: uniform over all of them
  c.Write(rows);
  const float q[] = {1, 2, 3, 4, 5, 6, -1, 0, 0, 2, 0, 1};  // two heads
  auto one = ProbeAttentionRow(c.cache, 0, c.table.block_ids(), 1, q, 2, 0.3f);
  ASSERT_TRUE(one.ok());
  EXPECT_NEAR(one->entropy, 0.0, 1e-9);
  EXPECT_NEAR(one->max_weight, 1.0, 1e-9);
  auto all = ProbeAttentionRow(c.cache, 0, c.table.block_ids(), 100, q, 2, 0.3f);
  ASSERT_TRUE(all.ok());
  EXPECT_NEAR(all->entropy, std::log(100.0), 1e-9);
  EXPECT_NEAR(all->max_weight, 0.01, 1e-9);
}

TEST(AttentionProbeTest, MatchesNaiveSoftmaxOnRandomKeysAcrossBlocks) {
  const int lat = 8, rope = 4, heads = 3, n = 77;  // several 16-token blocks, one partial
  SmallCache c(lat, rope, 16, 8);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> rows(n * (lat + rope));
  for (float& x : rows) x = Bf16ToFloat(FloatToBf16(normal(rng)));  // as cached
  c.Write(rows);
  std::vector<float> q(heads * (lat + rope));
  for (float& x : q) x = normal(rng);
  const float scale = 0.7f;
  auto probe = ProbeAttentionRow(c.cache, 0, c.table.block_ids(), n, q.data(), heads, scale);
  ASSERT_TRUE(probe.ok());
  double entropy = 0, max_weight = 0;
  for (int h = 0; h < heads; ++h) {
    std::vector<double> s(n);
    double m = -INFINITY, z = 0;
    for (int t = 0; t < n; ++t) {
      float dot = 0;
      for (int i = 0; i < lat + rope; ++i)
        dot += q[h * (lat + rope) + i] * rows[t * (lat + rope) + i];
      s[t] = dot * scale;
      m = std::max(m, s[t]);
    }
    for (double x : s) z += std::exp(x - m);
    for (double x : s) {
      const double pt = std::exp(x - m) / z;
      entropy -= pt * std::log(pt) / heads;
    }
    max_weight += 1.0 / z / heads;
  }
  EXPECT_NEAR(probe->entropy, entropy, 1e-5);
  EXPECT_NEAR(probe->max_weight, max_weight, 1e-6);
}

TEST(AttentionProbeTest, RejectsNoKeys) {
  SmallCache c(2, 2, 4, 2);
  const float q[] = {1, 0, 0, 0};
  EXPECT_FALSE(ProbeAttentionRow(c.cache, 0, c.table.block_ids(), 0, q, 1, 1.0f).ok());
}

// Records every probe the engine reports.
class ProbeObserver final : public EngineObserver {
 public:
  void OnAttentionProbe(const AttentionSharpness& p) override {
    absl::MutexLock lock(&mu_);
    probes_.push_back(p);
  }
  std::vector<AttentionSharpness> probes() {
    absl::MutexLock lock(&mu_);
    return probes_;
  }

 private:
  absl::Mutex mu_;
  std::vector<AttentionSharpness> probes_;
};

GenerationOutput RunGreedy(Engine& engine, int max_tokens, bool attention_stats) {
  GenerationRequest r;
  r.prompt = {5, 6, 7, 8, 9, 10, 11};
  r.sampling.temperature = 0.0f;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.attention_stats = attention_stats;
  absl::Mutex mu;
  bool done = false;
  GenerationOutput last;
  auto id = engine.Submit(r, [&](GenerationOutput o) {
    absl::MutexLock lock(&mu);
    if (o.finished) {
      last = std::move(o);
      done = true;
    }
  });
  EXPECT_TRUE(id.ok()) << id.status();
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&done));
  return last;
}

std::unique_ptr<Engine> MakeEngine(int probe_every, EngineObserver* observer) {
  EngineOptions o;
  o.model_dir = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
  o.kv_cache_bytes = 4 << 20;
  o.block_size = 16;
  o.threads = 2;
  o.attention_probe_every = probe_every;
  o.observer = observer;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

TEST(EngineAttentionTelemetryTest, OffComputesNothing) {
  ProbeObserver observer;
  std::unique_ptr<Engine> engine = MakeEngine(0, &observer);
  ASSERT_NE(engine, nullptr);
  GenerationOutput out = RunGreedy(*engine, 6, false);
  EXPECT_EQ(out.completion_tokens, 6);
  EXPECT_TRUE(out.attention_stats.empty());
  EXPECT_EQ(engine->GetLoad().attention_probed_rows, 0);  // the probe never ran
  EXPECT_TRUE(observer.probes().empty());
}

TEST(EngineAttentionTelemetryTest, SampledStepsReportEveryLayer) {
  ProbeObserver observer;
  std::unique_ptr<Engine> engine = MakeEngine(2, &observer);
  ASSERT_NE(engine, nullptr);
  const int layers = engine->info().config.num_hidden_layers;
  RunGreedy(*engine, 6, false);
  // 6 steps (prefill + 5 decodes), every second one probed: 3 rows, each in every layer.
  const std::vector<AttentionSharpness> probes = observer.probes();
  ASSERT_EQ(probes.size(), 3u * layers);
  EXPECT_EQ(engine->GetLoad().attention_probed_rows, 3);
  for (const AttentionSharpness& p : probes) {
    EXPECT_GE(p.entropy, 0.0);
    EXPECT_LE(p.entropy, std::log(static_cast<double>(p.context_tokens)) + 1e-6);
    EXPECT_GT(p.max_weight, 0.0);
    EXPECT_LE(p.max_weight, 1.0 + 1e-9);
  }
  EXPECT_EQ(probes.front().context_tokens, 7);  // the prompt's last row sees 7 keys
}

TEST(EngineAttentionTelemetryTest, RequestAskingForStatsGetsOnePerTokenAndLayer) {
  std::unique_ptr<Engine> engine = MakeEngine(0, nullptr);
  ASSERT_NE(engine, nullptr);
  const int layers = engine->info().config.num_hidden_layers;
  GenerationOutput out = RunGreedy(*engine, 4, true);
  ASSERT_EQ(out.attention_stats.size(), 4u * layers);
  for (int t = 0; t < 4; ++t) {
    for (int l = 0; l < layers; ++l) {
      const AttentionSharpness& p = out.attention_stats[t * layers + l];
      EXPECT_EQ(p.layer, l);
      EXPECT_EQ(p.context_tokens, 7 + t);
    }
  }
}

}  // namespace
}  // namespace mla
