#include "engine/sampling/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/sampling/rng.h"
#include "engine/sampling/top_k.h"

namespace mla {
namespace {

using ::testing::ElementsAreArray;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

const std::vector<float> kGoldenLogits = {1.0f, 2.5f, -0.5f, 2.0f, 0.0f, 3.0f, -1.0f, 1.5f};

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f, float min_p = 0.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

std::vector<int32_t> Draws(const std::vector<float>& logits, const SamplingParams& params,
                           uint64_t seed, int n) {
  Rng rng(seed);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<int32_t> t = Sample(logits, params, rng);
    EXPECT_TRUE(t.ok()) << t.status();
    out.push_back(t.ok() ? *t : -1);
  }
  return out;
}

std::vector<double> Frequencies(const std::vector<float>& logits, const SamplingParams& params,
                                uint64_t seed, int n) {
  std::vector<double> freq(logits.size(), 0.0);
  for (int32_t t : Draws(logits, params, seed, n)) freq[t] += 1.0 / n;
  return freq;
}

// Softmax(logits / T) restricted to `keep` (all when empty), in double.
std::vector<double> Probabilities(const std::vector<float>& logits, double temperature,
                                  const std::vector<int>& keep = {}) {
  std::vector<double> p(logits.size(), 0.0);
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!keep.empty() && std::find(keep.begin(), keep.end(), i) == keep.end()) continue;
    p[i] = std::exp(logits[i] / temperature);
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  return p;
}

void ExpectFrequenciesNear(const std::vector<double>& freq, const std::vector<double>& p, int n) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double sigma = std::sqrt(p[i] * (1 - p[i]) / n);
    EXPECT_NEAR(freq[i], p[i], 5 * sigma + 1e-12) << "token " << i;
  }
}

TEST(SampleTest, GreedyIsArgmaxWithLowestIndexOnTiesAndUsesNoRandomness) {
  Rng rng(1);
  const auto before = rng.state();
  EXPECT_EQ(*Sample(kGoldenLogits, Params(0.0f), rng), 5);
  EXPECT_EQ(*Sample(std::vector<float>{1.0f, 4.0f, 2.0f, 4.0f}, Params(0.0f), rng), 1);
  EXPECT_EQ(*Sample(std::vector<float>{-3.0f}, Params(0.0f), rng), 0);
  EXPECT_EQ(rng.state(), before);
}

TEST(SampleTest, NaNLogitsAreNeverChosen) {
  Rng rng(1);
  const std::vector<float> logits = {kNaN, 0.0f, kNaN, -1.0f, kNaN};
  EXPECT_EQ(*Sample(logits, Params(0.0f), rng), 1);
  for (int32_t t : Draws(logits, Params(5.0f), 3, 500)) EXPECT_TRUE(t == 1 || t == 3) << t;
  for (int32_t t : Draws(logits, Params(5.0f, 4, 0.99f), 3, 200)) EXPECT_TRUE(t == 1 || t == 3);
}

TEST(SampleTest, AllNaNOrMinusInfinityIsAnError) {
  Rng rng(1);
  for (const SamplingParams& p : {Params(0.0f), Params(1.0f), Params(1.0f, 2, 0.5f)}) {
    absl::StatusOr<int32_t> t = Sample(std::vector<float>{kNaN, -kInf, kNaN}, p, rng);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(Sample(std::vector<float>{}, Params(1.0f), rng).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SampleTest, PlusInfinityTokensShareAllTheMass) {
  const std::vector<float> logits = {3.0f, kInf, 1e30f, kInf};
  const std::vector<double> freq = Frequencies(logits, Params(1.0f), 8, 4000);
  EXPECT_EQ(freq[0] + freq[2], 0.0);
  EXPECT_NEAR(freq[1], 0.5, 0.05);
  EXPECT_EQ(*Draws(logits, Params(0.0f), 1, 1).begin(), 1);
}

TEST(SampleTest, InvalidParamsAreRejected) {
  Rng rng(1);
  const std::vector<float> logits = {1.0f, 2.0f};
  for (const SamplingParams& p :
       {Params(-1.0f), Params(kNaN), Params(kInf), Params(1.0f, -1), Params(1.0f, 0, 0.0f),
        Params(1.0f, 0, 1.5f), Params(1.0f, 0, kNaN), Params(1.0f, 0, 1.0f, -0.1f),
        Params(1.0f, 0, 1.0f, 1.1f)}) {
    EXPECT_EQ(Sample(logits, p, rng).status().code(), absl::StatusCode::kInvalidArgument)
        << p.temperature << " " << p.top_k << " " << p.top_p << " " << p.min_p;
  }
}

TEST(SampleTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(1000);
  Rng gen(5);
  for (float& x : logits) x = static_cast<float>(gen.NextDouble() * 4.0);
  for (const SamplingParams& p : {Params(1.0f), Params(0.9f, 50, 0.95f, 0.05f)}) {
    EXPECT_EQ(Draws(logits, p, 77, 64), Draws(logits, p, 77, 64));
    EXPECT_NE(Draws(logits, p, 77, 64), Draws(logits, p, 78, 64));
  }
}

// Fixed seed, fixed logits, fixed tokens: pins the stream and the inverse CDF walk.
// Computed independently from the documented algorithm.
TEST(SampleTest, GoldenDraws) {
  EXPECT_THAT(
      Draws(kGoldenLogits, Params(0.8f), 1234, 24),
      ElementsAreArray({1, 5, 5, 5, 1, 5, 5, 1, 5, 5, 5, 1, 1, 5, 3, 5, 5, 7, 7, 5, 5, 1, 3, 1}));
  EXPECT_THAT(
      Draws(kGoldenLogits, Params(0.8f, 3, 0.8f), 99, 24),
      ElementsAreArray({5, 5, 5, 5, 5, 1, 1, 1, 5, 5, 5, 1, 1, 1, 5, 5, 1, 5, 1, 5, 5, 1, 5, 5}));
  EXPECT_THAT(
      Draws(kGoldenLogits, Params(1.5f, 0, 1.0f, 0.3f), 5, 24),
      ElementsAreArray({3, 5, 5, 5, 5, 5, 5, 5, 3, 3, 7, 1, 3, 5, 5, 7, 5, 5, 5, 5, 3, 3, 1, 7}));
}

TEST(SampleTest, FrequenciesFollowTheSoftmax) {
  constexpr int kN = 20000;
  const std::vector<float> logits = {0.5f, 1.5f, -1.0f, 2.0f, 0.0f};
  for (float t : {1.0f, 0.7f, 2.0f}) {
    SCOPED_TRACE(testing::Message() << "temperature " << t);
    ExpectFrequenciesNear(Frequencies(logits, Params(t), 4242, kN), Probabilities(logits, t), kN);
  }
}

TEST(SampleTest, FiltersNeverEmitFilteredTokensAndRenormalise) {
  constexpr int kN = 20000;
  const std::vector<float> logits = {0.5f, 1.5f, -1.0f, 2.0f, 0.0f};
  // Probabilities at T = 1: 3: .496  1: .301  0: .111  4: .067  2: .025 (about).
  struct Case {
    SamplingParams params;
    std::vector<int> keep;
  };
  const std::vector<Case> cases = {
      {Params(1.0f, 2), {3, 1}},
      {Params(1.0f, 0, 0.7f), {3, 1}},            // .496 < .7 <= .797
      {Params(1.0f, 0, 0.85f), {3, 1, 0}},        // .797 < .85 <= .908
      {Params(1.0f, 0, 1.0f, 0.2f), {3, 1, 0}},   // .111/.496 = .22 >= .2 > .067/.496
      {Params(1.0f, 4, 0.85f, 0.2f), {3, 1, 0}},  // top-p keeps 4, min-p drops it.
      {Params(1.0f, 3, 1.0f, 0.5f), {3, 1}},      // .301/.496 = .61 >= .5 > .22
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "top_k " << c.params.top_k << " top_p " << c.params.top_p
                                    << " min_p " << c.params.min_p);
    ExpectFrequenciesNear(Frequencies(logits, c.params, 31, kN), Probabilities(logits, 1.0, c.keep),
                          kN);
  }
}

TEST(SampleTest, FilterEdgeCases) {
  std::vector<float> logits(300);
  Rng gen(17);
  for (float& x : logits) x = static_cast<float>(gen.NextDouble() * 6.0);
  const int32_t argmax = TopKIndices(logits, 1)[0];
  for (int32_t t : Draws(logits, Params(1.0f, 1), 1, 100)) ASSERT_EQ(t, argmax);  // top_k 1
  for (int32_t t : Draws(logits, Params(1.0f, 0, 1e-6f), 2, 100)) ASSERT_EQ(t, argmax);
  for (int32_t t : Draws(logits, Params(1.0f, 0, 1.0f, 1.0f), 3, 100)) ASSERT_EQ(t, argmax);
  // top_k at or past the vocabulary is off: the very same draws as without it.
  EXPECT_EQ(Draws(logits, Params(1.0f, 300), 4, 200), Draws(logits, Params(1.0f), 4, 200));
  EXPECT_EQ(Draws(logits, Params(1.0f, 100000), 4, 200), Draws(logits, Params(1.0f), 4, 200));
  // Equal logits at the top-k boundary: exactly k tokens, the lower ids.
  const std::vector<float> ties = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
  for (int32_t t : Draws(ties, Params(1.0f, 2), 5, 300)) ASSERT_TRUE(t == 1 || t == 2) << t;
}

TEST(SampleTest, VanishingTemperatureApproachesGreedy) {
  const std::vector<float> logits = {0.3f, 1.0f, 0.9f, -2.0f};
  for (int32_t t : Draws(logits, Params(1e-3f), 6, 500)) ASSERT_EQ(t, 1);
  for (int32_t t : Draws(logits, Params(1e-30f), 6, 100)) ASSERT_EQ(t, 1);
  // Tied maxima: only they are drawn, about equally often.
  const std::vector<float> tied = {1.0f, 0.999f, 1.0f};
  const std::vector<double> freq = Frequencies(tied, Params(1e-5f), 7, 4000);
  EXPECT_EQ(freq[1], 0.0);
  EXPECT_NEAR(freq[0], 0.5, 0.05);
}

// All ids, largest logit first, equal logits by lower id (a full sort).
std::vector<int32_t> FullOrder(const std::vector<float>& logits) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return SortKey(logits[a]) > SortKey(logits[b]); });
  return order;
}

// The documented filters over a full sort, sharing only the float arithmetic: the kept
// (id, weight) pairs with weight > 0, ascending id.
std::vector<std::pair<int32_t, float>> ReferenceKept(const std::vector<float>& logits,
                                                     std::vector<int32_t> order,
                                                     const SamplingParams& p) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  float max = -kInf;
  for (float x : logits) max = std::max(max, SortKey(x));
  std::vector<float> w(vocab);
  for (int64_t i = 0; i < vocab; ++i) w[i] = std::exp((SortKey(logits[i]) - max) / p.temperature);
  double total = 0.0;
  if (p.top_k > 0 && p.top_k < vocab) {
    order.resize(p.top_k);
    for (int32_t id : order) total += w[id];
  } else {
    for (float x : w) total += x;
  }
  double cumulative = 0.0;
  for (size_t i = 0; i < order.size(); ++i) {
    cumulative += w[order[i]];
    if (cumulative >= static_cast<double>(p.top_p) * total) {
      order.resize(i + 1);
      break;
    }
  }
  std::erase_if(order, [&](int32_t id) { return w[id] < p.min_p || w[id] == 0.0f; });
  std::sort(order.begin(), order.end());
  std::vector<std::pair<int32_t, float>> kept;
  for (int32_t id : order) kept.emplace_back(id, w[id]);
  return kept;
}

int32_t ReferenceDraw(const std::vector<std::pair<int32_t, float>>& kept, double u) {
  double total = 0.0;
  for (const auto& [id, w] : kept) total += w;
  double cumulative = 0.0;
  for (const auto& [id, w] : kept) {
    cumulative += w;
    if (u * total < cumulative) return id;
  }
  return kept.back().first;
}

TEST(SampleTest, MatchesAFullSortReference) {
  Rng gen(2718);
  for (int vocab : {3000, 129280}) {
    std::vector<float> logits(vocab);
    // A peaked head over a long flat tail, like a language model's.
    for (float& x : logits) x = static_cast<float>(gen.NextDouble() * 8.0);
    for (int i = 0; i < 20; ++i) logits[gen.Next() % vocab] += 6.0f;
    logits[gen.Next() % vocab] = kNaN;
    const std::vector<SamplingParams> params = {Params(1.0f, 0, 0.9f),
                                                Params(1.0f, 0, 0.999f),
                                                Params(3.0f, 0, 0.9f),
                                                Params(1.0f, 0, 0.3f),
                                                Params(0.7f, 40),
                                                Params(2.0f, 0, 0.6f, 0.001f),
                                                Params(1.3f, 2000, 0.95f),
                                                Params(1.0f, 0, 1.0f, 0.01f),
                                                Params(0.8f, 64, 0.5f, 0.2f)};
    const std::vector<int32_t> order = FullOrder(logits);
    const int seeds = vocab > 10000 ? 3 : 20;
    for (const SamplingParams& p : params) {
      SCOPED_TRACE(testing::Message() << "vocab " << vocab << " T " << p.temperature << " top_k "
                                      << p.top_k << " top_p " << p.top_p << " min_p " << p.min_p);
      const std::vector<std::pair<int32_t, float>> want = ReferenceKept(logits, order, p);
      absl::StatusOr<std::vector<TokenProbability>> got = SamplingDistribution(logits, p);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->size(), want.size());
      double want_total = 0.0;
      for (const auto& [id, w] : want) want_total += w;
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ((*got)[i].token_id, want[i].first) << i;
        ASSERT_NEAR((*got)[i].probability, want[i].second / want_total, 1e-12) << i;
      }
      for (uint64_t seed = 0; seed < static_cast<uint64_t>(seeds); ++seed) {
        Rng rng(seed);
        Rng twin(seed);
        ASSERT_EQ(*Sample(logits, p, rng), ReferenceDraw(want, twin.NextDouble()))
            << "seed " << seed;
        ASSERT_EQ(rng.state(), twin.state());  // One draw per call.
      }
    }
  }
}

// A sampler that knows a full-vocabulary row only by its best K tokens (the CUDA
// backend's device draw) keeps the tokens ranking at or before the returned boundary whose
// weight reaches min_p: exactly Sample's set whenever a boundary is returned, and
// std::nullopt only when Sample's top-p prefix really reaches past the candidates.
TEST(TopPBoundaryOfCandidatesTest, KeepsSamplesSetOrSaysTheCandidatesCannotTell) {
  Rng gen(31);
  int decided = 0, undecided = 0;
  for (int shape = 0; shape < 4; ++shape) {
    const int vocab = shape == 3 ? 40 : 3000;
    std::vector<float> logits(vocab);
    for (float& x : logits) x = static_cast<float>(gen.NextDouble() * 4.0);
    if (shape >= 1) {  // A peaked head: a few tokens hold most of the mass.
      for (int i = 0; i < 6; ++i) logits[gen.Next() % vocab] += 9.0f + static_cast<float>(i);
    }
    if (shape == 2) {  // Ties across the candidates' edge, -0 against +0, NaN.
      for (int i = 0; i < vocab; i += 3) logits[i] = 1.5f;
      logits[10] = -0.0f;
      logits[11] = 0.0f;
      logits[12] = kNaN;
    }
    const std::vector<int32_t> order = FullOrder(logits);
    for (const SamplingParams& p :
         {Params(1.0f, 0, 0.9f), Params(0.5f, 0, 0.95f), Params(2.0f, 0, 0.6f, 0.001f),
          Params(1.0f, 0, 0.3f, 0.2f), Params(0.8f, 0, 1.0f, 0.05f), Params(1.0f, vocab, 0.8f)}) {
      float max = -kInf;
      for (float x : logits) max = std::max(max, SortKey(x));
      std::vector<float> w(vocab);
      double total = 0.0;  // In index order, as Sample sums.
      for (int i = 0; i < vocab; ++i) {
        total += w[i] = std::exp((SortKey(logits[i]) - max) / p.temperature);
      }
      absl::StatusOr<std::vector<TokenProbability>> want = SamplingDistribution(logits, p);
      ASSERT_TRUE(want.ok());
      for (int k : {1, 7, 256, vocab}) {
        SCOPED_TRACE(testing::Message() << "shape " << shape << " k " << k << " T " << p.temperature
                                        << " top_p " << p.top_p << " min_p " << p.min_p);
        std::vector<int32_t> ids = TopKIndices(logits, k);
        std::reverse(ids.begin(), ids.end());  // Any order.
        std::vector<float> values;
        for (int32_t id : ids) values.push_back(logits[id]);
        const std::optional<uint64_t> boundary =
            TopPBoundaryOfCandidates(ids, values, vocab, max, total, p);
        if (p.top_p == 1.0f) {
          EXPECT_EQ(boundary, kKeepAllRanks);
        }
        if (static_cast<int>(ids.size()) == vocab) {
          EXPECT_TRUE(boundary.has_value());
        }
        if (!boundary.has_value()) {
          ++undecided;
          // Sample's prefix (before min-p) holds a token outside the candidates.
          SamplingParams no_min_p = p;
          no_min_p.min_p = 0.0f;
          const std::vector<std::pair<int32_t, float>> prefix =
              ReferenceKept(logits, order, no_min_p);
          EXPECT_TRUE(std::any_of(prefix.begin(), prefix.end(), [&](const auto& kw) {
            return std::find(ids.begin(), ids.end(), kw.first) == ids.end();
          }));
          continue;
        }
        ++decided;
        std::vector<int32_t> kept;
        for (int i = 0; i < vocab; ++i) {
          if (RankKey(logits[i], i) <= *boundary && w[i] >= p.min_p && w[i] > 0.0f) {
            kept.push_back(i);
          }
        }
        std::vector<int32_t> want_ids;
        for (const TokenProbability& t : *want) want_ids.push_back(t.token_id);
        EXPECT_EQ(kept, want_ids);
      }
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(decided, 20);
  EXPECT_GT(undecided, 5);
}

TEST(SamplingDistributionTest, GreedyAndFilteredSets) {
  absl::StatusOr<std::vector<TokenProbability>> d =
      SamplingDistribution(kGoldenLogits, Params(0.0f));
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].token_id, 5);
  EXPECT_EQ((*d)[0].probability, 1.0);
  d = SamplingDistribution(kGoldenLogits, Params(1.0f, 3));
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size(), 3u);
  EXPECT_EQ((*d)[0].token_id, 1);
  EXPECT_EQ((*d)[1].token_id, 3);
  EXPECT_EQ((*d)[2].token_id, 5);
  const double z = std::exp(2.5) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR((*d)[2].probability, std::exp(3.0) / z, 1e-6);
  // -0 and +0 are equal logits: the lower id ranks first on both top-p paths.
  const std::vector<float> zeros = {-0.0f, 0.0f, -1.0f};
  for (const SamplingParams& p : {Params(1.0f, 0, 0.3f), Params(1.0f, 2, 0.3f)}) {
    d = SamplingDistribution(zeros, p);
    ASSERT_TRUE(d.ok());
    ASSERT_EQ(d->size(), 1u) << "top_k " << p.top_k;
    EXPECT_EQ((*d)[0].token_id, 0) << "top_k " << p.top_k;
  }
  EXPECT_EQ(SamplingDistribution(std::vector<float>{kNaN}, Params(1.0f)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mla
