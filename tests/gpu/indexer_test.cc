// DeepSeek-V3.2's lightning indexer kernels (engine/backend/cuda/kernels/indexer.h) on
// their own:
// - the selection on chosen scores (ties, NaN, −0, infinities, values that differ only in
//   their last bits, rows shorter than the top-k and far longer) against a sort on the
//   host, with every scratch entry past a row's view poisoned with +inf;
// - the tensor-core scores in row tiles and multi-chunk CTAs, on exact integer inputs:
//   every entry equal to the float64 score, bit-equal to one row and one chunk per CTA,
//   and nothing written past a row's view.
// Skips without a usable CUDA device; tests/engine/cuda_emu runs it on the CPU emulator.
#include "engine/backend/cuda/kernels/indexer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/gpu/cuda_test_util.h"

namespace mla::cuda {
namespace {

using testing::Download;
using testing::Upload;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The order the selection ranks scores by: NaN below everything, −0 equal to +0.
double RankValue(float f) {
  if (std::isnan(f)) return -std::numeric_limits<double>::infinity();
  if (std::isinf(f) && f < 0) return -std::numeric_limits<double>::max();
  return f == 0.0f ? 0.0 : double{f};
}

// The min(topk, n) best positions (ties: the lower position) in ascending order, then -1.
std::vector<int32_t> HostTopK(const std::vector<float>& scores, int topk) {
  std::vector<int32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return RankValue(scores[a]) > RankValue(scores[b]);
  });
  const size_t n = std::min<size_t>(topk, scores.size());
  std::vector<int32_t> out(order.begin(), order.begin() + static_cast<int64_t>(n));
  std::sort(out.begin(), out.end());
  out.resize(static_cast<size_t>(topk), -1);
  return out;
}

struct SelectRow {
  const char* what;
  int64_t n;  // Visible keys.
  std::vector<float> scores;
};

std::vector<float> Uniform(int64_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Rows for top-k `topk`; every kind of row the selection must get exactly right.
std::vector<SelectRow> SelectRows(int topk) {
  std::vector<SelectRow> rows;
  rows.push_back({"one key", 1, {0.5f}});
  rows.push_back({"fewer keys than topk", std::max(1, topk - 1), {}});
  rows.push_back({"exactly topk keys", topk, {}});
  rows.push_back({"topk + 1 keys", topk + 1, Uniform(topk + 1, 1, -1.0f, 1.0f)});
  rows.push_back({"random", 3 * topk + 37, Uniform(3 * topk + 37, 2, -4.0f, 4.0f)});
  rows.push_back({"long and random", 5000, Uniform(5000, 3, 0.0f, 1.0f)});
  // Long enough that even top 2,048 splits (IndexerSelectSegments).
  rows.push_back({"longer, positive and tied", 20000, Uniform(20000, 8, 0.0f, 1.0f)});
  for (size_t i = 0; i < rows.back().scores.size(); i += 5) rows.back().scores[i] = 0.75f;
  {
    std::mt19937 rng(4);
    std::uniform_int_distribution<int> few(0, 3);
    std::vector<float> v(2000);
    for (float& x : v) x = static_cast<float>(few(rng));  // About 500 keys per value.
    rows.push_back({"four values, heavy ties", 2000, v});
  }
  rows.push_back({"all equal", 1500, std::vector<float>(1500, 2.5f)});
  {
    // Values that differ only in their lowest bits: every radix pass narrows.
    std::vector<float> v(1200);
    float x = 1.0f;
    for (float& y : v) {
      y = x;
      x = std::nextafter(x, 2.0f);
    }
    std::shuffle(v.begin(), v.end(), std::mt19937(5));
    rows.push_back({"adjacent floats", 1200, v});
  }
  {
    std::vector<float> v = Uniform(900, 6, -1.0f, 1.0f);
    for (size_t i = 0; i < v.size(); i += 7) v[i] = kNaN;
    for (size_t i = 3; i < v.size(); i += 11) v[i] = (i % 2 == 0) ? 0.0f : -0.0f;
    v[5] = kInf;
    v[6] = -kInf;
    v[800] = kInf;
    rows.push_back({"NaN, signed zeros and infinities", 900, v});
  }
  {
    std::vector<float> v(700, kNaN);
    v[100] = -0.0f;
    v[650] = 0.0f;
    rows.push_back({"nearly all NaN", 700, v});
  }
  {
    std::vector<float> v = Uniform(1000, 7, -1.0f, 0.0f);
    for (size_t i = 0; i < v.size(); i += 3) v[i] = -0.5f;  // A tie at a negative score.
    rows.push_back({"negative, tied", 1000, v});
  }
  for (SelectRow& r : rows) {
    if (r.scores.empty()) r.scores = Uniform(r.n, static_cast<uint32_t>(r.n), -1.0f, 1.0f);
  }
  return rows;
}

TEST(IndexerCudaTest, SelectionEqualsAHostSortOnChosenScores) {
  MLA_SKIP_WITHOUT_CUDA();
  for (const int topk : {1, 7, 64, 2048}) {
    SCOPED_TRACE(::testing::Message() << "topk " << topk);
    const std::vector<SelectRow> rows = SelectRows(topk);
    const int64_t num_rows = static_cast<int64_t>(rows.size());
    int64_t stride = 0;
    for (const SelectRow& r : rows) stride = std::max(stride, r.n + 3);
    // One sequence per step row: row r sees keys 0 .. n − 1 (q_pos0 = n − 1). The step's
    // first kSkipped rows belong to another launch, so first_row must be honoured.
    constexpr int64_t kSkipped = 2;
    std::vector<int32_t> q_pos0(kSkipped, 0), cu_seqlens_q, row_seq;
    std::vector<float> scores(static_cast<size_t>(num_rows * stride), kInf);
    for (int64_t r = 0; r < num_rows; ++r) {
      q_pos0.push_back(static_cast<int32_t>(rows[r].n - 1));
      std::copy(rows[r].scores.begin(), rows[r].scores.end(), scores.begin() + r * stride);
    }
    for (int64_t r = 0; r <= num_rows + kSkipped; ++r)
      cu_seqlens_q.push_back(static_cast<int32_t>(r));
    for (int64_t r = 0; r < num_rows + kSkipped; ++r) row_seq.push_back(static_cast<int32_t>(r));
    DeviceBuffer d_pos0 = Upload(q_pos0), d_cu = Upload(cu_seqlens_q), d_seq = Upload(row_seq);
    DeviceBuffer d_scores = Upload(scores);
    DeviceBuffer d_selected = Upload(std::vector<int32_t>((num_rows + kSkipped) * topk, 7777));
    IndexerF32Params p;
    p.num_rows = num_rows;
    p.first_row = kSkipped;
    p.heads = 1;
    p.dim = 16;
    p.block_size = 16;
    p.topk = topk;
    p.q_pos0 = d_pos0.as<int32_t>();
    p.cu_seqlens_q = d_cu.as<int32_t>();
    p.row_seq = d_seq.as<int32_t>();
    p.scores = d_scores.as<float>();
    p.scores_stride = stride;
    p.selected = d_selected.as<int32_t>();
    // One CTA per row, then split into segments whose candidates are merged. Every scratch
    // byte 0x7f: an entry never written reads as present (position 0x7f7f7f7f) with a
    // huge score (3.4e38), so neither a candidate left unwritten nor an absent one counted
    // goes unnoticed.
    const int segments = IndexerSelectSegments(num_rows, stride, topk);
    ASSERT_GT(segments, 1);
    DeviceBuffer scratch =
        testing::Zeros(static_cast<size_t>(IndexerSelectScratchBytes(num_rows, stride, topk)));
    MLA_ASSERT_OK(scratch.Fill(0x7f));
    for (const bool split : {false, true}) {
      SCOPED_TRACE(split ? ::testing::Message() << segments << " segments a row"
                         : ::testing::Message() << "one CTA a row");
      p.select_scratch = split ? scratch.data() : nullptr;
      MLA_ASSERT_OK(d_selected.Fill(0xff));
      MLA_ASSERT_OK(LaunchIndexerSelect(p, nullptr));
      MLA_ASSERT_OK(DeviceSynchronize());
      const std::vector<int32_t> got = Download<int32_t>(d_selected);
      for (int64_t i = 0; i < kSkipped * topk; ++i) ASSERT_EQ(got[i], -1) << "entry " << i;
      for (int64_t r = 0; r < num_rows; ++r) {
        const std::vector<int32_t> want = HostTopK(rows[r].scores, topk);
        for (int k = 0; k < topk; ++k) {
          ASSERT_EQ(got[(kSkipped + r) * topk + k], want[k])
              << rows[r].what << " (" << rows[r].n << " keys), entry " << k;
        }
      }
    }
  }
}

TEST(IndexerCudaTest, SplitSelectionRule) {
  // Few rows over many keys split; many rows, or rows seeing under 8 · topk keys, do not.
  EXPECT_EQ(IndexerSelectSegments(1, 131072, 2048), 16);
  EXPECT_EQ(IndexerSelectSegments(64, 131072, 2048), 16);
  EXPECT_EQ(IndexerSelectSegments(kIndexerSplitSelectMaxRows + 1, 131072, 2048), 1);
  EXPECT_EQ(IndexerSelectSegments(1, 8 * 2048 - 1, 2048), 1);
  EXPECT_EQ(IndexerSelectSegments(1, 8 * 2048, 2048), 2);
  EXPECT_EQ(IndexerSelectSegments(1, 1 << 30, 2048), kIndexerMaxSelectSegments);
  EXPECT_EQ(IndexerSelectScratchBytes(3, 131072, 2048), 3 * 16 * 2048 * 8);
  EXPECT_EQ(IndexerSelectScratchBytes(300, 131072, 2048), 0);
}

// A step of three sequences: a 9-row prefill chunk over a 100-key prefix, one decode row
// over 300 keys and a 6-row prefill from position 0, so that row tiles mix sequences and
// rows see different numbers of keys; 16-token blocks, shuffled.
struct ScoreStep {
  std::vector<int32_t> q_pos0 = {100, 299, 0}, cu_seqlens_q = {0, 9, 10, 16};
  std::vector<int32_t> row_seq, table;
  int64_t rows = 16, batch = 3, max_blocks = 20, num_blocks = 64, stride = 320;
};

ScoreStep MakeScoreStep(int block_size) {
  ScoreStep st;
  for (int32_t s = 0; s < st.batch; ++s) {
    for (int32_t r = st.cu_seqlens_q[s]; r < st.cu_seqlens_q[s + 1]; ++r) st.row_seq.push_back(s);
  }
  std::vector<int32_t> ids(static_cast<size_t>(st.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(9));
  st.table.assign(static_cast<size_t>(st.batch * st.max_blocks), 0);
  int next = 0;
  for (int64_t s = 0; s < st.batch; ++s) {
    const int64_t len = st.q_pos0[s] + (st.cu_seqlens_q[s + 1] - st.cu_seqlens_q[s]);
    for (int64_t b = 0; b * block_size < len; ++b) st.table[s * st.max_blocks + b] = ids[next++];
  }
  return st;
}

TEST(IndexerCudaTest, TensorCoreScoresInRowTilesAreExactAndBitEqual) {
  MLA_SKIP_WITHOUT_CUDA();
  constexpr int kBlock = 16, kTopK = 24;
  for (const auto& [heads, dim] : {std::pair<int, int>{16, 32}, {20, 128}}) {
    SCOPED_TRACE(::testing::Message() << heads << " heads of " << dim);
    const ScoreStep st = MakeScoreStep(kBlock);
    // Small integers, exact in bf16 and in every product and sum: each score is exact.
    std::mt19937 rng(static_cast<uint32_t>(dim));
    std::uniform_int_distribution<int> small(-3, 3);
    std::vector<bf16_t> keys(static_cast<size_t>(st.num_blocks * kBlock * dim));
    for (bf16_t& k : keys) k = FloatToBf16(static_cast<float>(small(rng)));
    std::vector<float> q(static_cast<size_t>(st.rows * heads * dim)), w(st.rows * heads);
    for (float& x : q) x = static_cast<float>(small(rng));
    for (float& x : w) x = static_cast<float>(small(rng));
    DeviceBuffer d_keys = Upload(keys), d_table = Upload(st.table), d_pos0 = Upload(st.q_pos0);
    DeviceBuffer d_cu = Upload(st.cu_seqlens_q), d_seq = Upload(st.row_seq), d_q = Upload(q);
    DeviceBuffer d_w = Upload(w);
    IndexerF32Params p;
    p.num_rows = st.rows;
    p.heads = heads;
    p.dim = dim;
    p.block_size = kBlock;
    p.max_blocks = st.max_blocks;
    p.topk = kTopK;
    p.scale = 0.25f;
    p.weight_scale = 0.5f;
    p.keys = d_keys.as<bf16_t>();
    p.block_table = d_table.as<int32_t>();
    p.q_pos0 = d_pos0.as<int32_t>();
    p.cu_seqlens_q = d_cu.as<int32_t>();
    p.row_seq = d_seq.as<int32_t>();
    p.q = d_q.as<float>();
    p.w = d_w.as<float>();
    p.scores_stride = st.stride;
    ASSERT_TRUE(IndexerUsesTensorCores(p));

    std::vector<float> baseline_scores;
    std::vector<int32_t> baseline_selected;
    struct Tiling {
      int row_tile, chunks;
    };
    for (const Tiling& tiling :
         {Tiling{1, 1}, Tiling{4, 1}, Tiling{4, 3}, Tiling{3, 5}, Tiling{2, 0}, Tiling{1, 4}}) {
      SCOPED_TRACE(::testing::Message()
                   << "row tile " << tiling.row_tile << ", chunks per CTA " << tiling.chunks);
      DeviceBuffer d_scores = Upload(std::vector<float>(st.rows * st.stride, kNaN));
      DeviceBuffer d_selected = Upload(std::vector<int32_t>(st.rows * kTopK, 7777));
      p.scores = d_scores.as<float>();
      p.selected = d_selected.as<int32_t>();
      p.row_tile = tiling.row_tile;
      p.key_chunks_per_cta = tiling.chunks;
      MLA_ASSERT_OK(LaunchIndexerTopK(p, nullptr));
      MLA_ASSERT_OK(DeviceSynchronize());
      const std::vector<float> scores = Download<float>(d_scores);
      const std::vector<int32_t> selected = Download<int32_t>(d_selected);
      for (int64_t r = 0; r < st.rows; ++r) {
        const int32_t s = st.row_seq[r];
        const int64_t visible = st.q_pos0[s] + (r - st.cu_seqlens_q[s]) + 1;
        for (int64_t pos = 0; pos < st.stride; ++pos) {
          const float got = scores[r * st.stride + pos];
          if (pos >= visible) {
            ASSERT_TRUE(std::isnan(got)) << "row " << r << " wrote past its view at " << pos;
            continue;
          }
          const int64_t slot =
              int64_t{st.table[s * st.max_blocks + pos / kBlock]} * kBlock + pos % kBlock;
          double want = 0.0;
          for (int h = 0; h < heads; ++h) {
            double dot = 0.0;
            for (int i = 0; i < dim; ++i) {
              dot += double{q[(r * heads + h) * dim + i]} * Bf16ToFloat(keys[slot * dim + i]);
            }
            want += 0.5 * w[r * heads + h] * std::max(0.25 * dot, 0.0);
          }
          ASSERT_EQ(double{got}, want) << "row " << r << " position " << pos;
        }
      }
      if (baseline_scores.empty()) {
        baseline_scores = scores;
        baseline_selected = selected;
        continue;
      }
      for (size_t i = 0; i < scores.size(); ++i) {
        ASSERT_EQ(std::memcmp(&scores[i], &baseline_scores[i], sizeof(float)), 0) << "score " << i;
      }
      ASSERT_EQ(selected, baseline_selected);
    }
  }
}

TEST(IndexerCudaTest, RejectsRowTilesOutsideTheKernelsLimits) {
  IndexerF32Params p;
  p.heads = 4;
  p.dim = 32;
  p.block_size = 16;
  p.topk = 4;
  for (const int tile : {0, kIndexerMaxRowTile + 1}) {
    p.row_tile = tile;
    const absl::Status s = LaunchIndexerTopK(p, nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("row tile"), std::string::npos) << s;
  }
  p.row_tile = 1;
  p.key_chunks_per_cta = -1;
  EXPECT_EQ(LaunchIndexerTopK(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mla::cuda
