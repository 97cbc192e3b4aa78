// Client deadlines end a Generate with DEADLINE_EXCEEDED, and the server then aborts
// the request in the engine: nothing keeps running or holding cache blocks.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "client/mla_client.h"
#include "tests/integration/client_waits.h"
#include "tests/integration/server_process.h"

namespace mla {
namespace {

using testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
// Long enough that finishing naturally would take far longer than the idle polls below
// (tens of seconds on one CPU core), yet within the 16 MiB cache's 69904 tokens.
constexpr int kLongTokens = 60000;

class DeadlineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerProcess::Start(
        {"--model_dir=" + kModel, "--device=cpu", "--kv_cache_mib=16", "--threads=2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = NewClient(std::chrono::milliseconds(0));
    ASSERT_TRUE(testing::WaitUntilServing(*client_, *server_)) << server_->Log();
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    }
  }
  std::unique_ptr<MlaClient> NewClient(std::chrono::milliseconds timeout) {
    ClientOptions options;
    options.target = server_->target();
    options.timeout = timeout;
    return std::make_unique<MlaClient>(options);
  }
  static v1::GenerateRequest LongRequest(const std::string& id) {
    v1::GenerateRequest r;
    r.set_request_id(id);
    for (int t : {3, 4, 5, 6}) r.mutable_token_ids()->add_ids(t);
    r.mutable_sampling()->set_max_tokens(kLongTokens);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }
  // Polls GetLoad until nothing runs, waits or holds a block (blocks that only keep a
  // cached prefix are free); returns the last load.
  v1::Load WaitIdle() {
    absl::StatusOr<v1::Load> load = testing::WaitUntilIdle(*client_);
    EXPECT_TRUE(load.ok()) << load.status();
    return load.ok() ? *load : v1::Load();
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
};

TEST_F(DeadlineTest, ShortDeadlineEndsDeadlineExceededAndAbortsTheRequest) {
  std::unique_ptr<MlaClient> hurried = NewClient(std::chrono::milliseconds(700));
  const auto start = std::chrono::steady_clock::now();
  auto seconds_since_start = [&start] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  int tokens = 0;
  bool seen_live = false;
  absl::Status s = hurried->Generate(LongRequest("deadline-1"), [&](const v1::GenerateResponse& m) {
    tokens += m.token_ids_size();
    EXPECT_FALSE(m.has_finished());  // The deadline, not the length, must end it.
    if (!seen_live) {
      auto load = client_->GetLoad();
      seen_live = load.ok() && load->num_requests_running() == 1 && load->kv_blocks_used() > 0;
    }
    return true;
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  const double call_s = seconds_since_start();
  EXPECT_GT(tokens, 0);
  EXPECT_LT(tokens, kLongTokens);
  EXPECT_TRUE(seen_live) << "the request never showed in GetLoad";

  const v1::Load load = WaitIdle();
  EXPECT_EQ(load.num_requests_running(), 0);
  EXPECT_EQ(load.num_requests_waiting(), 0);
  EXPECT_EQ(load.kv_blocks_used(), 0);
  // Idle long before the request could have finished at the rate it was streaming.
  const double natural_s = call_s * kLongTokens / std::max(tokens, 1);
  EXPECT_LT(seconds_since_start(), natural_s / 2) << tokens << " tokens in " << call_s << " s";
  // No longer live in the engine: the id is unknown to Abort and free for reuse.
  EXPECT_EQ(client_->Abort("deadline-1").code(), absl::StatusCode::kNotFound);
  v1::GenerateRequest again = LongRequest("deadline-1");
  again.mutable_sampling()->set_max_tokens(4);
  int again_tokens = 0;
  const absl::Status reused = client_->Generate(again, [&](const v1::GenerateResponse& m) {
    again_tokens += m.token_ids_size();
    return true;
  });
  EXPECT_TRUE(reused.ok()) << reused;
  EXPECT_EQ(again_tokens, 4);
}

TEST_F(DeadlineTest, DeadlinesOfConcurrentStreamsAllFreeTheirBlocks) {
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([this, i, &results] {
      std::unique_ptr<MlaClient> hurried = NewClient(std::chrono::milliseconds(300 + 150 * i));
      results[i] = hurried->Generate(LongRequest("deadline-many-" + std::to_string(i)),
                                     [](const v1::GenerateResponse&) { return true; });
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  }
  const v1::Load load = WaitIdle();
  EXPECT_EQ(load.num_requests_running(), 0);
  EXPECT_EQ(load.kv_blocks_used(), 0);
}

TEST_F(DeadlineTest, GenerousDeadlineLetsTheRequestFinish) {
  std::unique_ptr<MlaClient> patient = NewClient(std::chrono::milliseconds(30000));
  v1::GenerateRequest r = LongRequest("deadline-ok");
  r.mutable_sampling()->set_max_tokens(16);
  v1::Finished finished;
  absl::Status s = patient->Generate(r, [&](const v1::GenerateResponse& m) {
    if (m.has_finished()) finished = m.finished();
    return true;
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(finished.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(finished.usage().completion_tokens(), 16);
}

}  // namespace
}  // namespace mla
