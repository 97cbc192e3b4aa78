// Progress display for mla-bench: a redrawn bar on a terminal, plain periodic lines
// otherwise (so that logs of unattended runs stay readable).
#ifndef MLA_CLIENT_BENCH_PROGRESS_H_
#define MLA_CLIENT_BENCH_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "client/bench/runner.h"

namespace mla::bench {

struct ProgressOptions {
  bool terminal = false;       // Redraw one line with '\r' instead of printing lines.
  double line_interval_s = 5;  // Seconds between plain lines.
  int64_t total_requests = 0;  // 0 when only a duration bounds the run.
  double duration_s = 0;       // 0 when only a count bounds the run.
};

// One progress line (without '\r' or '\n') for the counters after `elapsed_s`.
std::string ProgressLine(const ProgressOptions& options, const LiveCounters& counters,
                         double elapsed_s);

// Prints progress from its own thread between Start() and Stop().
class ProgressPrinter {
 public:
  ProgressPrinter(std::FILE* out, ProgressOptions options, const LiveCounters* counters);
  ~ProgressPrinter();

  void Start();
  void Stop();  // Prints a last update; idempotent.

 private:
  void Loop();
  void Print(bool final);

  std::FILE* out_;
  const ProgressOptions options_;
  const LiveCounters* counters_;
  std::chrono::steady_clock::time_point start_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace mla::bench

#endif  // MLA_CLIENT_BENCH_PROGRESS_H_
