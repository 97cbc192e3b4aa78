// The engine on the GPU (EngineOptions.device = "cuda") end to end on tiny-v2-lite: under a
// device cache too small for the batch, requests are preempted and recomputed, and repeated
// prompts are served from the prefix cache; the greedy tokens still follow the reference's
// greedy continuation as far as its margins let a bf16-GEMM device follow it. Seeded
// sampling with temperature, top-p and logprobs (the device draw) gives a request the same
// tokens in a batch as alone. Skips without a usable CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/collector.h"
#include "tests/engine/model/golden_util.h"
#include "tests/gpu/cuda_test_util.h"

namespace mla {
namespace {

using ::mla::testing::Collector;
using ::mla::testing::RunOneByOne;
using ::mla::testing::RunTogether;

std::unique_ptr<Engine> MakeCudaEngine(int64_t max_batch_tokens, int64_t cache_bytes) {
  EngineOptions o;
  o.model_dir = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
  o.device = "cuda";
  o.kv_cache_bytes = cache_bytes;
  o.block_size = 16;
  o.max_batch_tokens = max_batch_tokens;
  o.threads = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

GenerationRequest Greedy(const std::vector<int32_t>& prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = prompt;
  r.sampling.temperature = 0.0f;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

// The leading greedy steps of the reference that a device within the bf16 tolerance must
// reproduce: up to the first step whose two best reference logits lie within 0.05 (the
// margin cuda_backend_test allows per row); after a near tie the continuations may part.
size_t ComparableSteps(const Golden& g) {
  const size_t steps = g.greedy.size();
  if (steps == 0 || g.greedy_logits.size() % steps != 0) return 0;
  const size_t vocab = g.greedy_logits.size() / steps;
  for (size_t s = 0; s < steps; ++s) {
    std::vector<float> row(g.greedy_logits.begin() + s * vocab,
                           g.greedy_logits.begin() + (s + 1) * vocab);
    std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
    if (row[0] - row[1] <= 0.05f) return s + 1;  // This step's token may still differ.
  }
  return steps;
}

void ExpectFollowsReference(const std::vector<int32_t>& tokens, const Golden& g,
                            const std::string& what) {
  const size_t n = std::min(ComparableSteps(g), tokens.size());
  // The last comparable step may be the near tie itself: compare the steps before it.
  const size_t sure = n > 0 && n < g.greedy.size() ? n - 1 : n;
  EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + sure),
            std::vector<int32_t>(g.greedy.begin(), g.greedy.begin() + sure))
      << what;
}

TEST(CudaEngineTest, PreemptionAndPrefixHitsFollowTheReference) {
  MLA_SKIP_WITHOUT_CUDA();
  const std::vector<Golden> goldens = LoadGoldens("tiny-v2-lite.bf16-kv.safetensors");
  ASSERT_FALSE(goldens.empty());
  // 16 blocks of 16 tokens (240 bytes per token) while the four requests need 64+7+1+150
  // prompt tokens and 40 generated each: as the CPU engine's preemption test.
  std::unique_ptr<Engine> engine = MakeCudaEngine(32, 16 * 16 * 240);
  ASSERT_NE(engine, nullptr);
  std::vector<GenerationRequest> requests;
  for (const Golden& g : goldens) requests.push_back(Greedy(g.prompt, 40));
  const std::vector<std::unique_ptr<Collector>> batch = RunTogether(*engine, requests);
  ASSERT_EQ(batch.size(), goldens.size());
  for (size_t i = 0; i < goldens.size(); ++i) {
    const std::vector<int32_t> tokens = batch[i]->tokens();
    ASSERT_EQ(tokens.size(), 40u) << "prompt " << i << ": no token lost or sent twice";
    ExpectFollowsReference(tokens, goldens[i], "batched, prompt " + std::to_string(i));
  }
  EXPECT_GT(engine->GetLoad().cache.preemptions, 0);
  // Each prompt twice in a row: the second run's prompt comes from the prefix cache.
  const int64_t hits_before = engine->GetLoad().cache.prefix_hits;
  for (size_t i = 0; i < goldens.size(); ++i) {
    const GenerationRequest r =
        Greedy(goldens[i].prompt, static_cast<int>(goldens[i].greedy.size()));
    const std::vector<std::unique_ptr<Collector>> runs = RunOneByOne(*engine, {r, r});
    ASSERT_EQ(runs.size(), 2u);
    for (size_t run = 0; run < runs.size(); ++run) {
      ExpectFollowsReference(runs[run]->tokens(), goldens[i],
                             "alone, prompt " + std::to_string(i) + " run " + std::to_string(run));
    }
  }
  EXPECT_GT(engine->GetLoad().cache.prefix_hits, hits_before);
  EXPECT_EQ(engine->GetLoad().cache.blocks_used, 0);  // Every block came back.
}

TEST(CudaEngineTest, SeededTopPSamplingIsTheSameInABatchAsAlone) {
  MLA_SKIP_WITHOUT_CUDA();
  const std::vector<Golden> goldens = LoadGoldens("tiny-v2-lite.bf16-kv.safetensors");
  ASSERT_FALSE(goldens.empty());
  std::unique_ptr<Engine> engine = MakeCudaEngine(512, 8 << 20);
  ASSERT_NE(engine, nullptr);
  auto request = [&](size_t i) {
    GenerationRequest r = Greedy(goldens[i].prompt, 24);
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = i % 2 == 0 ? 0.9f : 1.0f;
    r.sampling.min_p = i == 3 ? 0.05f : 0.0f;
    r.sampling.seed = 1000 + i;
    r.has_seed = true;
    r.logprobs = 2;
    return r;
  };
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < goldens.size(); ++i) requests.push_back(request(i));
  const std::vector<std::unique_ptr<Collector>> alone = RunOneByOne(*engine, requests);
  const std::vector<std::unique_ptr<Collector>> batch = RunTogether(*engine, requests);
  ASSERT_EQ(alone.size(), goldens.size());
  ASSERT_EQ(batch.size(), goldens.size());
  for (size_t i = 0; i < goldens.size(); ++i) {
    ASSERT_EQ(alone[i]->tokens().size(), 24u);
    ASSERT_EQ(alone[i]->logprobs().size(), 24u);
    for (const TokenLogprobs& l : alone[i]->logprobs()) EXPECT_EQ(l.top.size(), 2u);
    EXPECT_EQ(batch[i]->tokens(), alone[i]->tokens()) << "prompt " << i;
  }
}

}  // namespace
}  // namespace mla
