// The runner against an in-process fake of Generate (no server): loop discipline,
// stop conditions, timing records and failure accounting.
#include "client/bench/runner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace mla::bench {
namespace {

using Kind = LengthDistribution::Kind;
using std::chrono::milliseconds;

WorkloadGenerator MakeWorkload(int output_min, int output_max) {
  WorkloadOptions o;
  o.prompt_len = {Kind::kUniform, 0, 4, 12};
  o.output_len = {Kind::kUniform, 0, output_min, output_max};
  o.vocab_size = 50;
  o.seed = 3;
  return *WorkloadGenerator::Create(o);
}

// Streams max_tokens tokens, two per message, `step` apart; tracks calls in flight.
// With `hold_until_in_flight` > 0 the first calls wait (up to 5 s) until that many are in
// flight at once, so that a test can check the loop reaches its concurrency.
class FakeServer {
 public:
  explicit FakeServer(milliseconds step, int hold_until_in_flight = 0)
      : step_(step), hold_(hold_until_in_flight) {}

  GenerateFn fn() {
    return [this](const v1::GenerateRequest& request,
                  const std::function<bool(const v1::GenerateResponse&)>& on_message) {
      return Generate(request, on_message);
    };
  }
  int peak() const { return peak_.load(); }
  int calls() const { return calls_.load(); }

 private:
  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<bool(const v1::GenerateResponse&)>& on_message) {
    calls_.fetch_add(1);
    Enter();
    const int total = request.sampling().max_tokens();
    for (int sent = 0; sent < total;) {
      std::this_thread::sleep_for(step_);
      v1::GenerateResponse message;
      for (int k = 0; k < 2 && sent < total; ++k, ++sent) message.add_token_ids(sent);
      if (sent == total) {
        message.mutable_finished()->set_reason(v1::FINISH_REASON_LENGTH);
        message.mutable_finished()->mutable_usage()->set_completion_tokens(total);
      }
      on_message(message);
    }
    absl::MutexLock lock(&mu_);
    --in_flight_;
    return absl::OkStatus();
  }

  void Enter() {
    absl::MutexLock lock(&mu_);
    ++in_flight_;
    int peak = peak_.load();
    peak_.store(std::max(peak, in_flight_));
    if (hold_ > 0 && !released_) {
      auto reached = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ >= hold_; };
      mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(5));
      released_ = true;
    }
  }

  const milliseconds step_;
  const int hold_;
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> peak_{0};
  std::atomic<int> calls_{0};
};

TEST(RunnerTest, ClosedLoopKeepsConcurrencyAndRecordsExactTokens) {
  const WorkloadGenerator workload = MakeWorkload(3, 7);
  FakeServer server(milliseconds(2), /*hold_until_in_flight=*/3);
  RunnerOptions options;
  options.concurrency = 3;
  options.num_requests = 12;
  LiveCounters live;
  auto result = RunBenchmark(options, workload, server.fn(), &live);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(server.peak(), 3);
  ASSERT_EQ(result->records.size(), 12u);
  EXPECT_EQ(live.completed.load(), 12);
  EXPECT_EQ(live.in_flight.load(), 0);
  std::vector<uint64_t> indices;
  for (const RequestRecord& r : result->records) {
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.output_tokens, r.expected_output_len);
    EXPECT_EQ(r.expected_output_len, workload.Make(r.index).output_len);
    // The fake sends two tokens per message; the first message's pair has no gap.
    EXPECT_EQ(static_cast<int>(r.itl_s.size()), r.output_tokens - 2);
    for (double itl : r.itl_s) EXPECT_GT(itl, 0.0);
    EXPECT_GT(r.ttft_s, 0.0);
    EXPECT_GE(r.e2e_s, r.ttft_s);
    EXPECT_LE(r.start_s + r.e2e_s, result->duration_s + 1e-9);
    indices.push_back(r.index);
  }
  std::sort(indices.begin(), indices.end());
  for (uint64_t i = 0; i < 12; ++i) EXPECT_EQ(indices[i], i);  // Each request once.
}

TEST(RunnerTest, WarmupIsRunButNotRecorded) {
  const WorkloadGenerator workload = MakeWorkload(1, 2);
  FakeServer server(milliseconds(0));
  RunnerOptions options;
  options.concurrency = 2;
  options.num_requests = 4;
  options.warmup_requests = 3;
  bool started = false;
  auto result = RunBenchmark(options, workload, server.fn(), nullptr, [&] {
    EXPECT_EQ(server.calls(), 3);  // The warmup is over before the measured run.
    started = true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(started);
  EXPECT_EQ(server.calls(), 7);
  EXPECT_EQ(result->warmup_completed, 3);
  EXPECT_EQ(result->records.size(), 4u);
  for (const RequestRecord& r : result->records) EXPECT_LT(r.index, 4u);
}

TEST(RunnerTest, DurationStopsSending) {
  const WorkloadGenerator workload = MakeWorkload(2, 2);
  FakeServer server(milliseconds(10));
  RunnerOptions options;
  options.concurrency = 2;
  options.num_requests = 0;
  options.duration_s = 0.2;
  auto result = RunBenchmark(options, workload, server.fn(), nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  // Each request takes at least 10 ms: at most 2 x 0.2 / 0.01 = 40 are started.
  EXPECT_GE(result->records.size(), 2u);
  EXPECT_LE(result->records.size(), 40u);
  // A request is claimed before 0.2 s; sending it follows within moments (the slack
  // covers a loaded machine between the claim and the send).
  for (const RequestRecord& r : result->records) EXPECT_LT(r.start_s, 0.3);
}

TEST(RunnerTest, OpenLoopSendsOnScheduleWithoutWaitingForCompletions) {
  const WorkloadGenerator workload = MakeWorkload(2, 2);
  FakeServer server(milliseconds(100));  // Each request takes about 100 ms.
  RunnerOptions options;
  options.request_rate = 100;
  options.max_in_flight = 16;
  options.num_requests = 10;
  options.seed = 21;
  auto result = RunBenchmark(options, workload, server.fn(), nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->records.size(), 10u);
  // A closed loop of one would never overlap; arrivals about 10 ms apart must.
  EXPECT_GE(server.peak(), 2);
  // No request leaves before its arrival time: request i arrives at the sum of the
  // first i gaps of the seeded arrival process.
  PoissonArrivals arrivals(100, 21);
  std::vector<double> arrival(10, 0.0);
  for (int i = 1; i < 10; ++i) arrival[i] = arrival[i - 1] + arrivals.NextGapSeconds();
  for (const RequestRecord& r : result->records) {
    EXPECT_GE(r.start_s, arrival[r.index] - 1e-4) << r.index;
  }
}

TEST(RunnerTest, OpenLoopHonoursTheInFlightCap) {
  const WorkloadGenerator workload = MakeWorkload(2, 2);
  FakeServer server(milliseconds(20), /*hold_until_in_flight=*/3);
  RunnerOptions options;
  options.request_rate = 10000;  // Far faster than requests finish.
  options.max_in_flight = 3;
  options.num_requests = 9;
  auto result = RunBenchmark(options, workload, server.fn(), nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(server.peak(), 3);
  EXPECT_EQ(result->records.size(), 9u);
  EXPECT_GT(result->late_dispatches, 0);
}

TEST(RunnerTest, FailuresKeepTheirStatusCode) {
  const WorkloadGenerator workload = MakeWorkload(2, 2);
  std::atomic<int> calls{0};
  GenerateFn flaky = [&calls](const v1::GenerateRequest&,
                              const std::function<bool(const v1::GenerateResponse&)>& on_message) {
    const int call = calls.fetch_add(1);
    if (call % 3 == 0) return absl::ResourceExhaustedError("queue full");
    v1::GenerateResponse message;
    message.add_token_ids(1);
    message.add_token_ids(2);
    if (call % 3 == 2) message.mutable_finished()->set_reason(v1::FINISH_REASON_ABORT);
    on_message(message);  // call % 3 == 1: no finished message at all.
    return absl::OkStatus();
  };
  RunnerOptions options;
  options.concurrency = 1;
  options.num_requests = 6;
  auto result = RunBenchmark(options, workload, flaky, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  int exhausted = 0, internal = 0, aborted = 0;
  for (const RequestRecord& r : result->records) {
    exhausted += r.code == absl::StatusCode::kResourceExhausted;
    internal += r.code == absl::StatusCode::kInternal;
    aborted += r.code == absl::StatusCode::kAborted;
  }
  EXPECT_EQ(exhausted, 2);
  EXPECT_EQ(internal, 2);
  EXPECT_EQ(aborted, 2);
}

TEST(RunnerTest, RejectsUnboundedRuns) {
  const WorkloadGenerator workload = MakeWorkload(1, 1);
  FakeServer server(milliseconds(0));
  RunnerOptions options;
  options.num_requests = 0;
  options.duration_s = 0;
  EXPECT_FALSE(RunBenchmark(options, workload, server.fn(), nullptr).ok());
  options.num_requests = 1;
  options.concurrency = 0;
  EXPECT_FALSE(RunBenchmark(options, workload, server.fn(), nullptr).ok());
  EXPECT_EQ(server.calls(), 0);
}

TEST(RunnerTest, GenerateRequestAsksForExactLength) {
  WorkloadRequest request;
  request.prompt = {5, 6, 7};
  request.output_len = 9;
  const v1::GenerateRequest proto = ToGenerateRequest(request);
  ASSERT_EQ(proto.token_ids().ids_size(), 3);
  EXPECT_EQ(proto.token_ids().ids(2), 7);
  EXPECT_EQ(proto.sampling().max_tokens(), 9);
  EXPECT_TRUE(proto.sampling().ignore_eos());
}

}  // namespace
}  // namespace mla::bench
