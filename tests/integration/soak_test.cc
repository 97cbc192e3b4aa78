// Soak: 200 mixed requests at 16-way concurrency against a live mla-server whose KV cache
// is small enough to fill and preempt, with client cancellations and aborts from another
// channel racing the engine. Afterwards every call must have ended cleanly and the
// server must be idle, healthy and still able to generate.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "client/mla_client.h"
#include "tests/integration/client_waits.h"
#include "tests/integration/server_process.h"
#include "tests/server/http/http_get.h"
#include "tests/server/metrics/exposition_parser.h"

namespace mla {
namespace {

using testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
constexpr int kRequests = 200;
constexpr int kConcurrency = 16;
constexpr int kVocab = 512;
// Cache geometry: 1 MiB of bf16 latent cache at 240 bytes per token holds 4369 tokens,
// more than 16 sequences of at most 200 + 64 tokens need. Blocks of 192 tokens make it
// 22 blocks, and every sequence longer than 192 tokens takes two: the mix below needs
// more than 22, so admission waits and decodes preempt.
constexpr int kBlockSize = 192;

struct Plan {
  std::string id;
  std::vector<int> prompt;
  int max_tokens = 1;
  bool sampled = false;
  bool ignore_eos = true;
  int cancel_after = -1;  // Cancel once this many tokens arrived; -1: never.
  bool abort = false;     // Aborted by id from another channel after the first message.
};

struct Outcome {
  absl::Status status;
  int tokens = 0;
  bool finished = false;
  v1::Finished finish;
};

// Deterministic plans with prompt lengths 1..200 and max_tokens 1..64: a quarter share
// one of two prefixes of a full cache block, a quarter are long (prompt 120..200,
// max_tokens 40..64), the rest uniform. A third are sampled, an eighth cancelled by the
// client after a random number of tokens, every 25th aborted by id.
std::vector<Plan> MakePlans() {
  std::mt19937 rng(20261128);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<std::vector<int>> prefixes(2);
  for (auto& prefix : prefixes) {
    for (int i = 0; i < kBlockSize; ++i) prefix.push_back(uniform(2, kVocab - 1));
  }
  std::vector<Plan> plans(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    Plan& p = plans[i];
    p.id = "soak-" + std::to_string(i);
    int length = uniform(1, 200);
    p.max_tokens = uniform(1, 64);
    if (i % 4 == 1) {
      p.prompt = prefixes[uniform(0, 1)];
      length = uniform(kBlockSize + 1, 200);
    } else if (i % 4 == 2) {
      length = uniform(120, 200);
      p.max_tokens = uniform(40, 64);
    }
    if (i == 0) length = 1;
    while (static_cast<int>(p.prompt.size()) < length) p.prompt.push_back(uniform(2, kVocab - 1));
    p.sampled = i % 3 == 0;
    p.ignore_eos = i % 2 == 0;
    if (i % 25 == 7) {
      p.abort = true;
      p.max_tokens = 64;  // Long enough for the abort to usually land before the end.
      p.ignore_eos = true;
    } else if (i % 8 == 3) {
      p.cancel_after = uniform(1, p.max_tokens);
    }
  }
  return plans;
}

v1::GenerateRequest ToRequest(const Plan& p, int index) {
  v1::GenerateRequest r;
  r.set_request_id(p.id);
  for (int t : p.prompt) r.mutable_token_ids()->add_ids(t);
  v1::SamplingParams* s = r.mutable_sampling();
  s->set_max_tokens(p.max_tokens);
  s->set_ignore_eos(p.ignore_eos);
  if (p.sampled) {
    s->set_temperature(0.9f);
    s->set_top_p(0.95f);
    s->set_seed(index);
    s->set_has_seed(true);
  }
  return r;
}

// Ids to abort, handed from the generating threads to the aborting one.
class AbortQueue {
 public:
  void Push(std::string id) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.push_back(std::move(id));
    cv_.notify_one();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_one();
  }
  // False once closed and drained.
  bool Pop(std::string* id) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return closed_ || !ids_.empty(); });
    if (ids_.empty()) return false;
    *id = ids_.front();
    ids_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> ids_;
  bool closed_ = false;
};

Outcome RunOne(MlaClient& client, const Plan& plan, int index, AbortQueue& aborts) {
  Outcome out;
  bool first = true;
  out.status = client.Generate(ToRequest(plan, index), [&](const v1::GenerateResponse& m) {
    out.tokens += m.token_ids_size();
    if (m.has_finished()) {
      out.finished = true;
      out.finish = m.finished();
    }
    if (first && plan.abort) aborts.Push(plan.id);
    first = false;
    return plan.cancel_after < 0 || out.tokens < plan.cancel_after;
  });
  return out;
}

// Checks one call's ending against its plan; returns whether it ended by an abort.
bool CheckOutcome(const Plan& plan, const Outcome& out) {
  SCOPED_TRACE(plan.id);
  if (out.status.code() == absl::StatusCode::kCancelled) {
    EXPECT_GE(plan.cancel_after, 0) << "only client-cancelled calls may end CANCELLED";
    return false;
  }
  EXPECT_TRUE(out.status.ok()) << out.status;
  if (!out.status.ok()) return false;
  EXPECT_TRUE(out.finished);
  EXPECT_EQ(out.finish.usage().completion_tokens(), out.tokens);
  EXPECT_EQ(out.finish.usage().prompt_tokens(), static_cast<int>(plan.prompt.size()));
  EXPECT_LE(out.tokens, plan.max_tokens);
  switch (out.finish.reason()) {
    case v1::FINISH_REASON_ABORT:
      EXPECT_TRUE(plan.abort);
      return true;
    case v1::FINISH_REASON_LENGTH:
      EXPECT_EQ(out.tokens, plan.max_tokens);
      break;
    case v1::FINISH_REASON_STOP:
      EXPECT_FALSE(plan.ignore_eos);
      break;
    default:
      ADD_FAILURE() << "finish reason " << out.finish.reason();
  }
  return false;
}

class SoakTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = ::testing::TempDir() + "/mla-soak-" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    const std::string metrics_port_file = dir + "/metrics_port";
    auto server = ServerProcess::Start(
        {"--model_dir=" + kModel, "--device=cpu", "--threads=2", "--kv_cache_mib=1",
         "--block_size=" + std::to_string(kBlockSize), "--metrics_address=127.0.0.1:0",
         "--metrics_port_file=" + metrics_port_file});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    std::ifstream(metrics_port_file) >> metrics_port_;
    ClientOptions options;
    options.target = server_->target();
    client_ = std::make_unique<MlaClient>(options);
    ASSERT_TRUE(testing::WaitUntilServing(*client_, *server_)) << server_->Log();
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    }
  }
  double Metric(const std::string& series) {
    auto page = testing::HttpGet(metrics_port_, "/metrics");
    if (!page.ok()) return -1;
    auto parsed = testing::ParseExposition(page->body);
    if (!parsed.ok() || parsed->samples.count(series) == 0) return -1;
    return parsed->samples.at(series);
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
  int metrics_port_ = 0;
};

TEST_F(SoakTest, MixedLoadWithCancelsAndAbortsEndsIdleAndHealthy) {
  const std::vector<Plan> plans = MakePlans();
  std::vector<Outcome> outcomes(plans.size());
  std::atomic<int> next{0};
  AbortQueue aborts;
  std::vector<absl::Status> abort_results;
  std::thread aborter([&] {
    ClientOptions o;
    o.target = server_->target();
    MlaClient other(o);  // Its own channel.
    std::string id;
    while (aborts.Pop(&id)) abort_results.push_back(other.Abort(id));
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < kConcurrency; ++w) {
    workers.emplace_back([&] {
      for (int i = next++; i < kRequests; i = next++) {
        outcomes[i] = RunOne(*client_, plans[i], i, aborts);
      }
    });
  }
  for (std::thread& t : workers) t.join();
  aborts.Close();
  aborter.join();

  int cancelled = 0, aborted = 0, cached_tokens = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    if (CheckOutcome(plans[i], outcomes[i])) ++aborted;
    if (outcomes[i].status.code() == absl::StatusCode::kCancelled) ++cancelled;
    cached_tokens += outcomes[i].finish.usage().cached_prompt_tokens();
  }
  for (const absl::Status& s : abort_results) {
    // NOT_FOUND: the request finished before the abort arrived.
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kNotFound) << s;
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_GT(aborted, 0);
  EXPECT_GT(cached_tokens, 0) << "the shared prefixes never hit the prefix cache";
  const double preemptions = Metric("mla_preemptions_total");
  EXPECT_GT(preemptions, 0) << "the cache never filled up";
  std::cout << "cancelled " << cancelled << ", aborted " << aborted << " (of "
            << abort_results.size() << " aborts sent), prefix-cached prompt tokens "
            << cached_tokens << ", preemptions " << preemptions << "\n";

  // Idle: nothing running or waiting, no block held by a request (blocks that only keep
  // a cached prefix count as free).
  absl::StatusOr<v1::Load> load = testing::WaitUntilIdle(*client_);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ(load->num_requests_running(), 0);
  EXPECT_EQ(load->num_requests_waiting(), 0);
  EXPECT_EQ(load->kv_blocks_used(), 0);
  EXPECT_EQ(load->kv_blocks_free() + load->kv_blocks_cached_free(), load->kv_blocks_total());
  auto health = client_->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);

  // Still serving: a final greedy request runs to its length.
  Plan last;
  last.id = "soak-final";
  last.prompt = {1, 2, 3, 4};
  last.max_tokens = 8;
  Outcome final_outcome = RunOne(*client_, last, 0, aborts);
  ASSERT_TRUE(final_outcome.status.ok()) << final_outcome.status;
  EXPECT_EQ(final_outcome.finish.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(final_outcome.tokens, 8);
}

}  // namespace
}  // namespace mla
