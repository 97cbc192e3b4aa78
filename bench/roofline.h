// Same-run baselines for the kernel benchmarks: the machine's read bandwidth and the peak
// FLOP/s of the FMA instructions the kernels use, both with every thread of the pool,
// and the FMA peak of one core counted in CPU time (which other processes sharing the
// cores do not disturb).
#ifndef MLA_BENCH_ROOFLINE_H_
#define MLA_BENCH_ROOFLINE_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/tensor.h"

namespace mla::bench {

struct Roofline {
  double read_gbps = 0;         // STREAM-like sum over a buffer far larger than the caches
  double peak_gflops = 0;       // register-only FMA loop (8-wide fp32 FMA on AVX2), all threads
  double core_peak_gflops = 0;  // the same loop on one thread, per second of its CPU time
  double fma512_peak_gflops = 0;  // 512-bit fp32 FMA loop, all threads; 0 without AVX-512
  double bf16_peak_gflops = 0;  // vdpbf16ps loop, all threads; 0 without AVX512_BF16
  double amx_peak_gflops = 0;   // TDPBF16PS loop, all threads; 0 without usable AMX-BF16
  std::string isa;              // the kernel variant the numbers apply to
};

Roofline MeasureRoofline(cpu::ThreadPool& pool);

// Keeps the bandwidth buffer so that the roofline can be measured again next to each
// result (the machine's share of the cores changes when it is shared).
class RooflineProbe {
 public:
  explicit RooflineProbe(cpu::ThreadPool& pool);
  Roofline Measure();

 private:
  cpu::ThreadPool& pool_;
  AlignedBuffer buffer_;
};
void PrintMachine(const Roofline& roofline, int threads);

// Seconds since an arbitrary epoch.
inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds used by the whole process (all threads).
double ProcessCpuSeconds();

struct CallTiming {
  double best_s = 0;  // fastest call (wall clock)
  double cpu_s = 0;   // process CPU time per call, averaged over the timed calls
  double busy = 0;    // CPU time / (wall time × threads): how much of the cores we had
};

// Runs fn() at least min_iters times and until min_seconds have passed (at most
// max_iters times), after one warm-up call. best_s is the fastest call, not the mean: on
// a shared machine other processes only ever add time, and the roofline baselines are
// best-of too.
template <typename Fn>
CallTiming TimeCalls(Fn&& fn, int threads, int min_iters, int max_iters, double min_seconds) {
  fn();
  const double start = Now();
  const double cpu_start = ProcessCpuSeconds();
  CallTiming timing;
  timing.best_s = 1e30;
  int iters = 0;
  for (; iters < max_iters && (iters < min_iters || Now() - start < min_seconds); ++iters) {
    const double t0 = Now();
    fn();
    timing.best_s = std::min(timing.best_s, Now() - t0);
  }
  const double cpu = ProcessCpuSeconds() - cpu_start;
  timing.cpu_s = cpu / iters;
  timing.busy = cpu / ((Now() - start) * threads);
  return timing;
}

}  // namespace mla::bench

#endif  // MLA_BENCH_ROOFLINE_H_
