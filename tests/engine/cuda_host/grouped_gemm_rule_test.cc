// The grouped expert GEMM's tiling and lane arithmetic (kernels/grouped_gemm_rule.h)
// replayed on the CPU CTA by CTA, warp by warp and lane by lane, the way GroupedGemmKernel
// runs them (lane sums added up where the kernel's warp sum does it), must compute every
// routed row's product once against a naive double-precision one and touch nothing else;
// and host/moe_plan.h's UseGroupedExperts must take the kernel only for what it can run.
// The GPU test compares the kernel itself with the per-expert cuBLASLt path.
#include "engine/backend/cuda/kernels/grouped_gemm_rule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "engine/backend/cuda/host/moe_plan.h"
#include "engine/backend/cuda/kernels/grouped_gemm.h"

namespace mla::cuda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Launch {
  int64_t rows = 0, n = 0, k = 0, x_stride = 0, y_stride = 0;
  std::vector<float> x;
  std::vector<int32_t> offsets;
  std::vector<GroupedWeight> weights;
  std::vector<float> y;
};

// GroupedGemmKernel's grid and loops on one thread; returns how often each y element was
// stored.
std::vector<int> Replay(Launch& l) {
  std::vector<int> stores(l.y.size(), 0);
  const int experts = static_cast<int>(l.weights.size());
  for (int e = 0; e < experts; ++e) {
    const int64_t begin = std::max<int64_t>(0, l.offsets[e]);
    const int64_t end = std::min<int64_t>(l.rows, l.offsets[e + 1]);
    for (int64_t tile = 0; tile < GroupedColumnTiles(l.n); ++tile) {
      for (int warp = 0; warp < kGroupedWarps; ++warp) {
        const int64_t col0 = GroupedFirstColumn(tile, warp);
        if (begin >= end || col0 >= l.n) continue;
        const int cols = static_cast<int>(std::min<int64_t>(kGroupedCols, l.n - col0));
        for (int64_t row0 = begin; row0 < end; row0 += kGroupedRows) {
          const int rows = static_cast<int>(std::min<int64_t>(kGroupedRows, end - row0));
          float sum[kGroupedRows][kGroupedCols] = {};
          for (int lane = 0; lane < 32; ++lane) {
            float acc[kGroupedRows][kGroupedCols];
            GroupedLanePartial(l.x.data(), l.x_stride, row0, rows, l.weights[e], col0, cols, l.k,
                               lane, acc);
            for (int r = 0; r < kGroupedRows; ++r) {
              for (int c = 0; c < kGroupedCols; ++c) {
                sum[r][c] += acc[r][c];
                // Outside the tile's rows and columns nothing is read: acc stays exactly 0
                // (a poisoned row read there would make it NaN).
                if (r >= rows || c >= cols) {
                  EXPECT_EQ(acc[r][c], 0.0f) << "row " << row0 + r << " col " << col0 + c;
                }
              }
            }
          }
          for (int lane = 0; lane < 32; ++lane) {
            const int r = lane / kGroupedCols, c = lane % kGroupedCols;
            if (r >= rows || c >= cols) continue;
            const size_t at = static_cast<size_t>((row0 + r) * l.y_stride + col0 + c);
            l.y[at] = GroupedLaneResult(sum, lane);
            ++stores[at];
          }
        }
      }
    }
  }
  return stores;
}

// Random experts with the given row counts (a count may be 0), weights in bf16 or fp32
// with NaN in their row padding and in a spare row past the last, x and y with NaN in
// their padding and in a spare row past the last routed one.
struct Case {
  std::vector<int32_t> counts;
  int64_t n, k;
  bool bf16;
  bool paired = false;  // even strides, so that bf16 weights with an even k read pairs
};

class GroupedGemmRuleTest : public ::testing::TestWithParam<Case> {};

TEST_P(GroupedGemmRuleTest, ReplayMatchesNaiveProductAndStoresEachRoutedElementOnce) {
  const Case& tc = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(tc.n * 131 + tc.k));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Launch l;
  l.n = tc.n;
  l.k = tc.k;
  l.x_stride = tc.k + (tc.paired ? 2 : 3);
  l.y_stride = tc.n + 2;
  l.offsets = {0};
  for (int32_t c : tc.counts) l.offsets.push_back(l.offsets.back() + c);
  l.rows = l.offsets.back();
  const int64_t stored_rows = l.rows + 1;  // a poisoned spare row
  l.x.assign(static_cast<size_t>(stored_rows * l.x_stride), kNaN);
  for (int64_t r = 0; r < l.rows; ++r) {
    for (int64_t i = 0; i < l.k; ++i) l.x[r * l.x_stride + i] = dist(rng);
  }
  l.y.assign(static_cast<size_t>(stored_rows * l.y_stride), kNaN);
  const int64_t w_stride = tc.k + (tc.paired ? 4 : 5);
  std::vector<std::vector<float>> w_f32(tc.counts.size());
  std::vector<std::vector<bf16_t>> w_bf16(tc.counts.size());
  for (size_t e = 0; e < tc.counts.size(); ++e) {
    w_f32[e].assign(static_cast<size_t>((tc.n + 1) * w_stride), kNaN);
    w_bf16[e].assign(w_f32[e].size(), FloatToBf16(kNaN));
    for (int64_t j = 0; j < tc.n; ++j) {
      for (int64_t i = 0; i < tc.k; ++i) {
        const float v = dist(rng);
        w_bf16[e][j * w_stride + i] = FloatToBf16(v);
        w_f32[e][j * w_stride + i] = tc.bf16 ? Bf16ToFloat(FloatToBf16(v)) : v;
      }
    }
    GroupedWeight g;
    g.stride = w_stride;
    if (tc.bf16) {
      g.bf16 = w_bf16[e].data();
    } else {
      g.f32 = w_f32[e].data();
    }
    l.weights.push_back(g);
  }
  ASSERT_EQ(GroupedPaired(l.x.data(), l.x_stride, l.weights[0], l.k),
            tc.paired && tc.bf16 && tc.k % 2 == 0)
      << "the case runs the walk it is meant to";
  const std::vector<int> stores = Replay(l);

  for (size_t e = 0; e < tc.counts.size(); ++e) {
    for (int64_t r = l.offsets[e]; r < l.offsets[e + 1]; ++r) {
      for (int64_t j = 0; j < tc.n; ++j) {
        double want = 0.0;
        for (int64_t i = 0; i < tc.k; ++i) {
          want += static_cast<double>(l.x[r * l.x_stride + i]) * w_f32[e][j * w_stride + i];
        }
        const size_t at = static_cast<size_t>(r * l.y_stride + j);
        ASSERT_EQ(stores[at], 1) << "expert " << e << " row " << r << " col " << j;
        // fp32 sums of k products of magnitude <= 1.
        EXPECT_NEAR(l.y[at], want, 1e-6 * static_cast<double>(tc.k) + 1e-6)
            << "expert " << e << " row " << r << " col " << j;
      }
    }
  }
  // Padding columns and the spare row were never stored (they still hold NaN).
  for (int64_t r = 0; r < stored_rows; ++r) {
    for (int64_t j = 0; j < l.y_stride; ++j) {
      if (r < l.rows && j < tc.n) continue;
      const size_t at = static_cast<size_t>(r * l.y_stride + j);
      EXPECT_EQ(stores[at], 0) << "row " << r << " col " << j;
      EXPECT_TRUE(std::isnan(l.y[at]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GroupedGemmRuleTest,
    ::testing::Values(
        // One row, one column, one reduction element.
        Case{{1}, 1, 1, true},
        // Empty experts around full passes and tails of 8 rows; columns off the 16-column
        // tile and off the 4-column warp share; k below, at and above a lane stride.
        Case{{0, 8, 0, 9, 17, 1}, 24, 31, true}, Case{{3, 0, 0, 16}, 17, 32, false},
        Case{{5, 7}, 5, 33, true}, Case{{0, 0, 40}, 33, 100, false},
        // tiny-v3's experts (8 wide) and a V2-Lite-like hidden size with decode rows.
        Case{{2, 1, 0, 3, 4, 0, 1, 1}, 8, 64, true}, Case{{1, 2, 1, 0, 2}, 48, 2048, true},
        // The paired walk: k below, at and above a pass of 64, V2-Lite's widths; an odd k
        // and fp32 weights stay scalar even with even strides.
        Case{{0, 8, 0, 9, 17, 1}, 24, 30, true, true}, Case{{3, 0, 40}, 17, 64, true, true},
        Case{{5, 7}, 5, 130, true, true}, Case{{1, 2, 1, 0, 2}, 48, 2048, true, true},
        Case{{2, 1, 0, 3}, 24, 1408, true, true}, Case{{4, 4}, 9, 33, true, true},
        Case{{4, 4}, 9, 34, false, true}));

// Two experts sharing one all-ones fp32 weight [n, k], dense x and y of `rows` rows, y
// poisoned.
Launch OnesLaunch(int64_t n, int64_t k, int64_t rows, std::vector<int32_t> offsets,
                  std::vector<float>& w) {
  Launch l;
  l.n = n;
  l.k = k;
  l.x_stride = k;
  l.y_stride = n;
  l.rows = rows;
  l.offsets = std::move(offsets);
  w.assign(static_cast<size_t>(n * k), 1.0f);
  l.weights = {GroupedWeight{nullptr, w.data(), k}, GroupedWeight{nullptr, w.data(), k}};
  l.x.assign(static_cast<size_t>(rows * k), 0.0f);
  l.y.assign(static_cast<size_t>(std::max<int64_t>(rows, 1) * n), kNaN);
  return l;
}

TEST(GroupedGemmRuleTest, NoExpertRowsStoresNothing) {
  std::vector<float> w;
  Launch l = OnesLaunch(7, 5, 0, {0, 0, 0}, w);
  for (int s : Replay(l)) EXPECT_EQ(s, 0);
}

TEST(GroupedGemmRuleTest, OffsetsPastTheRowsAreClamped) {
  // A corrupt plan must not make the kernel read or write past `rows`.
  std::vector<float> w;
  Launch l = OnesLaunch(4, 3, 2, {0, 1, 9}, w);
  l.x = {1, 2, 3, 4, 5, 6};
  const std::vector<int> stores = Replay(l);
  for (int s : stores) EXPECT_EQ(s, 1);
  EXPECT_FLOAT_EQ(l.y[0], 6.0f);
  EXPECT_FLOAT_EQ(l.y[7], 15.0f);
}

TEST(GroupedGemmRuleTest, ParamsChecksNameTheField) {
  float f[4];
  int32_t offsets[3] = {0, 1, 2};
  GroupedWeight weights[2];
  GroupedGemmParams p;
  p.num_experts = 2;
  p.rows = 2;
  p.n = 4;
  p.k = 3;
  p.x = f;
  p.x_stride = 3;
  p.offsets = offsets;
  p.weights = weights;
  p.y = f;
  p.y_stride = 4;
  EXPECT_TRUE(ValidateGroupedGemmParams(p).ok());
  auto refused = [](GroupedGemmParams q, const char* field) {
    const absl::Status s = ValidateGroupedGemmParams(q);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  };
  GroupedGemmParams q = p;
  q.num_experts = 0;
  refused(q, "num_experts");
  q = p;
  q.num_experts = 65536;
  refused(q, "num_experts");
  q = p;
  q.k = 0;
  refused(q, "k >= 1");
  q = p;
  q.x_stride = 2;
  refused(q, "x_stride");
  q = p;
  q.y_stride = 3;
  refused(q, "y_stride");
  q = p;
  q.offsets = nullptr;
  refused(q, "offsets is null");
  q = p;
  q.weights = nullptr;
  refused(q, "weights is null");
  q = p;
  q.rows = 0;
  q.x = nullptr;
  q.y = nullptr;
  EXPECT_TRUE(ValidateGroupedGemmParams(q).ok()) << "no rows, nothing read";
}

// Experts of V2-Lite's shape pattern: gate and up [inter, hidden], down [hidden, inter].
std::vector<ExpertTensors> Experts(int count, int64_t hidden, int64_t inter, DType dtype) {
  static float storage;
  std::vector<ExpertTensors> experts(static_cast<size_t>(count));
  for (ExpertTensors& e : experts) {
    e.gate = Tensor{&storage, dtype, inter, hidden, hidden};
    e.up = Tensor{&storage, dtype, inter, hidden, hidden};
    e.down = Tensor{&storage, dtype, hidden, inter, inter};
  }
  return experts;
}

TEST(UseGroupedExpertsTest, TakesUniformBf16OrF32ExpertsUpToTheLimit) {
  const auto bf16 = Experts(64, 2048, 1408, DType::kBF16);
  EXPECT_TRUE(UseGroupedExperts(bf16, 2048, 6, GroupedExperts::kAuto));
  EXPECT_TRUE(UseGroupedExperts(bf16, 2048, kGroupedMaxPairs, GroupedExperts::kAuto));
  EXPECT_FALSE(UseGroupedExperts(bf16, 2048, kGroupedMaxPairs + 1, GroupedExperts::kAuto));
  EXPECT_TRUE(UseGroupedExperts(bf16, 2048, kGroupedMaxPairs + 1, GroupedExperts::kAlways));
  EXPECT_FALSE(UseGroupedExperts(bf16, 2048, 6, GroupedExperts::kNever));
  EXPECT_TRUE(UseGroupedExperts(Experts(8, 64, 24, DType::kF32), 64, 9, GroupedExperts::kAuto));
}

TEST(UseGroupedExpertsTest, RefusesWhatTheKernelCannotRun) {
  EXPECT_FALSE(UseGroupedExperts({}, 64, 3, GroupedExperts::kAlways)) << "no experts";
  EXPECT_FALSE(
      UseGroupedExperts(Experts(4, 64, 24, DType::kF8E4M3), 64, 3, GroupedExperts::kAlways))
      << "fp8 weights";
  EXPECT_FALSE(UseGroupedExperts(Experts(4, 64, 24, DType::kBF16), 32, 3, GroupedExperts::kAlways))
      << "hidden differs from the activations'";
  auto mixed = Experts(4, 64, 24, DType::kBF16);
  mixed[2].down.dtype = DType::kF32;
  EXPECT_FALSE(UseGroupedExperts(mixed, 64, 3, GroupedExperts::kAlways)) << "mixed dtypes";
  auto ragged = Experts(4, 64, 24, DType::kBF16);
  ragged[1].gate.rows = ragged[1].up.rows = 16;
  ragged[1].down.cols = 16;
  EXPECT_FALSE(UseGroupedExperts(ragged, 64, 3, GroupedExperts::kAlways)) << "ragged inter";
  auto unloaded = Experts(4, 64, 24, DType::kBF16);
  unloaded[3].up.data = nullptr;
  EXPECT_FALSE(UseGroupedExperts(unloaded, 64, 3, GroupedExperts::kAlways)) << "null weight";
}

TEST(UseGroupedExpertsTest, ParsesTheEnvironmentValues) {
  EXPECT_EQ(ParseGroupedExperts("auto").value(), GroupedExperts::kAuto);
  EXPECT_EQ(ParseGroupedExperts("always").value(), GroupedExperts::kAlways);
  EXPECT_EQ(ParseGroupedExperts("never").value(), GroupedExperts::kNever);
  for (const char* bad : {"", "Always", "on", "never "}) {
    const absl::StatusOr<GroupedExperts> mode = ParseGroupedExperts(bad);
    EXPECT_EQ(mode.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(mode.status().message().find("expected auto, always or never"), std::string::npos);
  }
}

}  // namespace
}  // namespace mla::cuda
