// Deterministic simulation of the scheduler with a fake model: each step "computes" the
// scheduled chunks and samples a fixed token, so only scheduling decisions are tested.
#include "engine/scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/time/clock.h"

namespace mla {
namespace {

constexpr int kBlockSize = 4;

class SchedulerTest : public ::testing::Test {
 protected:
  void Make(int32_t num_blocks, SchedulerConfig config, bool prefix_caching = false) {
    prefix_caching_ = prefix_caching;
    blocks_ = std::make_unique<BlockManager>(
        BlockManagerConfig{num_blocks, kBlockSize, 1, prefix_caching});
    scheduler_ = std::make_unique<Scheduler>(config, blocks_.get());
  }

  // `first_token`: where the prompt's run of consecutive ids starts (by default a range
  // of its own per sequence, so that prompts share nothing).
  Sequence* Add(const std::string& id, int prompt_len, int max_new, int priority = 0,
                int first_token = -1, const std::string& salt = "") {
    GenerationRequest r;
    r.request_id = id;
    r.prompt.resize(prompt_len);
    std::iota(r.prompt.begin(), r.prompt.end(),
              first_token >= 0 ? first_token : 100 * static_cast<int>(by_id_.size()));
    r.priority = priority;
    r.cache_salt = salt;
    auto seq = std::make_unique<Sequence>(
        std::move(r), [](GenerationOutput) {}, kBlockSize, absl::Now());
    seq->max_total = prompt_len + max_new;
    Sequence* raw = seq.get();
    by_id_[id] = raw;
    scheduler_->Add(std::move(seq));
    return raw;
  }

  // One step of the fake model; returns the batch. Finished sequences are dropped.
  std::vector<ScheduledChunk> Step() {
    std::vector<ScheduledChunk> batch = scheduler_->Schedule();
    for (const ScheduledChunk& c : batch) {
      Sequence& s = *c.seq;
      EXPECT_GE(s.table.capacity(), s.num_computed + c.num_tokens) << s.request.request_id;
      s.num_computed += c.num_tokens;
      // As the engine does: full computed blocks join the prefix cache.
      if (prefix_caching_) {
        blocks_->CommitFullBlocks(s.table, s.tokens, s.num_computed, s.request.cache_salt, nullptr);
      }
      if (s.uncomputed() == 0) {
        s.tokens.push_back(7);
        ++generated_[s.request.request_id];
        if (s.num_tokens() >= s.max_total) {
          s.done = true;
          finished_.push_back(s.request.request_id);
        }
      }
    }
    for (auto& done : scheduler_->TakeDone()) {
      preemptions_[done->request.request_id] = done->preemptions;  // Outlives the sequence.
      by_id_.erase(done->request.request_id);
    }
    return batch;
  }

  int64_t Total(const std::vector<ScheduledChunk>& batch) {
    int64_t n = 0;
    for (const auto& c : batch) n += c.num_tokens;
    return n;
  }

  bool prefix_caching_ = false;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, Sequence*> by_id_;
  std::map<std::string, int> generated_;
  std::map<std::string, int> preemptions_;  // Of finished sequences.
  std::vector<std::string> finished_;
};

TEST_F(SchedulerTest, BudgetDecodesFirstAndChunking) {
  Make(1000, {.max_batch_tokens = 16, .max_running = 8});
  Add("short", 3, 20);
  Step();  // "short" prefilled (3 tokens) and sampled.
  Add("long", 100, 2);
  int steps = 0;
  while (by_id_.contains("long") && by_id_["long"]->prefilling()) {
    std::vector<ScheduledChunk> batch = Step();
    ++steps;
    EXPECT_LE(Total(batch), 16);
    // The decode comes first and the long prompt gets the rest of the budget.
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_EQ(batch[0].seq->request.request_id, "short");
    EXPECT_EQ(batch[0].num_tokens, 1);
    EXPECT_EQ(batch[1].num_tokens, std::min<int64_t>(15, 100 - 15 * (steps - 1)));
  }
  EXPECT_EQ(steps, 7);  // ceil(100 / 15)
}

TEST_F(SchedulerTest, PrioritiesThenFifo) {
  Make(1000, {.max_batch_tokens = 64, .max_running = 1});
  Add("low", 2, 1, 0);
  Add("high-a", 2, 1, 5);
  Add("high-b", 2, 1, 5);
  Add("mid", 2, 1, 2);
  while (!scheduler_->empty()) Step();
  EXPECT_EQ(finished_, (std::vector<std::string>{"high-a", "high-b", "mid", "low"}));
}

TEST_F(SchedulerTest, StarvationBoundAdmitsTheLongWaitingRequest) {
  Make(1000, {.max_batch_tokens = 64, .max_running = 1, .starvation_steps = 10});
  Add("low", 2, 1, 0);
  // A stream of higher-priority requests, one arriving every step.
  int step = 0;
  for (; step < 100 && by_id_.contains("low"); ++step) {
    Add("hi-" + std::to_string(step), 2, 1, 9);
    Step();
  }
  EXPECT_FALSE(by_id_.contains("low"));
  EXPECT_LE(step, 12);  // Admitted once it has waited starvation_steps steps.
  EXPECT_GT(step, 5);   // ...and not before priority had its say.
}

TEST_F(SchedulerTest, PreemptsLowestPriorityMostRecentAndProtectsThrashers) {
  // 6 blocks of 4 tokens. Three sequences of 4-token prompts grow by decoding.
  Make(6, {.max_batch_tokens = 64, .max_running = 8, .protect_after_preemptions = 2});
  Sequence* a = Add("a", 4, 12, 1);
  Add("b", 4, 12, 1);
  Sequence* c = Add("c", 4, 12, 0);
  Step();  // All three admitted (3 blocks), each sampled one token.
  Step();  // Decodes need a 2nd block each: 6 blocks used.
  EXPECT_EQ(scheduler_->num_preemptions(), 0);
  for (int i = 0; i < 4; ++i) Step();  // Tokens 5..8 fit; token 9 needs a third block.
  Step();
  // The low-priority "c" went first even though "b" was admitted after "a".
  ASSERT_GE(scheduler_->num_preemptions(), 1);
  EXPECT_GE(c->preemptions, 1);
  EXPECT_EQ(a->preemptions, 0);
  while (!scheduler_->empty()) Step();
  EXPECT_EQ(generated_["a"], 12);
  EXPECT_EQ(generated_["b"], 12);
  EXPECT_EQ(generated_["c"], 12);  // Generated tokens kept across preemption.
  EXPECT_EQ(blocks_->stats().blocks_used, 0);
}

TEST_F(SchedulerTest, ProtectedSequenceIsNotChosenWhileOthersExist) {
  Make(8, {.max_batch_tokens = 64, .max_running = 8, .protect_after_preemptions = 1});
  Sequence* old = Add("old", 4, 20, 0);
  Step();
  Add("fresh", 4, 20, 0);
  old->preemptions = 1;  // Pretend "old" was preempted before: it is protected now.
  while (!scheduler_->empty()) Step();
  EXPECT_EQ(preemptions_["old"], 1);  // Never preempted again.
  EXPECT_GE(preemptions_["fresh"], 1);
  EXPECT_EQ(generated_["old"], 20);
  EXPECT_EQ(generated_["fresh"], 20);
}

TEST_F(SchedulerTest, ExtractReleasesBlocks) {
  Make(100, {.max_batch_tokens = 64});
  Add("x", 10, 5);
  Add("y", 10, 5);
  Step();
  EXPECT_GT(blocks_->stats().blocks_used, 0);
  EXPECT_NE(scheduler_->Extract("x"), nullptr);
  EXPECT_NE(scheduler_->Extract("y"), nullptr);
  EXPECT_EQ(scheduler_->Extract("y"), nullptr);
  EXPECT_EQ(blocks_->stats().blocks_used, 0);
  EXPECT_TRUE(scheduler_->empty());
}

// A prompt that shares full blocks with a running prefill waits for them and then finds
// them in the prefix cache; prompts that share less than a block, another salt's, or
// nothing run at once, and a deferred one holds back nobody behind it.
TEST_F(SchedulerTest, SharedPrefixWaitsForTheRunningPrefillThenHitsTheCache) {
  SchedulerConfig config;
  config.max_batch_tokens = 64;
  Make(64, config, /*prefix_caching=*/true);
  Sequence* a = Add("a", 10, 3, 0, /*first_token=*/1);
  Sequence* b = Add("b", 10, 3, 0, 1);                 // Same prompt: 2 full blocks shared.
  Sequence* other = Add("other", 10, 3, 0, 500);       // Shares nothing.
  Sequence* salted = Add("salted", 10, 3, 0, 1, "s");  // Same tokens, another salt.
  Sequence* short_one = Add("short", 3, 3, 0, 1);      // Under one block.
  std::vector<ScheduledChunk> batch = Step();
  auto in = [&](const std::vector<ScheduledChunk>& bt, const Sequence* s) {
    return std::any_of(bt.begin(), bt.end(), [&](const auto& c) { return c.seq == s; });
  };
  EXPECT_TRUE(in(batch, a));
  EXPECT_FALSE(in(batch, b));  // Deferred, and nobody behind it held back:
  EXPECT_TRUE(in(batch, other));
  EXPECT_TRUE(in(batch, salted));
  EXPECT_TRUE(in(batch, short_one));
  batch = Step();
  ASSERT_TRUE(in(batch, b));
  EXPECT_EQ(b->cached_prompt_tokens, 8);  // Two blocks from the cache: 2 tokens computed.
  for (const auto& c : batch) {
    if (c.seq == b) {
      EXPECT_EQ(c.num_tokens, 2);
    }
  }
  EXPECT_EQ(a->cached_prompt_tokens, 0);
  EXPECT_EQ(salted->cached_prompt_tokens, 0);
}

// Passes are capped at max_running a step: with two places, copies of one prompt still
// wait for the first one's blocks and take them from the cache, and the prompt queued
// behind them runs too; everyone finishes.
TEST_F(SchedulerTest, PassesOverACrowdOfCopiesAtMostMaxRunningTimesAStep) {
  SchedulerConfig config;
  config.max_batch_tokens = 64;
  config.max_running = 2;
  Make(64, config, /*prefix_caching=*/true);
  for (const char* id : {"a", "b", "c", "d"}) Add(id, 10, 2, 0, 1);
  Add("other", 10, 2, 0, 500);
  // "a" alone first: b and c are passed over, which uses up the step's two passes.
  EXPECT_EQ(Step().size(), 1u);
  std::vector<ScheduledChunk> second = Step();
  ASSERT_EQ(second.size(), 2u);  // a's decode and b, from the cache.
  EXPECT_EQ(second[1].seq->request.request_id, "b");
  EXPECT_EQ(second[1].seq->cached_prompt_tokens, 8);
  for (int step = 0; step < 40 && finished_.size() < 5; ++step) Step();
  EXPECT_EQ(finished_.size(), 5u);
}

// Without the prefix cache there is nothing to wait for: the same prompts run together.
TEST_F(SchedulerTest, WithoutThePrefixCacheSharedPromptsRunTogether) {
  SchedulerConfig config;
  config.max_batch_tokens = 64;
  Make(64, config, /*prefix_caching=*/false);
  Add("a", 10, 3, 0, 1);
  Add("b", 10, 3, 0, 1);
  EXPECT_EQ(Step().size(), 2u);
}

}  // namespace
}  // namespace mla
