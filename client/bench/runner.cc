#include "client/bench/runner.h"

#include <algorithm>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace mla::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Warmup requests draw from indices far from the measured ones, so that they warm the
// server (and the shared prefix's cache blocks) without pre-caching measured prompts.
constexpr uint64_t kWarmupIndexBase = uint64_t{1} << 62;

// An arrival counts as held back when it is claimed this much after its scheduled time.
constexpr auto kLateThreshold = std::chrono::milliseconds(1);

struct Phase {
  bool open_loop = false;
  double rate = 0;
  int workers = 1;
  int64_t num_requests = 0;  // 0 = unbounded.
  double duration_s = 0;     // 0 = unbounded.
  uint64_t first_index = 0;
  uint64_t seed = 0;
};

// Hands each worker the next request to send, and in the open loop holds it until its
// arrival time. The only state the workers of a phase share.
class Dispenser {
 public:
  Dispenser(const Phase& phase, Clock::time_point start)
      : phase_(phase),
        deadline_(start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(phase.duration_s))),
        next_arrival_(start),
        arrivals_(phase.open_loop ? phase.rate : 1.0, phase.seed) {}

  // Sets *index to the next request and returns true once it is time to send it;
  // returns false when the phase has no more requests.
  bool Next(uint64_t* index) {
    Clock::time_point when;
    {
      absl::MutexLock lock(&mu_);
      if (phase_.num_requests > 0 && dispatched_ >= phase_.num_requests) return false;
      when = phase_.open_loop ? next_arrival_ : Clock::now();
      if (phase_.duration_s > 0 && when >= deadline_) return false;
      if (phase_.open_loop) {
        next_arrival_ += std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(arrivals_.NextGapSeconds()));
        if (Clock::now() > when + kLateThreshold) ++late_;
      }
      *index = phase_.first_index + static_cast<uint64_t>(dispatched_++);
    }
    std::this_thread::sleep_until(when);
    return true;
  }

  int64_t late() {
    absl::MutexLock lock(&mu_);
    return late_;
  }

 private:
  const Phase phase_;
  const Clock::time_point deadline_;
  absl::Mutex mu_;
  Clock::time_point next_arrival_ ABSL_GUARDED_BY(mu_);
  PoissonArrivals arrivals_ ABSL_GUARDED_BY(mu_);
  int64_t dispatched_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t late_ ABSL_GUARDED_BY(mu_) = 0;
};

struct PhaseResult {
  std::vector<RequestRecord> records;
  double duration_s = 0;
  int64_t late_dispatches = 0;
};

PhaseResult RunPhase(const Phase& phase, const WorkloadGenerator& workload,
                     const GenerateFn& generate, LiveCounters* live) {
  const Clock::time_point start = Clock::now();
  Dispenser dispenser(phase, start);
  absl::Mutex mu;
  PhaseResult result;
  auto worker = [&] {
    uint64_t index = 0;
    while (dispenser.Next(&index)) {
      const WorkloadRequest request = workload.Make(index);
      if (live != nullptr) {
        live->dispatched.fetch_add(1);
        live->in_flight.fetch_add(1);
      }
      RequestRecord record = RunOne(request, generate, start);
      if (live != nullptr) {
        live->in_flight.fetch_sub(1);
        (record.ok() ? live->completed : live->failed).fetch_add(1);
        live->output_tokens.fetch_add(record.output_tokens);
      }
      absl::MutexLock lock(&mu);
      result.records.push_back(std::move(record));
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(phase.workers);
  for (int i = 0; i < phase.workers; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  for (const RequestRecord& r : result.records) {
    result.duration_s = std::max(result.duration_s, r.start_s + r.e2e_s);
  }
  result.late_dispatches = dispenser.late();
  return result;
}

absl::Status ValidateOptions(const RunnerOptions& o) {
  if (o.request_rate <= 0 && o.concurrency < 1) {
    return absl::InvalidArgumentError("concurrency must be >= 1");
  }
  if (o.request_rate > 0 && o.max_in_flight < 1) {
    return absl::InvalidArgumentError("max_in_flight must be >= 1");
  }
  if (o.num_requests < 0 || o.duration_s < 0 || o.warmup_requests < 0) {
    return absl::InvalidArgumentError(
        "num_requests, duration_s and warmup_requests must not be negative");
  }
  if (o.num_requests == 0 && o.duration_s == 0) {
    return absl::InvalidArgumentError("set num_requests or duration_s (or both)");
  }
  return absl::OkStatus();
}

}  // namespace

v1::GenerateRequest ToGenerateRequest(const WorkloadRequest& request) {
  v1::GenerateRequest out;
  out.mutable_token_ids()->mutable_ids()->Assign(request.prompt.begin(), request.prompt.end());
  v1::SamplingParams* sampling = out.mutable_sampling();
  sampling->set_max_tokens(request.output_len);
  sampling->set_ignore_eos(true);
  return out;
}

RequestRecord RunOne(const WorkloadRequest& request, const GenerateFn& generate,
                     Clock::time_point run_start) {
  RequestRecord record;
  record.index = request.index;
  record.prompt_len = static_cast<int>(request.prompt.size());
  record.expected_output_len = request.output_len;
  const v1::GenerateRequest proto = ToGenerateRequest(request);
  const Clock::time_point sent = Clock::now();
  record.start_s = Seconds(sent - run_start);
  Clock::time_point last_tokens = sent;
  bool finished = false;
  bool aborted = false;
  absl::Status status = generate(proto, [&](const v1::GenerateResponse& message) {
    const int n = message.token_ids_size();
    if (n > 0) {
      const Clock::time_point now = Clock::now();
      if (record.ttft_s < 0) {
        record.ttft_s = Seconds(now - sent);
      } else {
        // The message's tokens arrived together; spread the gap evenly over them.
        record.itl_s.insert(record.itl_s.end(), n, Seconds(now - last_tokens) / n);
      }
      last_tokens = now;
      record.output_tokens += n;
    }
    if (message.has_finished()) {
      finished = true;
      aborted = message.finished().reason() == v1::FINISH_REASON_ABORT;
      record.cached_prompt_tokens = message.finished().usage().cached_prompt_tokens();
    }
    return true;
  });
  record.e2e_s = Seconds(Clock::now() - sent);
  if (status.ok() && aborted) status = absl::AbortedError("finished with reason abort");
  if (status.ok() && !finished) {
    status = absl::InternalError("stream ended without a finished message");
  }
  record.code = status.code();
  record.error = std::string(status.message());
  return record;
}

absl::StatusOr<RunResult> RunBenchmark(const RunnerOptions& options,
                                       const WorkloadGenerator& workload,
                                       const GenerateFn& generate, LiveCounters* live,
                                       const std::function<void()>& on_measured_start) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  RunResult result;
  if (options.warmup_requests > 0) {
    Phase warmup;
    warmup.workers = static_cast<int>(
        std::min<int64_t>(std::max(options.concurrency, 1), options.warmup_requests));
    warmup.num_requests = options.warmup_requests;
    warmup.first_index = kWarmupIndexBase;
    for (const RequestRecord& r : RunPhase(warmup, workload, generate, nullptr).records) {
      ++(r.ok() ? result.warmup_completed : result.warmup_failed);
    }
  }
  if (on_measured_start) on_measured_start();
  Phase measured;
  measured.open_loop = options.request_rate > 0;
  measured.rate = options.request_rate;
  measured.workers = measured.open_loop ? options.max_in_flight : options.concurrency;
  if (options.num_requests > 0) {
    measured.workers = static_cast<int>(std::min<int64_t>(measured.workers, options.num_requests));
  }
  measured.num_requests = options.num_requests;
  measured.duration_s = options.duration_s;
  measured.seed = options.seed;
  PhaseResult phase = RunPhase(measured, workload, generate, live);
  result.records = std::move(phase.records);
  result.duration_s = phase.duration_s;
  result.late_dispatches = phase.late_dispatches;
  return result;
}

}  // namespace mla::bench
