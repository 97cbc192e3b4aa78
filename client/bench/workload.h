// Workload generation for mla-bench: prompt and output lengths, random prompts and
// Poisson arrival gaps, all reproducible from one seed.
#ifndef MLA_CLIENT_BENCH_WORKLOAD_H_
#define MLA_CLIENT_BENCH_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::bench {

// How a length (prompt tokens or output tokens) is drawn.
//   kFixed:       always `fixed`.
//   kUniform:     uniform integer in [min, max].
//   kLongContext: a mix of short and long requests, as long-context traffic looks: with
//                 probability `long_fraction` uniform in the long band
//                 [max(min, max / 2), max], otherwise uniform in the short band
//                 [min, max(min, max / 8)].
struct LengthDistribution {
  enum class Kind { kFixed, kUniform, kLongContext };
  Kind kind = Kind::kFixed;
  int fixed = 128;
  int min = 0;
  int max = 0;
  double long_fraction = 0.25;

  absl::Status Validate(absl::string_view what) const;
  int Smallest() const;  // The least length the distribution can produce.
  int Largest() const;   // The greatest.
};

// Parses "fixed", "uniform" or "long_context".
absl::StatusOr<LengthDistribution::Kind> ParseLengthKind(absl::string_view name);
std::string LengthKindName(LengthDistribution::Kind kind);

// Draws one length from `dist` with `rng`.
int SampleLength(const LengthDistribution& dist, std::mt19937_64& rng);

struct WorkloadOptions {
  LengthDistribution prompt_len;
  LengthDistribution output_len{LengthDistribution::Kind::kFixed, 64};
  // Every prompt starts with the same `shared_prefix_len` tokens (drawn once from the
  // seed), so that the server's prefix cache has something to find. Counted in the
  // prompt length; must not exceed the shortest prompt.
  int shared_prefix_len = 0;
  int vocab_size = 0;   // Prompt token ids are uniform in [0, vocab_size).
  int max_context = 0;  // When > 0: the longest prompt plus output must fit.
  uint64_t seed = 0;
};

// One request of the workload: prompt token ids and the exact output length.
struct WorkloadRequest {
  uint64_t index = 0;
  std::vector<int32_t> prompt;
  int output_len = 0;
};

// Makes request i of the workload. Each request draws from its own random stream derived
// from (seed, i), so the workload does not depend on which thread asks first or in what
// order: request i is the same in every run with the same options.
class WorkloadGenerator {
 public:
  static absl::StatusOr<WorkloadGenerator> Create(const WorkloadOptions& options);

  WorkloadRequest Make(uint64_t index) const;
  const std::vector<int32_t>& shared_prefix() const { return shared_prefix_; }
  const WorkloadOptions& options() const { return options_; }

 private:
  explicit WorkloadGenerator(const WorkloadOptions& options);

  WorkloadOptions options_;
  std::vector<int32_t> shared_prefix_;
};

// Inter-arrival gaps of a Poisson process with `rate` arrivals per second: independent
// exponential gaps with mean 1 / rate. A sequence of calls is reproducible by seed.
class PoissonArrivals {
 public:
  PoissonArrivals(double rate, uint64_t seed);
  double NextGapSeconds();

 private:
  std::mt19937_64 rng_;
  std::exponential_distribution<double> gap_;
};

}  // namespace mla::bench

#endif  // MLA_CLIENT_BENCH_WORKLOAD_H_
