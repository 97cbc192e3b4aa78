#include "engine/backend/cuda/host/mla_decode_plan.h"

#include <algorithm>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace mla::cuda {
namespace {

int Blocks(int32_t len) { return (len + kMlaBlockSize - 1) / kMlaBlockSize; }

MlaDecodePlanOptions Options(int num_sms, int heads, int s_q = 1, int max_blocks = 4096) {
  MlaDecodePlanOptions o;
  o.num_sms = num_sms;
  o.num_heads = heads;
  o.q_rows_per_seq = s_q;
  o.max_blocks_per_seq = max_blocks;
  return o;
}

// Checks every property the kernel relies on: each (sequence, block) in exactly one piece,
// parts within one block of each other, split indices 0..n-1 in part order matching
// split_offsets, and at most num_parts - 1 split sequences.
void ExpectValidPlan(const std::vector<int32_t>& lens, const MlaDecodePlanOptions& o) {
  MlaDecodePlan plan;
  ASSERT_TRUE(PlanMlaDecode(lens, o, &plan).ok());
  int64_t total = 0;
  for (int32_t len : lens) total += Blocks(len);
  ASSERT_EQ(plan.total_blocks, total);
  const int tiles =
      (o.q_rows_per_seq * o.num_heads + kMlaDecodeRowsPerCta - 1) / kMlaDecodeRowsPerCta;
  ASSERT_EQ(plan.num_head_tiles, tiles);
  const int64_t want_parts =
      std::max<int64_t>(1, std::min<int64_t>(std::max(1, o.num_sms / tiles), total));
  ASSERT_EQ(plan.num_parts, want_parts);
  ASSERT_EQ(plan.parts.size(), static_cast<size_t>(plan.num_parts));
  ASSERT_EQ(plan.split_offsets.size(), lens.size() + 1);

  std::map<std::pair<int, int>, int> covered;  // (seq, block) -> times
  std::vector<int64_t> part_blocks(plan.num_parts, 0);
  std::vector<std::vector<int>> splits(lens.size());
  for (const MlaDecodePiece& piece : ListMlaDecodePieces(plan, lens)) {
    ASSERT_LT(piece.block_begin, piece.block_end);
    ASSERT_LE(piece.block_end, Blocks(lens[piece.seq]));
    for (int b = piece.block_begin; b < piece.block_end; ++b) ++covered[{piece.seq, b}];
    part_blocks[piece.part] += piece.block_end - piece.block_begin;
    splits[piece.seq].push_back(piece.split);
  }
  for (size_t j = 0; j < lens.size(); ++j) {
    for (int b = 0; b < Blocks(lens[j]); ++b) {
      ASSERT_EQ((covered[{static_cast<int>(j), b}]), 1) << "seq " << j << " block " << b;
    }
  }
  ASSERT_EQ(covered.size(), static_cast<size_t>(total));
  if (total > 0) {
    const auto [lo, hi] = std::minmax_element(part_blocks.begin(), part_blocks.end());
    EXPECT_LE(*hi - *lo, 1) << "parts unbalanced";
    EXPECT_GE(*lo, 1) << "an empty part";
  }
  int split_seqs = 0;
  for (size_t j = 0; j < lens.size(); ++j) {
    ASSERT_EQ(plan.NumSplits(j), static_cast<int>(splits[j].size())) << "seq " << j;
    for (size_t s = 0; s < splits[j].size(); ++s) ASSERT_EQ(splits[j][s], static_cast<int>(s));
    if (lens[j] == 0) {
      EXPECT_EQ(plan.NumSplits(j), 0);
    }
    if (plan.NumSplits(j) > 1) ++split_seqs;
  }
  EXPECT_LE(split_seqs, plan.num_parts - 1);
  EXPECT_EQ(plan.num_partial_slots(), plan.split_offsets.back());
  EXPECT_LE(plan.num_partial_slots(), MaxPartialSlots(static_cast<int64_t>(lens.size()), o));
}

TEST(MlaDecodePlanTest, EdgeLengths) {
  for (int32_t len : {0, 1, 63, 64, 65, 127, 128, 129, 4096, 131072}) {
    for (int sms : {1, 7, 132}) {
      for (int heads : {16, 128}) {
        SCOPED_TRACE(testing::Message() << "len " << len << " sms " << sms << " heads " << heads);
        ExpectValidPlan({len}, Options(sms, heads));
        ExpectValidPlan({len, 0, len, 1}, Options(sms, heads));
      }
    }
  }
}

TEST(MlaDecodePlanTest, HugeContext) {
  // 1M tokens: 16384 blocks over 132 parts.
  ExpectValidPlan({1 << 20}, Options(132, 16, 1, 1 << 14));
  ExpectValidPlan({1 << 20, 5, 1 << 19}, Options(132, 128, 2, 1 << 14));
}

TEST(MlaDecodePlanTest, RandomBatches) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> lens(1 + rng() % 40);
    for (int32_t& len : lens) {
      const int kind = rng() % 4;
      len = kind == 0   ? 0
            : kind == 1 ? static_cast<int32_t>(rng() % 130)
                        : static_cast<int32_t>(rng() % 20000);
    }
    const int sms = 1 + rng() % 300;
    const int heads = (rng() % 2) ? 16 : 128;
    const int s_q = 1 + rng() % 3;
    for (int32_t& len : lens) {
      if (len > 0 && len < s_q) len = s_q;  // a sequence holds its s_q query rows
    }
    SCOPED_TRACE(testing::Message() << "trial " << trial);
    ExpectValidPlan(lens, Options(sms, heads, s_q));
  }
}

// The bound the CUDA backend sizes its partial buffers by is reached: two sequences of 7
// blocks over 7 parts of 2 blocks put three part boundaries inside each.
TEST(MlaDecodePlanTest, MaxPartialSlotsIsReached) {
  const MlaDecodePlanOptions o = Options(7, 16);
  MlaDecodePlan plan;
  ASSERT_TRUE(PlanMlaDecode({7 * kMlaBlockSize, 7 * kMlaBlockSize}, o, &plan).ok());
  ASSERT_EQ(plan.num_parts, 7);
  EXPECT_EQ(plan.num_partial_slots(), 8);
  EXPECT_EQ(MaxPartialSlots(2, o), 8);
  // More heads take more head tiles and so fewer columns of parts.
  EXPECT_EQ(MaxPartialSlots(2, Options(132, 128)), 2 + 132 / 8 - 1);
  EXPECT_EQ(MaxPartialSlots(0, Options(1, 16)), 0);
}

TEST(MlaDecodePlanTest, SingleLongSequenceIsSplitOverAllParts) {
  MlaDecodePlan plan;
  // V2-Lite: 16 heads fit one tile, so 132 parts share 2048 blocks (15 or 16 each).
  ASSERT_TRUE(PlanMlaDecode({131072}, Options(132, 16), &plan).ok());
  EXPECT_EQ(plan.num_head_tiles, 1);
  EXPECT_EQ(plan.num_parts, 132);
  EXPECT_EQ(plan.NumSplits(0), 132);
  // V3: 128 heads take 8 tiles, leaving 16 parts.
  ASSERT_TRUE(PlanMlaDecode({131072}, Options(132, 128), &plan).ok());
  EXPECT_EQ(plan.num_head_tiles, 8);
  EXPECT_EQ(plan.num_parts, 16);
  EXPECT_EQ(plan.parts[0].begin_block, 0);
  EXPECT_EQ(plan.parts[0].end_block, 128);
  EXPECT_EQ(plan.parts[15].begin_split, 15);
}

TEST(MlaDecodePlanTest, ShortBatchNeedsNoSplits) {
  MlaDecodePlan plan;
  // Fewer blocks than SMs: one block per part, so only multi-block sequences split.
  ASSERT_TRUE(PlanMlaDecode({64, 1, 0, 63}, Options(132, 16), &plan).ok());
  EXPECT_EQ(plan.num_parts, 3);
  EXPECT_EQ(plan.split_offsets, (std::vector<int32_t>{0, 1, 2, 2, 3}));
}

TEST(MlaDecodePlanTest, AllEmptyGivesOneEmptyPart) {
  MlaDecodePlan plan;
  ASSERT_TRUE(PlanMlaDecode({0, 0, 0}, Options(132, 16), &plan).ok());
  EXPECT_EQ(plan.num_parts, 1);
  EXPECT_LT(plan.parts[0].end_seq, plan.parts[0].begin_seq);
  EXPECT_TRUE(ListMlaDecodePieces(plan, {0, 0, 0}).empty());
  EXPECT_EQ(plan.num_partial_slots(), 0);
  ASSERT_TRUE(PlanMlaDecode({}, Options(132, 16), &plan).ok());
  EXPECT_EQ(plan.split_offsets, std::vector<int32_t>{0});
}

TEST(MlaDecodePlanTest, RejectsBadInput) {
  MlaDecodePlan plan;
  EXPECT_EQ(PlanMlaDecode({-1}, Options(132, 16), &plan).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMlaDecode({65}, Options(132, 16, 1, 1), &plan).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(PlanMlaDecode({64}, Options(132, 16, 1, 1), &plan).ok());
  EXPECT_EQ(PlanMlaDecode({64}, Options(0, 16), &plan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMlaDecode({64}, Options(8, 0), &plan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanMlaDecode({64}, Options(8, 16, 0), &plan).code(),
            absl::StatusCode::kInvalidArgument);
  // A non-empty sequence needs at least s_q tokens (its rows' positions are n - s_q + i).
  EXPECT_EQ(PlanMlaDecode({2, 1}, Options(8, 16, 2), &plan).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(PlanMlaDecode({2, 0}, Options(8, 16, 2), &plan).ok());
}

// A sparse prefill's groups of rows: the largest that fits the budget (bf16 q and output
// per row, the partial slots MaxPartialSlots bounds), one row at the least.
TEST(MlaDecodePlanTest, SparsePrefillGroupsFitTheBudget) {
  constexpr int kLatent = 512, kRope = 64;
  constexpr int64_t kBudget = int64_t{64} << 20;
  for (const int heads : {16, 128}) {
    MlaDecodePlanOptions o;
    o.num_sms = 264;
    o.num_heads = heads;
    o.rows_per_cta = 16;
    o.max_blocks_per_seq = 2048;
    auto bytes = [&](int64_t rows) {
      return rows * heads * (2 * (kLatent + kRope) + 2 * kLatent) +
             MaxPartialSlots(rows, o) * heads * 4 * (kLatent + 1);
    };
    const int64_t g = SparsePrefillGroupRows(kLatent, kRope, o, kBudget);
    EXPECT_LE(bytes(g), kBudget) << heads;
    EXPECT_GT(bytes(g + 1), kBudget) << heads;
  }
  // DeepSeek-V3's 128 heads: about a hundred rows a launch.
  MlaDecodePlanOptions v3;
  v3.num_sms = 264;
  v3.num_heads = 128;
  v3.rows_per_cta = 16;
  v3.max_blocks_per_seq = 2048;
  EXPECT_GT(SparsePrefillGroupRows(kLatent, kRope, v3, kBudget), 50);
  // A budget smaller than one row still gives one.
  EXPECT_EQ(SparsePrefillGroupRows(kLatent, kRope, v3, 1000), 1);
}

}  // namespace
}  // namespace mla::cuda
