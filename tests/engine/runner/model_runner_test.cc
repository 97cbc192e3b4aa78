// The runner's step contract on the committed tiny model: one Execute runs the forward
// and samples exactly the rows asked for, scores prompt rows, returns the final hidden
// states when asked, and refuses what it cannot do with a status that says why.
#include "engine/runner/model_runner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/sampling/logprobs.h"

namespace mla {
namespace {

RunnerOptions TinyOptions() {
  RunnerOptions o;
  o.model_dir = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
  o.threads = 2;
  o.kv_cache_bytes = 8 << 20;
  o.block_size = 16;
  return o;
}

class ModelRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto runner = ModelRunner::Create(TinyOptions());
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    pool_ = std::make_unique<BlockPool>(runner_->num_cache_blocks());
  }
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<BlockPool> pool_;
};

TEST_F(ModelRunnerTest, PrefillScoresPromptRowsAndSamplesTheLastOne) {
  const std::vector<int32_t> prompt = {5, 17, 42, 8, 99, 3, 61};
  BlockTable table(16);
  ASSERT_TRUE(table.Append(prompt.size(), *pool_).ok());
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  Rng rng(1);
  StepInput in;
  in.chunks.push_back({prompt, 0, &table, /*all_logits=*/true});
  for (size_t j = 0; j + 1 < prompt.size(); ++j) {
    RowSampling r;
    r.row = static_cast<int64_t>(j);
    r.score_token = prompt[j + 1];
    r.top_logprobs = 2;
    in.rows.push_back(r);
  }
  RowSampling last;
  last.row = static_cast<int64_t>(prompt.size()) - 1;
  last.params = &greedy;
  last.rng = &rng;
  last.top_logprobs = 0;
  in.rows.push_back(last);
  in.return_hidden = true;
  absl::StatusOr<StepOutput> out = runner_->Execute(in);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->samples.size(), in.rows.size());
  EXPECT_EQ(out->hidden.size(), prompt.size() * runner_->config().hidden_size);

  // The same step through the model directly: scored logprobs and the greedy token agree.
  cpu::CpuBackend be(2);
  auto model = DeepseekModel::Load(TinyOptions().model_dir, &be);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE(be.AllocateCache(runner_->cache_layout(), runner_->num_cache_blocks()).ok());
  auto logits = (*model)->ForwardToHost(in.chunks);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const int vocab = runner_->config().vocab_size;
  for (size_t j = 0; j + 1 < prompt.size(); ++j) {
    const std::vector<float> lp =
        LogSoftmax(std::span<const float>(logits->data() + j * vocab, vocab));
    ASSERT_TRUE(out->samples[j].has_logprobs);
    EXPECT_EQ(out->samples[j].token, prompt[j + 1]);
    EXPECT_FLOAT_EQ(out->samples[j].logprobs.logprob, lp[prompt[j + 1]]);
    EXPECT_EQ(out->samples[j].logprobs.top.size(), 2u);
  }
  const float* row = logits->data() + (prompt.size() - 1) * vocab;
  EXPECT_EQ(out->samples.back().token, std::max_element(row, row + vocab) - row);
  EXPECT_TRUE(out->samples.back().has_logprobs);
  EXPECT_TRUE(out->samples.back().logprobs.top.empty());
}

TEST_F(ModelRunnerTest, RefusesARowOutsideTheStep) {
  const std::vector<int32_t> prompt = {1, 2, 3};
  BlockTable table(16);
  ASSERT_TRUE(table.Append(prompt.size(), *pool_).ok());
  StepInput in;
  in.chunks.push_back({prompt, 0, &table, /*all_logits=*/false});  // one logits row
  RowSampling r;
  r.row = 1;
  r.score_token = 0;
  in.rows.push_back(r);
  EXPECT_EQ(runner_->Execute(in).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelRunnerTest, ReportsWorkspaceAfterAStep) {
  const std::vector<int32_t> prompt = {4, 4, 4, 4};
  BlockTable table(16);
  ASSERT_TRUE(table.Append(prompt.size(), *pool_).ok());
  StepInput in;
  in.chunks.push_back({prompt, 0, &table, false});
  ASSERT_TRUE(runner_->Execute(in).ok());
  EXPECT_GT(runner_->workspace_bytes(), 0);
  EXPECT_EQ(runner_->device(), "cpu");
  EXPECT_NE(runner_->backend().Describe().find("threads"), std::string::npos);
}

TEST(ModelRunnerCreateTest, UnknownDeviceIsNamed) {
  RunnerOptions o = TinyOptions();
  o.device = "tpu";
  const absl::Status s = ModelRunner::Create(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tpu"), std::string::npos) << s;
}

// With a usable GPU the runner serves on it and names it; without one (no CUDA build, no
// driver, no device) it refuses with UNAVAILABLE saying why, never falling back silently.
TEST(ModelRunnerCreateTest, CudaRunsOnADeviceOrIsRefusedClearly) {
  RunnerOptions o = TinyOptions();
  o.device = "cuda";
  absl::StatusOr<std::unique_ptr<ModelRunner>> runner = ModelRunner::Create(o);
  if (runner.ok()) {
    EXPECT_EQ((*runner)->device().rfind("cuda:", 0), 0u) << (*runner)->device();
    return;
  }
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kUnavailable) << runner.status();
  EXPECT_NE(runner.status().message().find("CUDA"), std::string::npos) << runner.status();
}

TEST(ModelRunnerCreateTest, CacheBudgetBelowOneBlockIsRefused) {
  RunnerOptions o = TinyOptions();
  o.kv_cache_bytes = 1;
  EXPECT_EQ(ModelRunner::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mla
