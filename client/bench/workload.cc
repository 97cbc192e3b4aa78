#include "client/bench/workload.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mla::bench {
namespace {

// SplitMix64's finalizer: spreads (seed, index) pairs that differ in one bit over the
// whole 64-bit space, so neighbouring requests get unrelated random streams.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Stream ids kept apart from request indices.
constexpr uint64_t kPrefixStream = 0xfffffffffffffff1ULL;

int UniformInt(int lo, int hi, std::mt19937_64& rng) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

}  // namespace

absl::Status LengthDistribution::Validate(absl::string_view what) const {
  if (kind == Kind::kFixed) {
    if (fixed < 1) return absl::InvalidArgumentError(absl::StrCat(what, " must be >= 1"));
    return absl::OkStatus();
  }
  if (min < 1 || max < min) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " min/max must satisfy 1 <= min <= max (got ", min, ", ", max, ")"));
  }
  if (kind == Kind::kLongContext && !(long_fraction >= 0.0 && long_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " long fraction must be in [0, 1]"));
  }
  return absl::OkStatus();
}

int LengthDistribution::Smallest() const { return kind == Kind::kFixed ? fixed : min; }
int LengthDistribution::Largest() const { return kind == Kind::kFixed ? fixed : max; }

absl::StatusOr<LengthDistribution::Kind> ParseLengthKind(absl::string_view name) {
  if (name == "fixed") return LengthDistribution::Kind::kFixed;
  if (name == "uniform") return LengthDistribution::Kind::kUniform;
  if (name == "long_context") return LengthDistribution::Kind::kLongContext;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown length distribution '", name, "' (fixed, uniform, long_context)"));
}

std::string LengthKindName(LengthDistribution::Kind kind) {
  switch (kind) {
    case LengthDistribution::Kind::kFixed:
      return "fixed";
    case LengthDistribution::Kind::kUniform:
      return "uniform";
    case LengthDistribution::Kind::kLongContext:
      return "long_context";
  }
  return "unknown";
}

int SampleLength(const LengthDistribution& dist, std::mt19937_64& rng) {
  switch (dist.kind) {
    case LengthDistribution::Kind::kFixed:
      return dist.fixed;
    case LengthDistribution::Kind::kUniform:
      return UniformInt(dist.min, dist.max, rng);
    case LengthDistribution::Kind::kLongContext: {
      const bool is_long = std::bernoulli_distribution(dist.long_fraction)(rng);
      if (is_long) return UniformInt(std::max(dist.min, dist.max / 2), dist.max, rng);
      return UniformInt(dist.min, std::max(dist.min, dist.max / 8), rng);
    }
  }
  return dist.fixed;
}

absl::StatusOr<WorkloadGenerator> WorkloadGenerator::Create(const WorkloadOptions& options) {
  MLA_RETURN_IF_ERROR(options.prompt_len.Validate("prompt length"));
  MLA_RETURN_IF_ERROR(options.output_len.Validate("output length"));
  if (options.vocab_size < 1) {
    return absl::InvalidArgumentError("vocab_size must be >= 1");
  }
  if (options.shared_prefix_len < 0 || options.shared_prefix_len > options.prompt_len.Smallest()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared_prefix_len (", options.shared_prefix_len,
        ") must be in [0, shortest prompt length = ", options.prompt_len.Smallest(), "]"));
  }
  const int64_t longest = int64_t{options.prompt_len.Largest()} + options.output_len.Largest();
  if (options.max_context > 0 && longest > options.max_context) {
    return absl::InvalidArgumentError(absl::StrCat("longest prompt + output (", longest,
                                                   ") exceeds the model's context (",
                                                   options.max_context, ")"));
  }
  return WorkloadGenerator(options);
}

WorkloadGenerator::WorkloadGenerator(const WorkloadOptions& options) : options_(options) {
  std::mt19937_64 rng(Mix(options_.seed ^ Mix(kPrefixStream)));
  std::uniform_int_distribution<int32_t> token(0, options_.vocab_size - 1);
  shared_prefix_.resize(options_.shared_prefix_len);
  for (int32_t& id : shared_prefix_) id = token(rng);
}

WorkloadRequest WorkloadGenerator::Make(uint64_t index) const {
  std::mt19937_64 rng(Mix(options_.seed ^ Mix(index)));
  WorkloadRequest request;
  request.index = index;
  const int prompt_len = SampleLength(options_.prompt_len, rng);
  request.output_len = SampleLength(options_.output_len, rng);
  request.prompt.reserve(prompt_len);
  request.prompt.assign(shared_prefix_.begin(), shared_prefix_.end());
  std::uniform_int_distribution<int32_t> token(0, options_.vocab_size - 1);
  while (static_cast<int>(request.prompt.size()) < prompt_len) {
    request.prompt.push_back(token(rng));
  }
  return request;
}

PoissonArrivals::PoissonArrivals(double rate, uint64_t seed)
    : rng_(Mix(seed ^ Mix(kPrefixStream - 1))), gap_(rate) {}

double PoissonArrivals::NextGapSeconds() { return gap_(rng_); }

}  // namespace mla::bench
