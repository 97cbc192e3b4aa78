// Summary statistics for mla-bench latencies.
#ifndef MLA_CLIENT_BENCH_STATS_H_
#define MLA_CLIENT_BENCH_STATS_H_

#include <cstdint>
#include <vector>

namespace mla::bench {

// The p-th percentile (p in [0, 100]) of `sorted` (ascending), by linear interpolation
// between the closest ranks: with n samples the percentile sits at the fractional
// 0-based position h = (p / 100) * (n - 1), and the result is
// sorted[floor(h)] + (h - floor(h)) * (sorted[floor(h) + 1] - sorted[floor(h)]).
// This is the default of NumPy's percentile (Hyndman and Fan's type 7): p0 is the
// minimum, p100 the maximum, p50 the usual median. Returns 0 for an empty input.
double Percentile(const std::vector<double>& sorted, double p);

struct Summary {
  int64_t count = 0;
  double mean = 0;
  double min = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// Sorts a copy of `samples` and summarizes it; all fields are 0 when it is empty.
Summary Summarize(std::vector<double> samples);

}  // namespace mla::bench

#endif  // MLA_CLIENT_BENCH_STATS_H_
