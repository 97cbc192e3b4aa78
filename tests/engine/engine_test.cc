// The engine end to end on the tiny models: greedy generation equals the reference's
// greedy continuation, with requests alone or batched with chunked prefill; validation,
// abort, stop tokens, seeds, logprobs, and that blocks always come back.
#include "engine/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "engine/model/safetensors.h"
#include "engine/sampling/logprobs.h"
#include "tests/engine/collector.h"

namespace mla {
namespace {

using ::mla::testing::Collector;
using ::mla::testing::RunOneByOne;
using ::mla::testing::RunTogether;
using ::testing::HasSubstr;

struct Golden {
  std::vector<int32_t> prompt, greedy;
  std::vector<float> logits;
};

std::vector<Golden> LoadGoldens(const std::string& model = "tiny-v2-lite") {
  auto f = SafetensorsFile::Open(std::string(MLA_TEST_DATA_DIR) + "/goldens/" + model +
                                 ".bf16-kv.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  std::vector<Golden> out;
  for (int i = 0; f.ok() && (*f)->Contains("p" + std::to_string(i) + ".prompt"); ++i) {
    const std::string p = "p" + std::to_string(i);
    Golden g;
    for (const char* part : {".prompt", ".greedy"}) {
      auto t = (*f)->Tensor(p + part);
      std::vector<int32_t> v(t->NumElements());
      std::memcpy(v.data(), t->data, v.size() * 4);
      (std::string(part) == ".prompt" ? g.prompt : g.greedy) = v;
    }
    auto l = (*f)->Tensor(p + ".logits");
    g.logits.resize(l->NumElements());
    ConvertToFloat(l->dtype(), l->data, g.logits.size(), g.logits.data());
    out.push_back(std::move(g));
  }
  return out;
}

class EngineTest : public ::testing::Test {
 protected:
  void MakeEngine(int64_t max_batch_tokens = 512, int64_t cache_bytes = 8 << 20,
                  CacheDType cache_dtype = CacheDType::kBF16, bool warmup = false,
                  std::optional<CacheDType> index_key_dtype = std::nullopt) {
    EngineOptions o;
    o.warmup = warmup;
    o.index_key_dtype = index_key_dtype;
    o.model_dir = std::string(MLA_MODELS_DIR) + "/" + model_;
    o.kv_cache_bytes = cache_bytes;
    o.cache_dtype = cache_dtype;
    o.block_size = 16;
    o.max_batch_tokens = max_batch_tokens;
    o.threads = 2;
    if (customize_) customize_(o);
    auto e = Engine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }

  GenerationRequest Greedy(const std::vector<int32_t>& prompt, int max_tokens) {
    GenerationRequest r;
    r.prompt = prompt;
    r.sampling.temperature = 0.0f;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    return r;
  }

  std::string model_ = "tiny-v2-lite";
  std::function<void(EngineOptions&)> customize_;  // Applied last by MakeEngine.
  std::unique_ptr<Engine> engine_;
  std::vector<Golden> goldens_ = LoadGoldens();
};

TEST_F(EngineTest, GreedyMatchesReferenceOneAtATime) {
  MakeEngine();
  for (const Golden& g : goldens_) {
    Collector c;
    ASSERT_TRUE(engine_->Submit(Greedy(g.prompt, g.greedy.size()), c.Callback()).ok());
    GenerationOutput end = c.Wait();
    EXPECT_EQ(end.reason, FinishReason::kLength);
    EXPECT_EQ(c.tokens(), g.greedy);
    EXPECT_EQ(end.prompt_tokens, static_cast<int>(g.prompt.size()));
    EXPECT_EQ(end.completion_tokens, static_cast<int>(g.greedy.size()));
    EXPECT_GE(end.total_seconds, end.time_to_first_token_seconds);
  }
  EXPECT_EQ(engine_->GetLoad().cache.blocks_used, 0);
}

TEST_F(EngineTest, BatchedWithChunkedPrefillMatchesReference) {
  MakeEngine(/*max_batch_tokens=*/16);  // The 150-token prompt takes ten steps.
  std::vector<std::unique_ptr<Collector>> collectors;
  for (const Golden& g : goldens_) {
    collectors.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        engine_->Submit(Greedy(g.prompt, g.greedy.size()), collectors.back()->Callback()).ok());
  }
  for (size_t i = 0; i < goldens_.size(); ++i) {
    collectors[i]->Wait();
    EXPECT_EQ(collectors[i]->tokens(), goldens_[i].greedy) << "prompt " << i;
  }
  EXPECT_EQ(engine_->GetLoad().cache.blocks_used, 0);
}

TEST_F(EngineTest, PromptLogprobsMatchReference) {
  MakeEngine(/*max_batch_tokens=*/7);
  const Golden& g = goldens_[2];  // 64 tokens, prefilled in chunks of 7.
  GenerationRequest r = Greedy(g.prompt, 1);
  r.prompt_logprobs = 3;
  r.logprobs = 2;
  Collector c;
  ASSERT_TRUE(engine_->Submit(r, c.Callback()).ok());
  c.Wait();
  const int vocab = 512;
  std::vector<TokenLogprobs> lp = c.prompt_logprobs();
  ASSERT_EQ(lp.size(), g.prompt.size() - 1);
  for (size_t i = 0; i < lp.size(); ++i) {
    std::vector<float> ref = LogSoftmax({g.logits.data() + i * vocab, size_t(vocab)});
    EXPECT_EQ(lp[i].token_id, g.prompt[i + 1]);
    EXPECT_NEAR(lp[i].logprob, ref[g.prompt[i + 1]], 2e-3) << i;
    ASSERT_EQ(lp[i].top.size(), 3u);
    EXPECT_GE(lp[i].top[0].logprob, lp[i].top[1].logprob);
  }
  ASSERT_EQ(c.logprobs().size(), 1u);
  EXPECT_EQ(c.logprobs()[0].token_id, g.greedy[0]);
  EXPECT_EQ(c.logprobs()[0].top[0].token_id, g.greedy[0]);  // Greedy picks the top one.
}

TEST_F(EngineTest, StopTokenEndsGeneration) {
  MakeEngine();
  const Golden& g = goldens_[1];
  GenerationRequest r = Greedy(g.prompt, 8);
  r.stop_token_ids = {g.greedy[2]};
  Collector c;
  ASSERT_TRUE(engine_->Submit(r, c.Callback()).ok());
  EXPECT_EQ(c.Wait().reason, FinishReason::kStop);
  EXPECT_EQ(c.tokens(), std::vector<int32_t>(g.greedy.begin(), g.greedy.begin() + 3));
}

TEST_F(EngineTest, SeededSamplingIsReproducible) {
  MakeEngine();
  auto run = [&](uint64_t seed) {
    GenerationRequest r = Greedy(goldens_[1].prompt, 16);
    r.sampling.temperature = 1.0f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = seed;
    r.has_seed = true;
    Collector c;
    EXPECT_TRUE(engine_->Submit(r, c.Callback()).ok());
    c.Wait();
    return c.tokens();
  };
  const std::vector<int32_t> a = run(7), b = run(7), other = run(8);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
}

TEST_F(EngineTest, RejectsInvalidRequestsNamingTheField) {
  MakeEngine();
  auto code_and_message = [&](GenerationRequest r) {
    Collector c;
    return engine_->Submit(std::move(r), c.Callback()).status();
  };
  EXPECT_THAT(code_and_message(Greedy({}, 4)).message(), HasSubstr("prompt"));
  absl::Status s = code_and_message(Greedy({1, 2, 512}, 4));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token_ids.ids[2]"));
  GenerationRequest r = Greedy({1, 2}, 4);
  r.logprobs = 21;
  EXPECT_THAT(code_and_message(r).message(), HasSubstr("logprobs"));
  r = Greedy({1, 2}, 4);
  r.sampling.temperature = -1.0f;
  EXPECT_THAT(code_and_message(r).message(), HasSubstr("temperature"));
  r = Greedy({1, 2}, 4);
  r.sampling.top_p = std::nanf("");
  EXPECT_EQ(code_and_message(r).code(), absl::StatusCode::kInvalidArgument);
  r = Greedy({1, 2}, 4);
  r.sampling.logit_bias = {{3, 1.0f}, {512, 1.0f}};  // tiny-v2-lite's vocabulary: 512.
  EXPECT_THAT(code_and_message(r).message(),
              HasSubstr("sampling.logit_bias: token 512 is outside the vocabulary [0, 512)"));
  r = Greedy({1, 2}, 4);
  r.sampling.repetition_penalty = 0.0f;
  EXPECT_THAT(code_and_message(r).message(), HasSubstr("sampling.repetition_penalty"));
  // Longer than the model's context: INVALID_ARGUMENT with the numbers.
  s = code_and_message(Greedy({1, 2}, 200000));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("163840"));
  EXPECT_EQ(engine_->GetLoad().cache.blocks_used, 0);
}

TEST_F(EngineTest, RequestLargerThanTheCacheIsRefused) {
  MakeEngine(512, /*cache_bytes=*/4 * 16 * 240);  // 4 blocks of 16 tokens.
  Collector c;
  absl::Status s = engine_->Submit(Greedy({1, 2, 3}, 100), c.Callback()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("64 tokens"));
}

// With one running slot and one waiting place, a request submitted the moment another's
// first token arrives (a client answering a stream it sees start) finds that one running,
// not waiting: it queues, and only the request after it is refused. The callback runs on
// the engine's loop thread within the step that produced the token.
TEST_F(EngineTest, RequestSubmittedOnAnotherFirstTokenQueuesBehindIt) {
  customize_ = [](EngineOptions& o) {
    o.max_running = 1;
    o.max_waiting = 1;
  };
  MakeEngine();
  Collector running, queued, refused;
  absl::Mutex mu;
  bool submitted = false;
  absl::Status second;
  absl::StatusOr<std::string> third;
  OutputCallback forward = running.Callback();
  auto on_output = [&](GenerationOutput o) {
    const bool first = !o.tokens.empty();
    forward(std::move(o));
    absl::MutexLock lock(&mu);
    if (!first || submitted) return;
    submitted = true;
    second = engine_->Submit(Greedy(goldens_[1].prompt, 4), queued.Callback()).status();
    third = engine_->Submit(Greedy(goldens_[2].prompt, 4), refused.Callback());
  };
  auto id = engine_->Submit(Greedy(goldens_[3].prompt, 2000), on_output);
  ASSERT_TRUE(id.ok()) << id.status();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&submitted));
    EXPECT_TRUE(second.ok()) << second;
    EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
    EXPECT_THAT(third.status().message(), HasSubstr("--max_waiting=1"));
  }
  if (third.ok()) {
    engine_->Abort(*third);
    refused.Wait();
  }
  EXPECT_TRUE(engine_->Abort(*id));
  EXPECT_EQ(running.Wait().reason, FinishReason::kAbort);
  if (second.ok()) {
    EXPECT_EQ(queued.Wait().reason, FinishReason::kLength);
    EXPECT_EQ(queued.tokens().size(), 4u);
  }
}

// Frequency and presence penalties end to end: every greedy token is the argmax of the
// model's logprobs (reported unpenalized) less the penalties its earlier tokens earned.
// The top 20 logprobs decide a step when the best penalized candidate beats the 20th
// logprob (a token outside them has at most that, and penalties only lower it).
TEST_F(EngineTest, PenaltiesSteerGreedyDecodingByTheTokensGeneratedSoFar) {
  MakeEngine();
  const int kTokens = 48;
  GenerationRequest r = Greedy(goldens_[2].prompt, kTokens);
  r.logprobs = 20;
  r.sampling.frequency_penalty = 0.6f;
  r.sampling.presence_penalty = 0.5f;
  Collector penalized, plain;
  ASSERT_TRUE(engine_->Submit(r, penalized.Callback()).ok());
  r.sampling.frequency_penalty = r.sampling.presence_penalty = 0.0f;
  ASSERT_TRUE(engine_->Submit(r, plain.Callback()).ok());
  penalized.Wait();
  plain.Wait();
  const std::vector<int32_t> tokens = penalized.tokens();
  const std::vector<TokenLogprobs> logprobs = penalized.logprobs();
  ASSERT_EQ(tokens.size(), static_cast<size_t>(kTokens));
  ASSERT_EQ(logprobs.size(), tokens.size());
  std::map<int32_t, int> counts;
  int decided = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::vector<TokenLogprob>& top = logprobs[i].top;
    ASSERT_EQ(top.size(), 20u);
    float floor = top[0].logprob;
    int32_t best = -1;
    float best_value = -std::numeric_limits<float>::infinity(), second = best_value;
    for (const TokenLogprob& c : top) {
      floor = std::min(floor, c.logprob);
      const int n = counts.count(c.token_id) ? counts[c.token_id] : 0;
      const float value = c.logprob - (n > 0 ? 0.6f * n + 0.5f : 0.0f);
      if (value > best_value) {
        second = best_value;
        best_value = value;
        best = c.token_id;
      } else {
        second = std::max(second, value);
      }
    }
    // Rounding of the logprobs could only matter within a hair of a tie.
    if (best_value > floor + 1e-4f && best_value > second + 1e-4f) {
      ++decided;
      EXPECT_EQ(tokens[i], best) << "step " << i;
    }
    ++counts[tokens[i]];
  }
  EXPECT_GE(decided, kTokens * 3 / 4);
  // The penalties changed the output, and the plain run is the model's greedy one.
  const std::vector<int32_t> unpenalized = plain.tokens();
  EXPECT_NE(tokens, unpenalized);
  const std::vector<int32_t>& greedy = goldens_[2].greedy;
  const size_t n = std::min(greedy.size(), unpenalized.size());
  EXPECT_EQ(std::vector<int32_t>(unpenalized.begin(), unpenalized.begin() + n),
            std::vector<int32_t>(greedy.begin(), greedy.begin() + n));
}

// A large logit bias decides greedy decoding, and a repetition penalty lets a biased
// token win only until it has been used, after which the next-best one takes over.
TEST_F(EngineTest, LogitBiasAndRepetitionPenaltyShapeTheOutput) {
  MakeEngine();
  GenerationRequest r = Greedy(goldens_[1].prompt, 6);
  r.sampling.logit_bias = {{17, 100.0f}};
  Collector forced;
  ASSERT_TRUE(engine_->Submit(r, forced.Callback()).ok());
  forced.Wait();
  EXPECT_EQ(forced.tokens(), std::vector<int32_t>(6, 17));
  // Sampled (seeded) too: the bias leaves the other tokens e^-100 of the mass.
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 3;
  Collector sampled;
  ASSERT_TRUE(engine_->Submit(r, sampled.Callback()).ok());
  sampled.Wait();
  EXPECT_EQ(sampled.tokens(), std::vector<int32_t>(6, 17));
  // A repetition penalty of 1e4 divides the biased logit (~100) to ~0.01 once token 17 is
  // in the output; a second biased token (bias 50) then wins, and after it has been used
  // too, neither wins again over the tokens the model itself ranks first.
  r.sampling.temperature = 0.0f;
  r.sampling.logit_bias = {{17, 100.0f}, {23, 50.0f}};
  r.sampling.repetition_penalty = 1e4f;
  Collector penalized;
  ASSERT_TRUE(engine_->Submit(r, penalized.Callback()).ok());
  penalized.Wait();
  const std::vector<int32_t> tokens = penalized.tokens();
  ASSERT_EQ(tokens.size(), 6u);
  EXPECT_EQ(tokens[0], 17);
  EXPECT_EQ(tokens[1], 23);
  for (size_t i = 2; i < tokens.size(); ++i) {
    EXPECT_NE(tokens[i], 17);
    EXPECT_NE(tokens[i], 23);
  }
}

// min_tokens holds back the stop tokens: the token greedy decoding picks first, made a
// stop token, ends the request at once without it and only after min_tokens with it.
TEST_F(EngineTest, MinTokensHoldsBackTheStopTokens) {
  MakeEngine();
  const Golden& g = goldens_[2];
  GenerationRequest r = Greedy(g.prompt, 12);
  r.stop_token_ids = {g.greedy[0]};
  Collector plain;
  ASSERT_TRUE(engine_->Submit(r, plain.Callback()).ok());
  EXPECT_EQ(plain.Wait().reason, FinishReason::kStop);
  EXPECT_EQ(plain.tokens(), std::vector<int32_t>{g.greedy[0]});
  r.sampling.min_tokens = 4;
  Collector held;
  ASSERT_TRUE(engine_->Submit(r, held.Callback()).ok());
  const GenerationOutput end = held.Wait();
  const std::vector<int32_t> tokens = held.tokens();
  ASSERT_GE(tokens.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(tokens[i], g.greedy[0]) << i;
  if (end.reason == FinishReason::kStop) {
    EXPECT_GT(tokens.size(), 4u);
    EXPECT_EQ(tokens.back(), g.greedy[0]);
  } else {
    EXPECT_EQ(end.reason, FinishReason::kLength);
    EXPECT_EQ(tokens.size(), 12u);
  }
  r.sampling.min_tokens = 13;
  Collector refused;
  const absl::Status s = engine_->Submit(r, refused.Callback()).status();
  EXPECT_THAT(s.message(), HasSubstr("sampling.min_tokens: 13 is above max_tokens (12)"));
}

TEST_F(EngineTest, DuplicateLiveIdIsRefused) {
  MakeEngine();
  GenerationRequest r = Greedy(goldens_[3].prompt, 2000);
  r.request_id = "same";
  Collector a, b;
  ASSERT_TRUE(engine_->Submit(r, a.Callback()).ok());
  EXPECT_EQ(engine_->Submit(r, b.Callback()).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(engine_->Abort("same"));
  EXPECT_EQ(a.Wait().reason, FinishReason::kAbort);
  EXPECT_FALSE(engine_->Abort("same"));
  EXPECT_FALSE(engine_->Abort("never-existed"));
}

// The start-up steps size the workspace before any request and leave nothing behind: the
// cache is empty, and a request then gives the goldens' tokens.
TEST_F(EngineTest, WarmupSizesTheWorkspaceAndLeavesTheCacheEmpty) {
  MakeEngine();
  EXPECT_EQ(engine_->GetLoad().workspace_bytes, 0);
  MakeEngine(512, 8 << 20, CacheDType::kBF16, /*warmup=*/true);
  const EngineLoad load = engine_->GetLoad();
  EXPECT_GT(load.workspace_bytes, 0);
  EXPECT_EQ(load.cache.blocks_used, 0);
  EXPECT_EQ(load.cache.blocks_cached_free, 0);
  const Golden& g = goldens_[3];
  Collector c;
  ASSERT_TRUE(engine_->Submit(Greedy(g.prompt, g.greedy.size()), c.Callback()).ok());
  EXPECT_EQ(c.Wait().cached_prompt_tokens, 0);
  EXPECT_EQ(c.tokens(), g.greedy);
  // The largest step the engine can schedule fits what the warm-up reserved.
  EXPECT_EQ(engine_->GetLoad().workspace_bytes, load.workspace_bytes);
}

// A caller that aborts late, after its request ended, names its own submission: the
// engine refuses the abort when a new submission has taken the id since.
TEST_F(EngineTest, AbortWithAStaleSerialSparesANewRequestWithTheSameId) {
  MakeEngine();
  GenerationRequest r = Greedy(goldens_[3].prompt, 2000);
  r.request_id = "reused";
  Collector first, second;
  uint64_t first_serial = 0, second_serial = 0;
  ASSERT_TRUE(engine_->Submit(r, first.Callback(), &first_serial).ok());
  EXPECT_NE(first_serial, 0u);
  EXPECT_TRUE(engine_->Abort("reused", FinishReason::kAbort, first_serial));
  const GenerationOutput first_end = first.Wait();
  EXPECT_EQ(first_end.reason, FinishReason::kAbort);
  EXPECT_EQ(first_end.serial, first_serial);
  r.max_tokens = 8;
  r.ignore_eos = true;
  ASSERT_TRUE(engine_->Submit(r, second.Callback(), &second_serial).ok());
  EXPECT_NE(second_serial, first_serial);
  EXPECT_FALSE(engine_->Abort("reused", FinishReason::kAbort, first_serial));
  const GenerationOutput second_end = second.Wait();
  EXPECT_EQ(second_end.reason, FinishReason::kLength);
  EXPECT_EQ(second_end.serial, second_serial);
  EXPECT_EQ(second.tokens().size(), 8u);
}

TEST_F(EngineTest, AbortFreesBlocksAndEndsTheStream) {
  MakeEngine();
  Collector c;
  auto id = engine_->Submit(Greedy(goldens_[2].prompt, 5000), c.Callback());
  ASSERT_TRUE(id.ok());
  EXPECT_THAT(*id, HasSubstr("req-"));  // Assigned by the engine.
  while (c.tokens().size() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GT(engine_->GetLoad().cache.blocks_used, 0);
  EXPECT_TRUE(engine_->Abort(*id));
  GenerationOutput end = c.Wait();
  EXPECT_EQ(end.reason, FinishReason::kAbort);
  EXPECT_LT(end.completion_tokens, 5000);
  // The loop publishes the load after the step that finished the request.
  for (int i = 0; i < 1000 && engine_->GetLoad().cache.blocks_used != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(engine_->GetLoad().cache.blocks_used, 0);
}

// A stop string is found by the server in the text; it aborts with that reason, which the
// request reports (and the metrics count) instead of a plain abort.
TEST_F(EngineTest, AbortCarriesTheCallersReason) {
  MakeEngine();
  Collector c;
  auto id = engine_->Submit(Greedy(goldens_[2].prompt, 5000), c.Callback());
  ASSERT_TRUE(id.ok());
  while (c.tokens().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(engine_->Abort(*id, FinishReason::kStopSequence));
  EXPECT_TRUE(engine_->Abort(*id));  // Still live; the first reason stands.
  EXPECT_EQ(c.Wait().reason, FinishReason::kStopSequence);
  EXPECT_FALSE(engine_->Abort(*id));
}

TEST_F(EngineTest, RepeatedPrefixIsServedFromTheCache) {
  MakeEngine();
  const Golden& g = goldens_[3];  // 150 tokens: 9 full blocks of 16 can be shared.
  auto run = [&](const std::string& salt) {
    GenerationRequest r = Greedy(g.prompt, g.greedy.size());
    r.cache_salt = salt;
    Collector c;
    EXPECT_TRUE(engine_->Submit(r, c.Callback()).ok());
    GenerationOutput end = c.Wait();
    EXPECT_EQ(c.tokens(), g.greedy) << "salt " << salt;
    return end.cached_prompt_tokens;
  };
  EXPECT_EQ(run("tenant-a"), 0);
  EXPECT_EQ(run("tenant-a"), 144);  // floor((150 - 1) / 16) * 16: the last token is recomputed.
  EXPECT_EQ(run("tenant-b"), 0);    // Another salt never shares.
  const CacheStats stats = engine_->GetLoad().cache;
  EXPECT_EQ(stats.prefix_hits, 144);
  EXPECT_GE(stats.prefix_queries, 3 * 150);
  EXPECT_EQ(stats.blocks_used, 0);
  EXPECT_GT(stats.blocks_cached_free, 0);
}

// Requests with one prompt submitted together (an OpenAI request's n choices) compute it
// once: the first prefills it, the others wait for its blocks and take them from the
// prefix cache, every one with the goldens' tokens.
TEST_F(EngineTest, PromptSubmittedSeveralTimesAtOnceIsComputedOnce) {
  MakeEngine();
  const Golden& g = goldens_[3];  // 150 tokens: 9 full blocks of 16 can be shared.
  // Submitted from another request's output callback, on the loop thread within a step,
  // so that all three reach the scheduler in the same step.
  Collector first, c0, c1, c2;
  Collector* collectors[] = {&c0, &c1, &c2};
  absl::Mutex mu;
  bool submitted = false;
  OutputCallback forward = first.Callback();
  auto on_output = [&](GenerationOutput o) {
    forward(std::move(o));
    absl::MutexLock lock(&mu);
    if (submitted) return;
    submitted = true;
    for (Collector* c : collectors) {
      EXPECT_TRUE(engine_->Submit(Greedy(g.prompt, g.greedy.size()), c->Callback()).ok());
    }
  };
  ASSERT_TRUE(engine_->Submit(Greedy(goldens_[1].prompt, 2), on_output).ok());
  first.Wait();
  std::vector<int> cached;
  for (Collector* c : collectors) {
    cached.push_back(c->Wait().cached_prompt_tokens);
    EXPECT_EQ(c->tokens(), g.greedy);
  }
  std::sort(cached.begin(), cached.end());
  EXPECT_EQ(cached, (std::vector<int>{0, 144, 144}));
  EXPECT_EQ(engine_->GetLoad().cache.prefix_hits, 2 * 144);
}

// The fp8 cache changes the numbers (golden_test bounds by how much), not the serving:
// a prefix-cache hit, chunked prefill and preemption with recompute give the tokens a
// whole prefill over an fp8 cache gives, and the engine reports the layout it runs.
TEST_F(EngineTest, Fp8CacheServesPrefixHitsChunksAndPreemptionAlike) {
  const Golden& g = goldens_[3];  // 150 tokens
  constexpr int kTokens = 24;
  auto generate = [&](const std::string& what, int64_t* cached = nullptr) {
    Collector c;
    EXPECT_TRUE(engine_->Submit(Greedy(g.prompt, kTokens), c.Callback()).ok()) << what;
    const GenerationOutput end = c.Wait();
    if (cached != nullptr) *cached = end.cached_prompt_tokens;
    return c.tokens();
  };
  MakeEngine(/*max_batch_tokens=*/512, 8 << 20, CacheDType::kFp8E4M3);
  EXPECT_EQ(engine_->info().cache_dtype, "fp8_e4m3");
  EXPECT_EQ(engine_->info().kv_bytes_per_token, 3 * (32 + 4 + 8 * 2));  // 3 layers
  EXPECT_EQ(engine_->GetLoad().cache_dtype, "fp8_e4m3");
  EXPECT_EQ(engine_->GetLoad().kv_bytes_per_token, engine_->info().kv_bytes_per_token);
  int64_t cached = -1;
  const std::vector<int32_t> whole = generate("whole", &cached);
  ASSERT_EQ(whole.size(), static_cast<size_t>(kTokens));
  EXPECT_EQ(cached, 0);
  EXPECT_EQ(generate("prefix hit", &cached), whole);
  EXPECT_EQ(cached, 144);
  MakeEngine(/*max_batch_tokens=*/7, 8 << 20, CacheDType::kFp8E4M3);
  EXPECT_EQ(generate("chunks of 7"), whole);
  // Every prompt alone, then all at once in 16 blocks of 16 tokens (as
  // SmallCacheCompletesThroughPreemption): some are preempted and recompute.
  MakeEngine(/*max_batch_tokens=*/512, 8 << 20, CacheDType::kFp8E4M3);
  std::vector<std::vector<int32_t>> solo;
  for (const Golden& each : goldens_) {
    Collector c;
    ASSERT_TRUE(engine_->Submit(Greedy(each.prompt, 40), c.Callback()).ok());
    c.Wait();
    solo.push_back(c.tokens());
  }
  MakeEngine(/*max_batch_tokens=*/32, 16 * 16 * 3 * (32 + 4 + 16), CacheDType::kFp8E4M3);
  std::vector<std::unique_ptr<Collector>> collectors;
  for (const Golden& each : goldens_) {
    collectors.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine_->Submit(Greedy(each.prompt, 40), collectors.back()->Callback()).ok());
  }
  for (size_t i = 0; i < goldens_.size(); ++i) {
    collectors[i]->Wait();
    EXPECT_EQ(collectors[i]->tokens(), solo[i]) << "prompt " << i;
  }
  EXPECT_GT(engine_->GetLoad().cache.preemptions, 0);
}

// ---- The prefix cache's disk tier ------------------------------------------------------

class DiskTierEngineTest : public EngineTest {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/engine_tier_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  // An engine on tiny-v2-lite with the tier in dir_ (or `dir`), blocks of 16 tokens.
  void MakeTierEngine(int64_t cache_blocks = 512, CacheDType dtype = CacheDType::kBF16,
                      int64_t disk_bytes = 1 << 20, std::string dir = "",
                      std::string model = "tiny-v2-lite") {
    engine_.reset();  // flushes the previous engine's tier
    EngineOptions o;
    o.model_dir = std::string(MLA_MODELS_DIR) + "/" + model;
    o.cache_dtype = dtype;
    o.kv_cache_bytes = cache_blocks * 16 * 3 * (dtype == CacheDType::kBF16 ? 80 : 52);
    o.block_size = 16;
    o.threads = 2;
    o.kv_disk_dir = dir.empty() ? dir_ : dir;
    o.kv_disk_bytes = disk_bytes;
    auto e = Engine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }
  struct Run {
    std::vector<int32_t> tokens;
    std::vector<TokenLogprobs> logprobs;
    int64_t cached = 0;
  };
  Run Generate(const std::vector<int32_t>& prompt, const std::string& salt = "") {
    GenerationRequest r = Greedy(prompt, 24);
    r.cache_salt = salt;
    r.logprobs = 1;
    Collector c;
    EXPECT_TRUE(engine_->Submit(r, c.Callback()).ok());
    const GenerationOutput end = c.Wait();
    return {c.tokens(), c.logprobs(), end.cached_prompt_tokens};
  }
  // Waits until the tier has written `n` blocks in all (GetLoad is published per step).
  void WaitForWrites(int64_t n) {
    for (int i = 0; i < 400 && engine_->GetLoad().disk.writes < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      Generate({5});  // a step publishes the load
    }
    ASSERT_GE(engine_->GetLoad().disk.writes, n);
  }
  void ExpectSameOutput(const Run& got, const Run& want) {
    EXPECT_EQ(got.tokens, want.tokens);
    ASSERT_EQ(got.logprobs.size(), want.logprobs.size());
    for (size_t i = 0; i < got.logprobs.size(); ++i) {
      EXPECT_NEAR(got.logprobs[i].logprob, want.logprobs[i].logprob, 1e-4) << i;
    }
  }
  // The tier's file of block `index` of `prompt` (salt ""), searched under dir_.
  std::string FileOf(const std::vector<int32_t>& prompt, int index) {
    uint64_t hash = kRootBlockHash;
    for (int i = 0; i <= index; ++i) {
      hash = ChainedBlockHash(hash, "", std::span<const int32_t>(prompt.data() + 16 * i, 16));
    }
    char name[32];
    std::snprintf(name, sizeof(name), "%016llx.blk", static_cast<unsigned long long>(hash));
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
      if (e.path().filename() == name) return e.path().string();
    }
    return "";
  }

  std::string dir_;
};

TEST_F(DiskTierEngineTest, EvictedPrefixComesBackFromDiskWithTheSameOutput) {
  const std::vector<int32_t>& a = goldens_[3].prompt;  // 150 tokens: 9 shareable blocks
  MakeTierEngine(512, CacheDType::kBF16, 1 << 20, dir_ + "-reference");
  const Run never_evicted = Generate(a);
  // 16 blocks: two other long prompts evict a's cached blocks from the pool.
  MakeTierEngine(/*cache_blocks=*/16);
  const Run first = Generate(a);
  ExpectSameOutput(first, never_evicted);
  WaitForWrites(9);
  std::vector<int32_t> b = a, c = a;
  b[0] = a[0] + 1;
  c[0] = a[0] + 2;
  Generate(b);
  Generate(c);
  ASSERT_GT(engine_->GetLoad().cache.evictions, 0);
  const Run again = Generate(a);
  EXPECT_EQ(again.cached, 144);
  ExpectSameOutput(again, never_evicted);
  EXPECT_GT(engine_->GetLoad().disk_hit_tokens, 0);
}

TEST_F(DiskTierEngineTest, RestartFindsThePrefixOnDiskForItsOwnModelSaltAndDtypeOnly) {
  const std::vector<int32_t>& a = goldens_[3].prompt;
  MakeTierEngine();
  const Run cold = Generate(a);
  EXPECT_EQ(cold.cached, 0);
  MakeTierEngine();  // a restart: an empty pool, the same directory
  const Run warm = Generate(a);
  EXPECT_EQ(warm.cached, 144);
  EXPECT_EQ(engine_->GetLoad().disk_hit_tokens, 144);
  EXPECT_TRUE(engine_->GetLoad().disk_enabled);
  ExpectSameOutput(warm, cold);
  EXPECT_EQ(Generate(a, "another-tenant").cached, 0);
  MakeTierEngine(512, CacheDType::kFp8E4M3);
  EXPECT_EQ(Generate(a).cached, 0);
  EXPECT_EQ(engine_->GetLoad().disk_hit_tokens, 0);
  MakeTierEngine(512, CacheDType::kBF16, 1 << 20, "", "tiny-v3");
  EXPECT_EQ(Generate(a).cached, 0);
  EXPECT_EQ(engine_->GetLoad().disk_hit_tokens, 0);
}

TEST_F(DiskTierEngineTest, CorruptFilesAreRecomputedAndCounted) {
  const std::vector<int32_t>& a = goldens_[3].prompt;
  MakeTierEngine();
  const Run cold = Generate(a);
  engine_.reset();
  const std::string third = FileOf(a, 2), sixth = FileOf(a, 5);
  ASSERT_FALSE(third.empty());
  ASSERT_FALSE(sixth.empty());
  {  // one flipped byte
    std::fstream f(third, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-7, std::ios::end);
    const char byte = static_cast<char>(f.get() ^ 0xff);
    f.seekp(-7, std::ios::end);
    f.put(byte);
  }
  std::filesystem::resize_file(sixth, 100);
  MakeTierEngine();
  const Run damaged = Generate(a);
  EXPECT_EQ(damaged.cached, 32);  // blocks 0 and 1; block 2 failed its checksum
  ExpectSameOutput(damaged, cold);
  EXPECT_EQ(engine_->GetLoad().disk.corrupt_skipped, 1);
  // Block 2 is written again (3-9 are listed: their files stay); block 5's truncated file
  // is still listed too (the index is built from names and sizes), so it is found when a
  // chain first reaches it.
  WaitForWrites(1);
  MakeTierEngine();
  const Run next = Generate(a);
  EXPECT_EQ(next.cached, 80);
  ExpectSameOutput(next, cold);
  EXPECT_EQ(engine_->GetLoad().disk.corrupt_skipped, 1);
  WaitForWrites(1);
  MakeTierEngine();
  EXPECT_EQ(Generate(a).cached, 144);
}

TEST_F(DiskTierEngineTest, TinyBudgetOrUnwritableDirectoryKeepsServing) {
  const std::vector<int32_t>& a = goldens_[3].prompt;
  MakeTierEngine();
  const Run want = Generate(a);
  // The engine's tier may still be writing blocks in the background: stop it before its
  // directory goes (remove_all failed on a file renamed under it, seen once in CI).
  engine_.reset();
  std::filesystem::remove_all(dir_);
  MakeTierEngine(512, CacheDType::kBF16, /*disk_bytes=*/100);  // less than one block
  ExpectSameOutput(Generate(a), want);
  EXPECT_EQ(engine_->GetLoad().disk.blocks, 0);
  EXPECT_TRUE(engine_->GetLoad().disk_enabled);
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/a-file") << "not a directory";
  MakeTierEngine(512, CacheDType::kBF16, 1 << 20, dir_ + "/a-file/tier");
  ExpectSameOutput(Generate(a), want);
  ExpectSameOutput(Generate(a), want);
  EXPECT_FALSE(engine_->GetLoad().disk_enabled);
}

TEST_F(EngineTest, SmallCacheCompletesThroughPreemption) {
  // 16 blocks of 16 tokens = 256 tokens, while the four requests need 64+7+1+150+4*40.
  MakeEngine(/*max_batch_tokens=*/32, /*cache_bytes=*/16 * 16 * 240);
  std::vector<std::unique_ptr<Collector>> collectors;
  for (const Golden& g : goldens_) {
    collectors.push_back(std::make_unique<Collector>());
    GenerationRequest r = Greedy(g.prompt, 40);
    ASSERT_TRUE(engine_->Submit(r, collectors.back()->Callback()).ok());
  }
  for (size_t i = 0; i < goldens_.size(); ++i) {
    GenerationOutput end = collectors[i]->Wait();
    EXPECT_EQ(end.reason, FinishReason::kLength);
    const std::vector<int32_t> tokens = collectors[i]->tokens();
    ASSERT_EQ(tokens.size(), 40u) << "no token lost or sent twice";
    // The reference's 8 greedy steps are a prefix of what the engine generated.
    EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + 8), goldens_[i].greedy)
        << "prompt " << i;
  }
  const CacheStats stats = engine_->GetLoad().cache;
  EXPECT_GT(stats.preemptions, 0);
  EXPECT_EQ(stats.blocks_used, 0);
}

TEST_F(EngineTest, ConcurrentStreamsEqualSoloRunsWithLogprobs) {
  MakeEngine(/*max_batch_tokens=*/24);
  auto request = [&](size_t i) {
    GenerationRequest r = Greedy(goldens_[i].prompt, 12);
    r.logprobs = 3;
    return r;
  };
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < goldens_.size(); ++i) requests.push_back(request(i));
  const std::vector<std::unique_ptr<Collector>> solo = RunOneByOne(*engine_, requests);
  const std::vector<std::unique_ptr<Collector>> together = RunTogether(*engine_, requests);
  ASSERT_EQ(together.size(), solo.size());
  for (size_t i = 0; i < solo.size(); ++i) {
    const std::vector<TokenLogprobs> batched = together[i]->logprobs();
    const std::vector<TokenLogprobs> alone = solo[i]->logprobs();
    ASSERT_EQ(batched.size(), alone.size());
    for (size_t t = 0; t < batched.size(); ++t) {
      EXPECT_EQ(batched[t].token_id, alone[t].token_id);
      // Batching changes only the grouping of tokens in GEMMs and attention splits.
      EXPECT_NEAR(batched[t].logprob, alone[t].logprob, 1e-4);
    }
  }
}

TEST_F(EngineTest, ShutdownAbortsLiveRequests) {
  MakeEngine();
  Collector c;
  ASSERT_TRUE(engine_->Submit(Greedy(goldens_[0].prompt, 20000), c.Callback()).ok());
  engine_.reset();
  EXPECT_EQ(c.Wait().reason, FinishReason::kAbort);
}

// DeepSeek-V3.2 (sparse attention, index_topk 16) through the engine: the indexer keys
// live in the paged cache beside the latent, so chunked prefill, batching, prefix-cache
// hits and preemption must all reproduce the reference's greedy tokens.
class DsaEngineTest : public EngineTest {
 protected:
  DsaEngineTest() {
    model_ = "tiny-v32";
    goldens_ = LoadGoldens("tiny-v32");
  }
};

TEST_F(DsaEngineTest, ChunkedBatchedAndPreemptedMatchReference) {
  // 16-token steps cut every prompt longer than index_topk into sparse chunks; the cache
  // holds 14 blocks of 16 tokens while the six prompts (1 to 150 tokens) each generate 40:
  // preemption, then recomputation of the latent and indexer keys.
  const int64_t block_bytes = 16 * (3 * ((32 + 8) * 2 + 16 * 2));
  MakeEngine(/*max_batch_tokens=*/16, /*cache_bytes=*/14 * block_bytes);
  std::vector<std::unique_ptr<Collector>> collectors;
  for (const Golden& g : goldens_) {
    collectors.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(engine_->Submit(Greedy(g.prompt, 40), collectors.back()->Callback()).ok());
  }
  for (size_t i = 0; i < goldens_.size(); ++i) {
    collectors[i]->Wait();
    const std::vector<int32_t> tokens = collectors[i]->tokens();
    ASSERT_EQ(tokens.size(), 40u);
    // The reference's 8 greedy steps are a prefix of what the engine generated.
    EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + 8), goldens_[i].greedy)
        << "prompt " << i;
  }
  const CacheStats stats = engine_->GetLoad().cache;
  EXPECT_GT(stats.preemptions, 0);
  EXPECT_EQ(stats.blocks_used, 0);
}

TEST_F(DsaEngineTest, PrefixCacheHitsReuseTheIndexerKeys) {
  MakeEngine();
  const Golden& g = goldens_.back();  // 150 tokens: 9 full blocks of 16 can be shared.
  for (const int64_t cached : {0, 144}) {
    Collector c;
    ASSERT_TRUE(engine_->Submit(Greedy(g.prompt, g.greedy.size()), c.Callback()).ok());
    EXPECT_EQ(c.Wait().cached_prompt_tokens, cached);
    EXPECT_EQ(c.tokens(), g.greedy) << "cached " << cached;
  }
}

// An FP8 latent cache with sparse attention (the indexer keys stay bf16): the same bytes
// hold 84 bytes a token and layer where bf16 takes 112 (tiny-v32: latent 32 + 4-byte
// scale + k_pe 8 in bf16, indexer key 16 in bf16), and the long prompt, cut into sparse
// chunks, is served. Its logits' drift is checked in dsa_golden_test.
// Per token and layer tiny-v32 caches a latent of 32 + 8 values and an indexer key of 16:
// 80 + 32 bytes in bf16; 52 + 32 with an FP8 latent; 52 + 20 with FP8 keys too (the
// default with an FP8 latent).
TEST_F(DsaEngineTest, Fp8CacheHoldsMoreTokensAndServesSparseChunks) {
  struct Run {
    CacheDType latent;
    std::optional<CacheDType> index;  // Unset: follows the latent.
    const char* want_index;
    int64_t bytes_per_layer;
  };
  for (const Run& run : {Run{CacheDType::kBF16, std::nullopt, "bf16", 112},
                         Run{CacheDType::kFp8E4M3, CacheDType::kBF16, "bf16", 84},
                         Run{CacheDType::kFp8E4M3, std::nullopt, "fp8_e4m3", 72},
                         Run{CacheDType::kBF16, CacheDType::kFp8E4M3, "fp8_e4m3", 100}}) {
    SCOPED_TRACE(::testing::Message()
                 << CacheDTypeName(run.latent) << " latent, " << run.want_index << " keys");
    MakeEngine(/*max_batch_tokens=*/32, /*cache_bytes=*/1 << 20, run.latent, false, run.index);
    EXPECT_EQ(engine_->info().index_key_dtype, run.want_index);
    EXPECT_EQ(engine_->info().kv_bytes_per_token, 3 * run.bytes_per_layer);
    EXPECT_EQ(engine_->GetLoad().cache.blocks_total, (1 << 20) / (16 * 3 * run.bytes_per_layer));
    // The 150-token prompt in 32-token chunks: sparse from the first chunk past index_topk.
    Collector c;
    ASSERT_TRUE(engine_->Submit(Greedy(goldens_.back().prompt, 8), c.Callback()).ok());
    c.Wait();
    EXPECT_EQ(c.tokens().size(), 8u);
    if (run.latent == CacheDType::kBF16 && !run.index.has_value()) {
      EXPECT_EQ(c.tokens(), goldens_.back().greedy);
    }
    EXPECT_EQ(engine_->GetLoad().cache.blocks_used, 0);
  }
}

TEST_F(DsaEngineTest, IndexerWatchReportsEveryLayerOnce) {
  MakeEngine();
  const Golden& g = goldens_.back();  // 150 tokens: sparse.
  GenerationRequest r = Greedy(g.prompt, 3);
  r.indexer_watch_begin = 40;
  r.indexer_watch_end = 60;
  Collector c;
  ASSERT_TRUE(engine_->Submit(r, c.Callback()).ok());
  const GenerationOutput end = c.Wait();
  ASSERT_EQ(end.indexer_recall.size(), 3u);  // One per layer, first token only.
  for (size_t l = 0; l < end.indexer_recall.size(); ++l) {
    EXPECT_EQ(end.indexer_recall[l].layer, static_cast<int>(l));
    EXPECT_EQ(end.indexer_recall[l].watched, 20);
    EXPECT_LE(end.indexer_recall[l].selected, 16);  // At most index_topk of them.
  }
  Collector plain;
  ASSERT_TRUE(engine_->Submit(Greedy(g.prompt, 1), plain.Callback()).ok());
  EXPECT_TRUE(plain.Wait().indexer_recall.empty());
}

}  // namespace
}  // namespace mla
