#include "client/bench/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace mla::bench {
namespace {

constexpr int kBarWidth = 30;
// A terminal bar is redrawn this often; cheap, and smooth enough to watch.
constexpr double kTerminalInterval_s = 0.2;

// Fraction of the run done: by count, by time, or the further of the two when both
// bound the run (whichever limit is reached first ends it).
double Fraction(const ProgressOptions& o, int64_t done, double elapsed_s) {
  double f = 0;
  if (o.total_requests > 0) f = static_cast<double>(done) / static_cast<double>(o.total_requests);
  if (o.duration_s > 0) f = std::max(f, elapsed_s / o.duration_s);
  return std::clamp(f, 0.0, 1.0);
}

}  // namespace

std::string ProgressLine(const ProgressOptions& options, const LiveCounters& counters,
                         double elapsed_s) {
  const int64_t completed = counters.completed.load();
  const int64_t failed = counters.failed.load();
  const double fraction = Fraction(options, completed + failed, elapsed_s);
  const std::string total =
      options.total_requests > 0 ? absl::StrCat("/", options.total_requests) : "";
  const double tokens_per_s =
      elapsed_s > 0 ? static_cast<double>(counters.output_tokens.load()) / elapsed_s : 0.0;
  std::string line;
  if (options.terminal) {
    const int filled = static_cast<int>(fraction * kBarWidth);
    line = absl::StrCat("[", std::string(filled, '#'), std::string(kBarWidth - filled, '.'), "] ");
  } else {
    line = "progress: ";
  }
  absl::StrAppendFormat(&line,
                        "%3.0f%% %d%s done, %d failed, %d in flight, %.1f s, %.1f output tok/s",
                        fraction * 100, completed + failed, total, failed,
                        counters.in_flight.load(), elapsed_s, tokens_per_s);
  return line;
}

ProgressPrinter::ProgressPrinter(std::FILE* out, ProgressOptions options,
                                 const LiveCounters* counters)
    : out_(out), options_(options), counters_(counters) {}

ProgressPrinter::~ProgressPrinter() { Stop(); }

void ProgressPrinter::Start() {
  start_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { Loop(); });
}

void ProgressPrinter::Stop() {
  if (!thread_.joinable()) return;
  stop_.Notify();
  thread_.join();
  Print(/*final=*/true);
}

void ProgressPrinter::Loop() {
  const double interval_s = options_.terminal ? kTerminalInterval_s : options_.line_interval_s;
  while (!stop_.WaitForNotificationWithTimeout(absl::Seconds(interval_s))) {
    Print(/*final=*/false);
  }
}

void ProgressPrinter::Print(bool final) {
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string line = ProgressLine(options_, *counters_, elapsed_s);
  if (options_.terminal) {
    // Clear to the end of the line: the new text may be shorter than the old.
    std::fprintf(out_, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

}  // namespace mla::bench
