#include "client/bench/stats.h"

#include <gtest/gtest.h>

#include <vector>

namespace mla::bench {
namespace {

TEST(PercentileTest, EmptyIsZero) { EXPECT_EQ(Percentile({}, 50), 0.0); }

TEST(PercentileTest, SingleSampleIsEveryPercentile) {
  const std::vector<double> one = {7.5};
  for (double p : {0.0, 1.0, 50.0, 99.0, 100.0}) EXPECT_EQ(Percentile(one, p), 7.5) << p;
}

TEST(PercentileTest, InterpolatesBetweenClosestRanks) {
  // Position h = p/100 * (n - 1) over {1, 2, 3, 4}.
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);   // h = 1.5
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);   // h = 2.7
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);  // h = 2.97
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4.0);
}

TEST(PercentileTest, MatchesNumpyOnOneToHundred) {
  // numpy.percentile(range(1, 101), [50, 90, 99]) == [50.5, 90.1, 99.01].
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_NEAR(Percentile(v, 50), 50.5, 1e-9);
  EXPECT_NEAR(Percentile(v, 90), 90.1, 1e-9);
  EXPECT_NEAR(Percentile(v, 99), 99.01, 1e-9);
}

TEST(PercentileTest, ExactRankNeedsNoInterpolation) {
  // n = 11: p10 falls exactly on the second sample.
  std::vector<double> v;
  for (int i = 0; i <= 10; ++i) v.push_back(i * i);
  EXPECT_DOUBLE_EQ(Percentile(v, 10), 1.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 25.0);
}

TEST(PercentileTest, ClampsOutOfRangePercentiles) {
  const std::vector<double> v = {3, 5};
  EXPECT_EQ(Percentile(v, -10), 3.0);
  EXPECT_EQ(Percentile(v, 150), 5.0);
}

TEST(SummarizeTest, SortsAndSummarizes) {
  const Summary s = Summarize({4, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 4.0);
  EXPECT_DOUBLE_EQ(s.p50, 2.5);
  EXPECT_DOUBLE_EQ(s.p90, 3.7);
  EXPECT_DOUBLE_EQ(s.p99, 3.97);
}

TEST(SummarizeTest, EmptyIsAllZero) {
  const Summary s = Summarize({});
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.mean, 0.0);
  EXPECT_EQ(s.p99, 0.0);
  EXPECT_EQ(s.max, 0.0);
}

}  // namespace
}  // namespace mla::bench
