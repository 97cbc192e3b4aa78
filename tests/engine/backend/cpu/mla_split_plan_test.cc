#include "engine/backend/cpu/mla_split_plan.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace mla::cpu {
namespace {

int64_t BruteForcePairs(const MlaSeqWork& s, int64_t r0, int64_t r1, int64_t k0, int64_t k1) {
  int64_t pairs = 0;
  for (int64_t i = r0; i < r1; ++i) {
    for (int64_t k = k0; k < k1; ++k) pairs += (k <= s.q_pos0 + i) ? 1 : 0;
  }
  return pairs;
}

TEST(MlaVisiblePairsTest, MatchesBruteForce) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    const MlaSeqWork s{static_cast<int64_t>(rng() % 20), static_cast<int64_t>(rng() % 30)};
    const int64_t r0 = rng() % 21;
    const int64_t r1 = rng() % 21;
    const int64_t k0 = rng() % 55;
    const int64_t k1 = rng() % 55;
    ASSERT_EQ(MlaVisiblePairs(s, r0, r1, k0, k1), BruteForcePairs(s, r0, r1, k0, k1))
        << s.n_q << " " << s.q_pos0 << " rows " << r0 << ".." << r1 << " keys " << k0 << ".." << k1;
  }
}

// Checks every invariant the attention driver relies on.
void CheckPlan(const std::vector<MlaSeqWork>& seqs, const MlaSplitOptions& options,
               const MlaSplitPlan& plan) {
  // Every visible (seq, row, key) pair exactly once.
  std::vector<std::vector<std::vector<int>>> seen(seqs.size());
  for (size_t j = 0; j < seqs.size(); ++j) {
    seen[j].assign(seqs[j].n_q, std::vector<int>(seqs[j].q_pos0 + seqs[j].n_q, 0));
  }
  std::vector<int> partial_used(plan.num_partial_rows, 0);
  int64_t max_rows = 0;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const MlaWorkItem& item = plan.items[i];
    if (i > 0) {
      EXPECT_GE(plan.items[i - 1].cost, item.cost) << "not sorted by cost";
    }
    const MlaSeqWork& s = seqs[item.seq];
    ASSERT_LT(item.row_begin, item.row_end);
    ASSERT_LE(item.row_end, s.n_q);
    ASSERT_LT(item.key_begin, item.key_end);
    ASSERT_LE(item.key_end, s.q_pos0 + item.row_end) << "reads keys no row of it sees";
    EXPECT_EQ(item.cost,
              MlaVisiblePairs(s, item.row_begin, item.row_end, item.key_begin, item.key_end));
    max_rows = std::max<int64_t>(max_rows, item.row_end - item.row_begin);
    for (int64_t r = item.row_begin; r < item.row_end; ++r) {
      for (int64_t k = item.key_begin; k < std::min(item.key_end, s.q_pos0 + r + 1); ++k) {
        seen[item.seq][r][k]++;
      }
      if (item.partial_row >= 0) {
        const int64_t pr = item.partial_row + (r - item.row_begin);
        ASSERT_LT(pr, plan.num_partial_rows);
        partial_used[pr]++;
      }
    }
  }
  EXPECT_EQ(max_rows, plan.max_item_rows);
  for (size_t j = 0; j < seqs.size(); ++j) {
    for (int64_t r = 0; r < seqs[j].n_q; ++r) {
      for (int64_t k = 0; k <= seqs[j].q_pos0 + r; ++k) {
        ASSERT_EQ(seen[j][r][k], 1) << "seq " << j << " row " << r << " key " << k;
      }
    }
  }
  for (int used : partial_used) EXPECT_EQ(used, 1);
  // Combine groups: splits stored in key order, contiguous, covering the group's keys.
  int64_t combine_rows = 0;
  for (const MlaCombineGroup& g : plan.combines) {
    combine_rows += g.row_end - g.row_begin;
    EXPECT_GE(g.num_splits, 2);
    if (!options.split_kv) ADD_FAILURE() << "split although split_kv is off";
    int64_t next_key = 0;
    for (int s = 0; s < g.num_splits; ++s) {
      const int64_t prow = g.partial_row + s * (g.row_end - g.row_begin);
      auto it = std::find_if(plan.items.begin(), plan.items.end(),
                             [&](const MlaWorkItem& item) { return item.partial_row == prow; });
      ASSERT_NE(it, plan.items.end());
      EXPECT_EQ(it->seq, g.seq);
      EXPECT_EQ(it->row_begin, g.row_begin);
      EXPECT_EQ(it->row_end, g.row_end);
      EXPECT_EQ(it->key_begin, next_key);
      if (s + 1 < g.num_splits) {
        EXPECT_EQ(it->key_end % options.key_align, 0);
      }
      next_key = it->key_end;
    }
    EXPECT_EQ(next_key, seqs[g.seq].q_pos0 + g.row_end);
  }
  EXPECT_EQ(combine_rows, plan.combine_rows);
}

TEST(PlanMlaSplitsTest, RandomBatchesAreCoveredExactlyOnce) {
  std::mt19937 rng(5);
  MlaSplitPlan plan;  // reused across calls, as the attention does
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<MlaSeqWork> seqs(1 + rng() % 5);
    for (MlaSeqWork& s : seqs) {
      s.n_q = rng() % 4 == 0 ? 0 : 1 + rng() % 24;
      s.q_pos0 = rng() % 3 == 0 ? 0 : rng() % 400;
    }
    MlaSplitOptions options;
    options.num_workers = 1 + rng() % 4;
    options.items_per_worker = 1 + rng() % 3;
    options.split_kv = rng() % 4 != 0;
    options.min_keys_per_split = 16 + rng() % 64;
    options.key_align = 1 + rng() % 48;
    PlanMlaSplits(seqs, options, &plan);
    CheckPlan(seqs, options, plan);
  }
}

TEST(PlanMlaSplitsTest, LongDecodeIsSplitOverWorkers) {
  MlaSplitOptions options;
  options.num_workers = 2;
  options.items_per_worker = 2;
  options.key_align = 48;
  MlaSplitPlan plan;
  const std::vector<MlaSeqWork> seqs = {{1, 32767}};
  PlanMlaSplits(seqs, options, &plan);
  CheckPlan(seqs, options, plan);
  ASSERT_EQ(plan.combines.size(), 1u);
  EXPECT_EQ(plan.combines[0].num_splits, 4);
  EXPECT_EQ(plan.items.size(), 4u);
  for (const MlaWorkItem& item : plan.items) {
    EXPECT_NEAR(item.key_end - item.key_begin, 8192, 48);
  }
}

TEST(PlanMlaSplitsTest, NoSplitWhenShortOrDisabled) {
  MlaSplitOptions options;
  options.num_workers = 8;
  MlaSplitPlan plan;
  // 300 keys: below min_keys_per_split, not worth merging.
  PlanMlaSplits(std::vector<MlaSeqWork>{{1, 299}}, options, &plan);
  EXPECT_EQ(plan.items.size(), 1u);
  EXPECT_TRUE(plan.combines.empty());
  EXPECT_EQ(plan.items[0].partial_row, -1);
  // Disabled: one item per row group, however long.
  options.split_kv = false;
  PlanMlaSplits(std::vector<MlaSeqWork>{{1, 100000}}, options, &plan);
  EXPECT_EQ(plan.items.size(), 1u);
  EXPECT_EQ(plan.num_partial_rows, 0);
}

TEST(PlanMlaSplitsTest, ManySequencesNeedNoSplit) {
  // 64 decodes of similar length already give every worker enough items.
  std::vector<MlaSeqWork> seqs;
  for (int j = 0; j < 64; ++j) seqs.push_back({1, 4000 + 10 * j});
  MlaSplitOptions options;
  options.num_workers = 4;
  MlaSplitPlan plan;
  PlanMlaSplits(seqs, options, &plan);
  CheckPlan(seqs, options, plan);
  EXPECT_EQ(plan.items.size(), 64u);
  EXPECT_TRUE(plan.combines.empty());
}

TEST(PlanMlaSplitsTest, PrefillChunkIsCutIntoBalancedRowGroups) {
  const std::vector<MlaSeqWork> seqs = {{512, 0}};
  MlaSplitOptions options;
  options.num_workers = 2;
  options.items_per_worker = 2;
  MlaSplitPlan plan;
  PlanMlaSplits(seqs, options, &plan);
  CheckPlan(seqs, options, plan);
  const int64_t total = MlaVisiblePairs(seqs[0], 0, 512, 0, 512);
  const int64_t target = (total + 3) / 4;
  EXPECT_GE(plan.items.size(), 4u);
  EXPECT_LE(plan.items.size(), 6u);
  EXPECT_TRUE(plan.combines.empty()) << "rows alone give enough parallelism";
  for (const MlaWorkItem& item : plan.items) EXPECT_LE(item.cost, target);
}

TEST(PlanMlaSplitsTest, EmptyInputs) {
  MlaSplitPlan plan;
  PlanMlaSplits({}, MlaSplitOptions{}, &plan);
  EXPECT_TRUE(plan.items.empty());
  PlanMlaSplits(std::vector<MlaSeqWork>{{0, 0}, {0, 17}}, MlaSplitOptions{}, &plan);
  EXPECT_TRUE(plan.items.empty());
  EXPECT_EQ(plan.num_partial_rows, 0);
}

}  // namespace
}  // namespace mla::cpu
