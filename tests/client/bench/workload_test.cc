#include "client/bench/workload.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace mla::bench {
namespace {

using Kind = LengthDistribution::Kind;
using ::testing::HasSubstr;

constexpr int kSamples = 4000;

LengthDistribution Uniform(int min, int max) { return {Kind::kUniform, 0, min, max}; }

WorkloadOptions Options(LengthDistribution prompt, LengthDistribution output, uint64_t seed) {
  WorkloadOptions o;
  o.prompt_len = prompt;
  o.output_len = output;
  o.vocab_size = 97;
  o.seed = seed;
  return o;
}

TEST(LengthDistributionTest, FixedIsExact) {
  std::mt19937_64 rng(1);
  const LengthDistribution d{Kind::kFixed, 42};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleLength(d, rng), 42);
}

TEST(LengthDistributionTest, UniformStaysInBoundsAndCoversThem) {
  std::mt19937_64 rng(2);
  const LengthDistribution d = Uniform(10, 20);
  std::vector<int> counts(21, 0);
  double sum = 0;
  for (int i = 0; i < kSamples; ++i) {
    const int n = SampleLength(d, rng);
    ASSERT_GE(n, 10);
    ASSERT_LE(n, 20);
    ++counts[n];
    sum += n;
  }
  for (int n = 10; n <= 20; ++n) EXPECT_GT(counts[n], 0) << n;
  EXPECT_NEAR(sum / kSamples, 15.0, 0.3);
}

TEST(LengthDistributionTest, LongContextMixesTwoBands) {
  std::mt19937_64 rng(3);
  LengthDistribution d{Kind::kLongContext, 0, 100, 8000, 0.25};
  int long_count = 0;
  for (int i = 0; i < kSamples; ++i) {
    const int n = SampleLength(d, rng);
    const bool in_short = n >= 100 && n <= 1000;  // [min, max / 8]
    const bool in_long = n >= 4000 && n <= 8000;  // [max / 2, max]
    ASSERT_TRUE(in_short || in_long) << n;
    long_count += in_long;
  }
  // Binomial(4000, 0.25): standard deviation 0.0068 of the fraction; allow 5 sigma.
  EXPECT_NEAR(static_cast<double>(long_count) / kSamples, 0.25, 0.035);
}

TEST(LengthDistributionTest, LongContextExtremeFractions) {
  std::mt19937_64 rng(4);
  LengthDistribution all_short{Kind::kLongContext, 0, 10, 800, 0.0};
  LengthDistribution all_long{Kind::kLongContext, 0, 10, 800, 1.0};
  for (int i = 0; i < 200; ++i) {
    EXPECT_LE(SampleLength(all_short, rng), 100);
    EXPECT_GE(SampleLength(all_long, rng), 400);
  }
}

TEST(LengthDistributionTest, ValidatesBoundsAndNames) {
  EXPECT_FALSE((LengthDistribution{Kind::kFixed, 0}).Validate("x").ok());
  EXPECT_FALSE(Uniform(0, 5).Validate("x").ok());
  EXPECT_FALSE(Uniform(6, 5).Validate("x").ok());
  EXPECT_TRUE(Uniform(5, 5).Validate("x").ok());
  EXPECT_FALSE((LengthDistribution{Kind::kLongContext, 0, 1, 9, 1.5}).Validate("x").ok());
  EXPECT_EQ(*ParseLengthKind("long_context"), Kind::kLongContext);
  EXPECT_EQ(LengthKindName(Kind::kUniform), "uniform");
  EXPECT_THAT(ParseLengthKind("normal").status().message(), HasSubstr("normal"));
}

TEST(WorkloadGeneratorTest, PromptsHaveDrawnLengthsAndIdsInVocabulary) {
  auto gen = WorkloadGenerator::Create(Options(Uniform(5, 50), Uniform(1, 9), 7));
  ASSERT_TRUE(gen.ok()) << gen.status();
  for (uint64_t i = 0; i < 300; ++i) {
    const WorkloadRequest r = gen->Make(i);
    EXPECT_EQ(r.index, i);
    ASSERT_GE(r.prompt.size(), 5u);
    ASSERT_LE(r.prompt.size(), 50u);
    ASSERT_GE(r.output_len, 1);
    ASSERT_LE(r.output_len, 9);
    for (int32_t id : r.prompt) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, 97);
    }
  }
}

TEST(WorkloadGeneratorTest, DeterministicBySeedAndIndependentOfOrder) {
  const WorkloadOptions o = Options(Uniform(5, 50), Uniform(1, 9), 11);
  auto a = WorkloadGenerator::Create(o);
  auto b = WorkloadGenerator::Create(o);
  ASSERT_TRUE(a.ok() && b.ok());
  // b asks in reverse order; each request must still match.
  std::vector<WorkloadRequest> reversed;
  for (int i = 19; i >= 0; --i) reversed.push_back(b->Make(i));
  for (uint64_t i = 0; i < 20; ++i) {
    const WorkloadRequest ra = a->Make(i);
    EXPECT_EQ(ra.prompt, reversed[19 - i].prompt) << i;
    EXPECT_EQ(ra.output_len, reversed[19 - i].output_len) << i;
  }
  auto other = WorkloadGenerator::Create(Options(Uniform(5, 50), Uniform(1, 9), 12));
  ASSERT_TRUE(other.ok());
  int differing = 0;
  for (uint64_t i = 0; i < 20; ++i) differing += other->Make(i).prompt != a->Make(i).prompt;
  EXPECT_GE(differing, 19);
  EXPECT_NE(a->Make(0).prompt, a->Make(1).prompt);
}

TEST(WorkloadGeneratorTest, SharedPrefixStartsEveryPrompt) {
  WorkloadOptions o = Options(Uniform(16, 40), LengthDistribution{Kind::kFixed, 4}, 5);
  o.shared_prefix_len = 16;
  auto gen = WorkloadGenerator::Create(o);
  ASSERT_TRUE(gen.ok()) << gen.status();
  ASSERT_EQ(gen->shared_prefix().size(), 16u);
  int tails_differ = 0;
  for (uint64_t i = 0; i < 50; ++i) {
    const WorkloadRequest r = gen->Make(i);
    ASSERT_GE(r.prompt.size(), 16u);
    EXPECT_TRUE(
        std::equal(gen->shared_prefix().begin(), gen->shared_prefix().end(), r.prompt.begin()));
    const WorkloadRequest next = gen->Make(i + 1);
    if (r.prompt.size() > 16 && next.prompt.size() > 16 && r.prompt[16] != next.prompt[16]) {
      ++tails_differ;
    }
  }
  EXPECT_GT(tails_differ, 20);  // After the prefix, prompts are random again.
}

TEST(WorkloadGeneratorTest, RejectsInconsistentOptions) {
  WorkloadOptions o = Options(Uniform(8, 32), LengthDistribution{Kind::kFixed, 16}, 1);
  o.shared_prefix_len = 9;  // Longer than the shortest prompt.
  EXPECT_THAT(WorkloadGenerator::Create(o).status().message(), HasSubstr("shared_prefix_len"));
  o.shared_prefix_len = 8;
  EXPECT_TRUE(WorkloadGenerator::Create(o).ok());
  o.max_context = 47;  // 32 + 16 does not fit.
  EXPECT_THAT(WorkloadGenerator::Create(o).status().message(), HasSubstr("context"));
  o.max_context = 48;
  EXPECT_TRUE(WorkloadGenerator::Create(o).ok());
  o.vocab_size = 0;
  EXPECT_FALSE(WorkloadGenerator::Create(o).ok());
}

TEST(PoissonArrivalsTest, GapsAreExponentialWithMeanOneOverRate) {
  constexpr int kGaps = 20000;
  PoissonArrivals arrivals(/*rate=*/20.0, /*seed=*/9);
  double sum = 0;
  double sum_sq = 0;
  for (int i = 0; i < kGaps; ++i) {
    const double g = arrivals.NextGapSeconds();
    ASSERT_GT(g, 0.0);
    sum += g;
    sum_sq += g * g;
  }
  const double mean = sum / kGaps;
  const double stddev = std::sqrt(sum_sq / kGaps - mean * mean);
  // Standard error of the mean is 0.05 / sqrt(20000) = 0.00035; allow 3%.
  EXPECT_NEAR(mean, 0.05, 0.0015);
  // An exponential's standard deviation equals its mean (coefficient of variation 1).
  EXPECT_NEAR(stddev / mean, 1.0, 0.05);
}

TEST(PoissonArrivalsTest, ReproducibleBySeed) {
  PoissonArrivals a(5.0, 3);
  PoissonArrivals b(5.0, 3);
  PoissonArrivals c(5.0, 4);
  bool any_differs = false;
  for (int i = 0; i < 10; ++i) {
    const double ga = a.NextGapSeconds();
    EXPECT_EQ(ga, b.NextGapSeconds());
    any_differs |= ga != c.NextGapSeconds();
  }
  EXPECT_TRUE(any_differs);
}

}  // namespace
}  // namespace mla::bench
