// The device draw's rule and slices (kernels/draw_rule.h) replayed on the CPU the way
// DrawKernel runs them (slice sums, an exclusive scan over the slices, a walk of every
// slice that can hold the crossing, the lowest id found, the last kept token when none)
// must draw the host sampler's token, seed for seed; the GPU test checks the kernel itself.
#include "engine/backend/cuda/kernels/draw_rule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "engine/sampling/rng.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/top_k.h"

namespace mla::cuda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// DrawKernel's steps, one thread after another.
int32_t ReplayDraw(std::span<const float> x, const DrawRow& d) {
  const int64_t vocab = static_cast<int64_t>(x.size());
  std::vector<double> slice(kDrawThreads), before(kDrawThreads);
  int64_t last = -1;
  for (int t = 0; t < kDrawThreads; ++t) {
    slice[t] = DrawSliceSum(x.data(), DrawSliceBegin(vocab, t), DrawSliceEnd(vocab, t), d, &last);
  }
  double total = 0.0;
  for (int t = 0; t < kDrawThreads; ++t) {
    before[t] = total;
    total += slice[t];
  }
  const double target = d.u * total;
  int64_t first = -1;
  for (int t = 0; t < kDrawThreads; ++t) {
    if (!(slice[t] > 0.0 && before[t] + slice[t] > target)) continue;
    const int64_t found = DrawSliceWalk(x.data(), DrawSliceBegin(vocab, t), DrawSliceEnd(vocab, t),
                                        d, before[t], target);
    if (found >= 0 && (first < 0 || found < first)) first = found;
  }
  return static_cast<int32_t>(first >= 0 ? first : std::max<int64_t>(last, 0));
}

SamplingParams Params(float temperature, float top_p = 1.0f, float min_p = 0.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

TEST(DrawRuleTest, RankKeyIsTheHostSamplersKey) {
  Rng gen(3);
  std::vector<float> values = {0.0f, -0.0f, kNaN, kInf, -kInf, 1e-40f, -1e-40f, 1.0f, -1.0f};
  for (int i = 0; i < 200; ++i) values.push_back(static_cast<float>(gen.NextDouble() * 20 - 10));
  for (size_t i = 0; i < values.size(); ++i) {
    for (int32_t id : {0, 7, 129279}) {
      EXPECT_EQ(DrawRankKey(values[i], id), RankKey(values[i], id)) << values[i] << " id " << id;
    }
  }
}

TEST(DrawRuleTest, SlicesCoverTheRowInOrder) {
  for (int64_t vocab : {1, 2, 255, 256, 257, 1000, 129280}) {
    int64_t next = 0;
    for (int t = 0; t < kDrawThreads; ++t) {
      const int64_t begin = DrawSliceBegin(vocab, t), end = DrawSliceEnd(vocab, t);
      if (begin >= vocab) {
        EXPECT_LE(end, begin) << "vocab " << vocab << " t " << t;  // Empty.
        continue;
      }
      EXPECT_EQ(begin, next) << "vocab " << vocab << " t " << t;
      EXPECT_GT(end, begin);
      next = end;
    }
    EXPECT_EQ(next, vocab);
  }
}

// Rows of several shapes and sizes (fewer tokens than threads, one token, a vocabulary's
// worth), every filter, many seeds: the replayed kernel draws Sample's token and the
// request's generator advances by one output, as in Sample.
TEST(DrawRuleTest, ReplayedKernelDrawsTheHostSamplersToken) {
  Rng gen(17);
  int draws = 0, undecided = 0;
  for (int64_t vocab : {1, 3, 255, 256, 257, 5000, 32003}) {
    for (int shape = 0; shape < 4; ++shape) {
      std::vector<float> logits(static_cast<size_t>(vocab));
      for (float& x : logits) x = static_cast<float>(gen.NextDouble() * 6.0 - 3.0);
      if (shape >= 1) {  // A peaked head.
        for (int i = 0; i < 5; ++i) logits[gen.Next() % vocab] += 8.0f + static_cast<float>(i);
      }
      if (shape == 2) {  // NaN, -inf and ties.
        for (int64_t i = 0; i < vocab; i += 5) logits[i] = kNaN;
        for (int64_t i = 2; i < vocab; i += 9) logits[i] = -kInf;
        for (int64_t i = 3; i < vocab; i += 11) logits[i] = 2.5f;
      }
      if (shape == 3 && vocab > 1) {  // -0 against +0 at the top.
        for (float& x : logits) x = -std::fabs(x) - 0.25f;
        logits[0] = -0.0f;
        logits[vocab - 1] = 0.0f;
      }
      const std::span<const float> row(logits);
      float max = -kInf;
      for (float x : logits) max = std::max(max, SortKey(x));
      if (!std::isfinite(max)) continue;  // The backend samples such a row on the host.
      for (const SamplingParams& p :
           {Params(1.0f), Params(0.6f, 0.9f), Params(1.5f, 1.0f, 0.05f), Params(0.8f, 0.7f, 0.2f),
            Params(3.0f, 0.5f), Params(1.0f, 0.999f)}) {
        double total = 0.0;  // Sample's sum, in id order.
        for (float x : logits) total += std::exp((SortKey(x) - max) / p.temperature);
        const std::vector<int32_t> ids = TopKIndices(row, 256);
        std::vector<float> values;
        for (int32_t id : ids) values.push_back(logits[static_cast<size_t>(id)]);
        const std::optional<uint64_t> boundary =
            TopPBoundaryOfCandidates(ids, values, vocab, max, total, p);
        if (!boundary.has_value()) {
          ++undecided;  // The backend samples such a row on the host.
          continue;
        }
        for (uint64_t seed = 0; seed < 12; ++seed) {
          Rng host(seed), device(seed);
          DrawRow d;
          d.temperature = p.temperature;
          d.min_p = p.min_p;
          d.max = max;
          d.boundary = *boundary;
          d.u = device.NextDouble();
          const absl::StatusOr<int32_t> want = Sample(row, p, host);
          ASSERT_TRUE(want.ok()) << want.status();
          ASSERT_EQ(ReplayDraw(row, d), *want)
              << "vocab " << vocab << " shape " << shape << " T " << p.temperature << " top_p "
              << p.top_p << " min_p " << p.min_p << " seed " << seed;
          EXPECT_EQ(host.state(), device.state());
          ++draws;
        }
      }
    }
  }
  EXPECT_GT(draws, 1500);
  EXPECT_GT(undecided, 0);
}

}  // namespace
}  // namespace mla::cuda
