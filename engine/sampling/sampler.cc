#include "engine/sampling/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/sampling/top_k.h"

namespace mla {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr uint64_t kNoBoundary = std::numeric_limits<uint64_t>::max();

// Unnormalised probability after temperature, in [0, 1]; the most likely token gets
// exactly 1 (exp(0)), which makes the min-p threshold simply min_p.
struct Weigher {
  float max;
  float temperature;
  float operator()(float logit) const {
    if (max == kInf) return logit == kInf ? 1.0f : 0.0f;
    return std::exp((SortKey(logit) - max) / temperature);
  }
};

struct Ranked {
  uint64_t key;
  float weight;
};

// The key of the last token of the smallest rank-ordered prefix of `items` whose weight
// reaches `target` (kNoBoundary when all of them fall short). A quickselect on weight:
// expected O(n), so top-p never sorts the vocabulary.
uint64_t TopPBoundary(std::vector<Ranked>& items, double target) {
  const auto by_key = [](const Ranked& a, const Ranked& b) { return a.key < b.key; };
  size_t lo = 0;
  size_t hi = items.size();
  while (hi - lo > 32) {
    // Median-of-three pivot, moved to the end, Lomuto partition, pivot placed at `mid`.
    size_t m = lo + (hi - lo) / 2;
    if (by_key(items[m], items[lo])) std::swap(items[m], items[lo]);
    if (by_key(items[hi - 1], items[lo])) std::swap(items[hi - 1], items[lo]);
    if (by_key(items[m], items[hi - 1])) std::swap(items[m], items[hi - 1]);
    const Ranked pivot = items[hi - 1];
    const size_t mid =
        static_cast<size_t>(std::partition(items.begin() + lo, items.begin() + (hi - 1),
                                           [&](const Ranked& r) { return r.key < pivot.key; }) -
                            items.begin());
    std::swap(items[mid], items[hi - 1]);
    double better = 0.0;
    for (size_t i = lo; i < mid; ++i) better += items[i].weight;
    if (better >= target) {
      hi = mid;
      continue;
    }
    target -= better;
    if (pivot.weight >= target) return pivot.key;
    target -= pivot.weight;
    lo = mid + 1;
  }
  std::sort(items.begin() + lo, items.begin() + hi, by_key);
  double cumulative = 0.0;
  for (size_t i = lo; i < hi; ++i) {
    cumulative += items[i].weight;
    if (cumulative >= target) return items[i].key;
  }
  return kNoBoundary;
}

// What survives the filters: dense weights over the vocabulary (0 = removed) when
// top-k is off, else the kept (id, weight) pairs in ascending id order.
struct Kept {
  std::vector<float> dense;
  std::vector<std::pair<int32_t, float>> sparse;
  bool is_dense = true;

  size_t size() const { return is_dense ? dense.size() : sparse.size(); }
  float weight(size_t i) const { return is_dense ? dense[i] : sparse[i].second; }
  int32_t id(size_t i) const { return is_dense ? static_cast<int32_t>(i) : sparse[i].first; }
};

// The binary exponent field of a weight in [0, 1] (0 for 0 and subnormals).
int WeightExponent(float w) {
  uint32_t bits;
  std::memcpy(&bits, &w, sizeof(bits));
  return static_cast<int>(bits >> 23);
}

// Top-p over dense weights: zeroes every token after the boundary. A histogram of mass
// by weight exponent finds the one exponent bucket where the cumulative mass crosses
// top_p × total (weight is monotone in the logit, so buckets follow the rank order);
// only that bucket's tokens go through the quickselect.
void ApplyTopP(std::span<const float> logits, float top_p, double total,
               std::vector<float>& weights) {
  std::array<double, 256> mass{};
  for (float w : weights) mass[WeightExponent(w)] += w;
  double target = static_cast<double>(top_p) * total;
  int bucket = 255;
  for (; bucket > 0 && mass[bucket] < target; --bucket) target -= mass[bucket];
  std::vector<Ranked> items;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (WeightExponent(weights[i]) == bucket && weights[i] > 0.0f) {
      items.push_back({RankKey(logits[i], static_cast<int32_t>(i)), weights[i]});
    }
  }
  const uint64_t boundary = TopPBoundary(items, target);
  for (size_t i = 0; i < weights.size(); ++i) {
    const int e = WeightExponent(weights[i]);
    if (e < bucket || (e == bucket && RankKey(logits[i], static_cast<int32_t>(i)) > boundary)) {
      weights[i] = 0.0f;
    }
  }
}

// No top-k: weights over the whole vocabulary, top-p, then min-p.
Kept FilterFullVocab(std::span<const float> logits, const SamplingParams& params,
                     const Weigher& weigh) {
  Kept kept;
  kept.dense.resize(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) total += kept.dense[i] = weigh(logits[i]);
  if (params.top_p < 1.0f) ApplyTopP(logits, params.top_p, total, kept.dense);
  for (float& w : kept.dense) {
    if (w < params.min_p) w = 0.0f;
  }
  return kept;
}

// top-k on: the k best (most likely first), top-p as a prefix cut, then min-p.
Kept FilterTopK(std::span<const float> logits, const SamplingParams& params, const Weigher& weigh) {
  std::vector<int32_t> ids = TopKIndices(logits, params.top_k);
  std::vector<float> weights(ids.size());
  double total = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) total += weights[i] = weigh(logits[ids[i]]);
  const double threshold = static_cast<double>(params.top_p) * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < ids.size() && params.top_p < 1.0f; ++i) {
    cumulative += weights[i];
    if (cumulative >= threshold) {
      ids.resize(i + 1);
      break;
    }
  }
  Kept kept;
  kept.is_dense = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (weights[i] >= params.min_p) kept.sparse.emplace_back(ids[i], weights[i]);
  }
  std::sort(kept.sparse.begin(), kept.sparse.end());
  return kept;
}

// Steps 1-4 for a non-greedy request; `max` is the largest logit (not -inf).
Kept Filter(std::span<const float> logits, const SamplingParams& params, float max) {
  const Weigher weigh{max, params.temperature};
  if (params.top_k > 0 && params.top_k < static_cast<int64_t>(logits.size())) {
    return FilterTopK(logits, params, weigh);
  }
  return FilterFullVocab(logits, params, weigh);
}

// Inverse CDF in ascending id order.
int32_t Draw(const Kept& kept, double u) {
  double total = 0.0;
  for (size_t i = 0; i < kept.size(); ++i) total += kept.weight(i);
  const double target = u * total;
  double cumulative = 0.0;
  int32_t last_positive = -1;
  for (size_t i = 0; i < kept.size(); ++i) {
    const float w = kept.weight(i);
    if (w <= 0.0f) continue;
    cumulative += w;
    last_positive = kept.id(i);
    if (target < cumulative) return last_positive;
  }
  return last_positive;  // u × total rounded up to the full sum.
}

struct Argmax {
  float max = -kInf;
  int32_t id = 0;
};

absl::StatusOr<Argmax> CheckedArgmax(std::span<const float> logits, const SamplingParams& params) {
  MLA_RETURN_IF_ERROR(ValidateSamplingParams(params));
  if (logits.empty() || logits.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: bad vocabulary size ", logits.size()));
  }
  Argmax best;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > best.max) {  // NaN never compares greater: it acts as -inf.
      best.max = logits[i];
      best.id = static_cast<int32_t>(i);
    }
  }
  if (best.max == -kInf) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: all ", logits.size(), " logits are NaN or -inf"));
  }
  return best;
}

}  // namespace

std::optional<uint64_t> TopPBoundaryOfCandidates(std::span<const int32_t> ids,
                                                 std::span<const float> logits, int64_t vocab_size,
                                                 float max, double total,
                                                 const SamplingParams& params) {
  if (!(params.top_p < 1.0f)) return kKeepAllRanks;
  const Weigher weigh{max, params.temperature};
  std::vector<Ranked> ranked(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ranked[i] = {RankKey(logits[i], ids[i]), weigh(logits[i])};
  }
  std::sort(ranked.begin(), ranked.end(),
            [](const Ranked& a, const Ranked& b) { return a.key < b.key; });
  // ApplyTopP's rule: the smallest rank-ordered prefix whose weight reaches the target.
  const double target = static_cast<double>(params.top_p) * total;
  double cumulative = 0.0;
  for (const Ranked& r : ranked) {
    cumulative += r.weight;
    if (cumulative >= target) return r.key;
  }
  // Short of the target: the prefix goes on past the candidates, unless they are the row.
  if (static_cast<int64_t>(ids.size()) >= vocab_size) return kKeepAllRanks;
  return std::nullopt;
}

absl::StatusOr<int32_t> Sample(std::span<const float> logits, const SamplingParams& params,
                               Rng& rng) {
  MLA_ASSIGN_OR_RETURN(const Argmax best, CheckedArgmax(logits, params));
  if (params.greedy()) return best.id;
  const double u = rng.NextDouble();
  const int32_t token = Draw(Filter(logits, params, best.max), u);
  // Unreachable: the most likely token has weight 1 and survives every filter.
  if (token < 0) return absl::InternalError("sampling: every token was filtered out");
  return token;
}

absl::StatusOr<std::vector<TokenProbability>> SamplingDistribution(std::span<const float> logits,
                                                                   const SamplingParams& params) {
  MLA_ASSIGN_OR_RETURN(const Argmax best, CheckedArgmax(logits, params));
  if (params.greedy()) return std::vector<TokenProbability>{{best.id, 1.0}};
  const Kept kept = Filter(logits, params, best.max);
  double total = 0.0;
  for (size_t i = 0; i < kept.size(); ++i) total += kept.weight(i);
  std::vector<TokenProbability> out;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (kept.weight(i) > 0.0f) out.push_back({kept.id(i), kept.weight(i) / total});
  }
  return out;
}

}  // namespace mla
