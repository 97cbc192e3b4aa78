// Same-run baselines for the kernel benchmarks: the machine's read bandwidth and the peak
// FLOP/s of the FMA instructions the kernels use, both with every thread of the pool.
#ifndef MLA_BENCH_ROOFLINE_H_
#define MLA_BENCH_ROOFLINE_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "engine/backend/cpu/thread_pool.h"

namespace mla::bench {

struct Roofline {
  double read_gbps = 0;    // STREAM-like sum over a buffer far larger than the caches
  double peak_gflops = 0;  // register-only FMA loop (8-wide fp32 FMA on AVX2)
  std::string isa;         // the kernel variant the numbers apply to
};

Roofline MeasureRoofline(cpu::ThreadPool& pool);
void PrintMachine(const Roofline& roofline, int threads);

// Seconds since an arbitrary epoch.
inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs fn() at least min_iters times and until min_seconds have passed (at most
// max_iters times), after one warm-up call; returns the fastest call's seconds. The
// fastest, not the mean: on a shared machine other processes only ever add time, and the
// roofline baselines are best-of too.
template <typename Fn>
double TimePerCall(Fn&& fn, int min_iters, int max_iters, double min_seconds) {
  fn();
  const double start = Now();
  double best = 1e30;
  for (int iters = 0; iters < max_iters && (iters < min_iters || Now() - start < min_seconds);
       ++iters) {
    const double t0 = Now();
    fn();
    best = std::min(best, Now() - t0);
  }
  return best;
}

}  // namespace mla::bench

#endif  // MLA_BENCH_ROOFLINE_H_
