// host/graph_cache.h: when CudaBackend records a decode region, replays it, runs it eagerly
// and destroys a recording, over a sequence of steps and buffer generations.
#include "engine/backend/cuda/host/graph_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

namespace mla::cuda {
namespace {

using Action = StepGraphCache::Action;

StepGraphKey Key(int64_t batch, int64_t table_width = 4) {
  StepGraphKey k;
  k.rows = k.batch = batch;
  k.table_width = table_width;
  return k;
}

// Stand-ins for cudaGraphExec_t handles.
int g_exec[8];

TEST(BlockTableWidthTest, PowersOfTwoFromTheMinimum) {
  EXPECT_EQ(BlockTableWidth(0), kMinBlockTableWidth);
  EXPECT_EQ(BlockTableWidth(1), kMinBlockTableWidth);
  EXPECT_EQ(BlockTableWidth(kMinBlockTableWidth), kMinBlockTableWidth);
  EXPECT_EQ(BlockTableWidth(kMinBlockTableWidth + 1), 2 * kMinBlockTableWidth);
  EXPECT_EQ(BlockTableWidth(2048), 2048);  // 128K tokens of 64-token blocks
  EXPECT_EQ(BlockTableWidth(2049), 4096);
  // Every width holds its blocks and wastes less than half; a decode batch growing one
  // block at a time meets a new width only at powers of two.
  int changes = 0;
  for (int64_t blocks = 1; blocks <= 5000; ++blocks) {
    const int64_t w = BlockTableWidth(blocks);
    ASSERT_GE(w, blocks);
    ASSERT_TRUE(w == kMinBlockTableWidth || w < 2 * blocks) << blocks;
    ASSERT_EQ(w & (w - 1), 0) << blocks;
    changes += w != BlockTableWidth(blocks - 1);
  }
  EXPECT_EQ(changes, 11);  // 8, 16, ..., 8192
}

struct DecodeCounts {
  int eager = 0, record = 0, replay = 0;
  double replayed() const { return static_cast<double>(replay) / (eager + record + replay); }
};

// A decode run as CudaBackend meets it: every sequence grows a token a step, each step is
// planned for the split-KV kernel, keyed and decided as BeginGraphRegion does, and the
// generation moves when the block table's device buffer must grow (its width doubled).
DecodeCounts SimulateDecode(std::vector<int32_t> lens, int steps, int num_sms, int heads) {
  StepGraphCache cache;
  MlaDecodePlanOptions o;
  o.num_sms = num_sms;
  o.num_heads = heads;
  MlaDecodePlan plan;
  DecodeCounts n;
  int64_t generation = 0, table_entries = 0;
  for (int s = 0; s < steps; ++s) {
    int64_t max_blocks = 0;
    for (int32_t& len : lens) {
      ++len;
      max_blocks = std::max<int64_t>(max_blocks, (len + kMlaBlockSize - 1) / kMlaBlockSize);
    }
    o.max_blocks_per_seq = static_cast<int>(BlockTableWidth(max_blocks));
    EXPECT_TRUE(PlanMlaDecode(lens, o, &plan).ok());
    const int64_t entries = static_cast<int64_t>(lens.size()) * o.max_blocks_per_seq;
    if (entries > table_entries) {
      table_entries = entries;
      ++generation;
    }
    const int64_t batch = static_cast<int64_t>(lens.size());
    const StepGraphKey key = DecodeStepKey(batch, batch, max_blocks, &plan, GroupedExperts::kAuto);
    const StepGraphCache::Decision d = cache.Decide(key, generation);
    switch (d.action) {
      case Action::kEager:
        ++n.eager;
        break;
      case Action::kRecord:
        cache.Recorded(key, generation, &g_exec[0]);
        ++n.record;
        break;
      case Action::kReplay:
        ++n.replay;
        break;
    }
  }
  std::printf("decode of %zu sequences, %d steps: %d eager, %d recorded, %d replayed (%.3f)\n",
              lens.size(), steps, n.eager, n.record, n.replay, n.replayed());
  return n;
}

// The key leaves out what moves every step (lengths, the plan's pieces and slot count), so
// a steady decode batch replays nearly every step; H200-like 132 columns of CTAs.
TEST(StepGraphCacheTest, ASteadyDecodeBatchReplaysNearlyEveryStep) {
  std::mt19937 rng(5);
  std::vector<int32_t> lens(16);
  for (int32_t& len : lens) len = 500 + static_cast<int32_t>(rng() % 2500);
  const DecodeCounts batch = SimulateDecode(lens, 2000, 132, 16);
  EXPECT_GE(batch.replayed(), 0.99);
  EXPECT_LE(batch.record, 3);  // the longest sequence crosses at most two widths
  // One sequence from its first token: the plan's part count grows with every block until
  // the GPU's columns are full (132 blocks), each a new key recorded at its second step.
  const DecodeCounts alone = SimulateDecode({0}, 12000, 132, 16);
  EXPECT_GE(alone.replayed(), 0.95);
  // 128 heads take 8 head tiles, so 16 columns fill after 16 blocks.
  EXPECT_GE(SimulateDecode({0}, 12000, 132, 128).replayed(), 0.99);
}

TEST(StepGraphCacheTest, EagerFirstThenRecordThenReplay) {
  StepGraphCache cache;
  EXPECT_EQ(cache.Decide(Key(4), 0).action, Action::kEager) << "first sighting sizes buffers";
  EXPECT_EQ(cache.Decide(Key(4), 0).action, Action::kRecord);
  cache.Recorded(Key(4), 0, &g_exec[0]);
  for (int i = 0; i < 3; ++i) {
    const StepGraphCache::Decision d = cache.Decide(Key(4), 0);
    EXPECT_EQ(d.action, Action::kReplay);
    EXPECT_EQ(d.exec, &g_exec[0]);
    EXPECT_TRUE(d.stale.empty());
  }
  // Any part of the key is a different recording.
  EXPECT_EQ(cache.Decide(Key(4, 8), 0).action, Action::kEager);
  StepGraphKey other_plan = Key(4);
  other_plan.split_kv = true;
  other_plan.plan_parts = 66;
  EXPECT_EQ(cache.Decide(other_plan, 0).action, Action::kEager);
  StepGraphKey other_moe = Key(4);
  other_moe.grouped = GroupedExperts::kNever;
  EXPECT_EQ(cache.Decide(other_moe, 0).action, Action::kEager);
  EXPECT_EQ(cache.Decide(Key(4), 0).action, Action::kReplay);
}

TEST(StepGraphCacheTest, ANewGenerationDestroysTheRecordingAndStartsOver) {
  StepGraphCache cache;
  cache.Decide(Key(2), 0);
  ASSERT_EQ(cache.Decide(Key(2), 0).action, Action::kRecord);
  cache.Recorded(Key(2), 0, &g_exec[1]);
  const StepGraphCache::Decision moved = cache.Decide(Key(2), 1);
  EXPECT_EQ(moved.action, Action::kEager) << "buffers moved: size them again first";
  EXPECT_EQ(moved.stale, std::vector<void*>{&g_exec[1]});
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.Decide(Key(2), 1).action, Action::kRecord);
}

TEST(StepGraphCacheTest, AFailedKeyStaysEagerUntilTheGenerationChanges) {
  StepGraphCache cache;
  cache.Decide(Key(8), 5);
  ASSERT_EQ(cache.Decide(Key(8), 5).action, Action::kRecord);
  cache.Failed(Key(8), 5);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(cache.Decide(Key(8), 5).action, Action::kEager);
  EXPECT_EQ(cache.Decide(Key(8), 6).action, Action::kEager) << "first sighting in gen 6";
  EXPECT_EQ(cache.Decide(Key(8), 6).action, Action::kRecord);
}

TEST(StepGraphCacheTest, PastTheLimitEveryRecordingIsDropped) {
  StepGraphCache cache(2);
  for (int b = 1; b <= 2; ++b) {
    cache.Decide(Key(b), 0);
    ASSERT_EQ(cache.Decide(Key(b), 0).action, Action::kRecord);
    cache.Recorded(Key(b), 0, &g_exec[b]);
  }
  cache.Decide(Key(3), 0);
  StepGraphCache::Decision d = cache.Decide(Key(3), 0);
  EXPECT_EQ(d.action, Action::kRecord);
  std::sort(d.stale.begin(), d.stale.end());
  EXPECT_EQ(d.stale, (std::vector<void*>{&g_exec[1], &g_exec[2]}));
  cache.Recorded(Key(3), 0, &g_exec[3]);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.TakeAll(), std::vector<void*>{&g_exec[3]});
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.Decide(Key(1), 0).action, Action::kRecord) << "key 1 was seen in gen 0";
}

}  // namespace
}  // namespace mla::cuda
