// Starts mla-server on port 0 with a committed tiny model and talks to it over a real
// socket through the client library.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/time/clock.h"
#include "client/mla_client.h"
#include "engine/model/config.h"
#include "tests/integration/server_process.h"

namespace mla {
namespace {

using ::testing::HasSubstr;
using testing::ServerProcess;
using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";

// Waits until the server reports SERVING (the model loads after the port opens).
absl::StatusOr<ServingStatus> WaitServing(MlaClient& client) {
  absl::StatusOr<ServingStatus> status;
  for (int i = 0; i < 600; ++i) {
    status = client.Health();
    if (status.ok() && *status == grpc::health::v1::HealthCheckResponse::SERVING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return status;
}

TEST(ServerIntegrationTest, HealthAndModelInfo) {
  auto server = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.target = (*server)->target();
  auto client_owner = std::make_unique<MlaClient>(options);
  MlaClient& client = *client_owner;
  auto health = WaitServing(client);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING) << (*server)->Log();

  auto config = LoadModelConfig(kModel);
  ASSERT_TRUE(config.ok()) << config.status();
  auto info = client.GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->model_name(), "tiny-v2-lite");
  EXPECT_EQ(info->architecture(), "DeepseekV2ForCausalLM");
  EXPECT_EQ(info->hidden_size(), config->hidden_size);
  EXPECT_EQ(info->num_hidden_layers(), config->num_hidden_layers);
  EXPECT_EQ(info->num_attention_heads(), config->num_attention_heads);
  EXPECT_EQ(info->q_lora_rank(), 0);
  EXPECT_EQ(info->kv_lora_rank(), config->kv_lora_rank);
  EXPECT_EQ(info->qk_rope_head_dim(), config->qk_rope_head_dim);
  EXPECT_EQ(info->vocab_size(), config->vocab_size);
  EXPECT_EQ(info->device(), "cpu");
  EXPECT_GT(info->kv_num_blocks(), 0);
  EXPECT_EQ(info->kv_block_size(), 64);
  // Latent cache: layers x (kv_lora_rank + rope) x 2 bytes; MHA: layers x heads x (nope +
  // rope + v) x 2 bytes.
  const int64_t layers = config->num_hidden_layers;
  EXPECT_EQ(info->kv_bytes_per_token(),
            layers * (config->kv_lora_rank + config->qk_rope_head_dim) * 2);
  EXPECT_EQ(info->mha_bytes_per_token(),
            layers * config->num_attention_heads *
                (config->qk_nope_head_dim + config->qk_rope_head_dim + config->v_head_dim) * 2);
  client_owner.reset();  // An open channel would hold the shutdown's grace period.
  EXPECT_EQ((*server)->Stop(SIGTERM, 20), 0) << (*server)->Log();
}

class GenerateOverGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerProcess::Start(
        {"--model_dir=" + kModel, "--device=cpu", "--kv_cache_mib=16", "--threads=2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ClientOptions options;
    options.target = server_->target();
    client_ = std::make_unique<MlaClient>(options);
    ASSERT_TRUE(WaitServing(*client_).ok());
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    }
  }
  v1::GenerateRequest Request(std::vector<int> prompt, int max_tokens) {
    v1::GenerateRequest r;
    for (int t : prompt) r.mutable_token_ids()->add_ids(t);
    r.mutable_sampling()->set_max_tokens(max_tokens);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }
  pid_t server_pid() const { return server_->pid(); }
  int64_t BlocksUsed() {
    auto load = client_->GetLoad();
    EXPECT_TRUE(load.ok()) << load.status();
    return load.ok() ? load->kv_blocks_used() : -1;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
};

TEST_F(GenerateOverGrpcTest, StreamsGreedyTokensThenFinish) {
  std::vector<int> tokens;
  v1::Finished finished;
  int messages = 0;
  v1::GenerateRequest r = Request({5, 6, 7, 8}, 12);
  r.set_logprobs(2);
  absl::Status s = client_->Generate(r, [&](const v1::GenerateResponse& m) {
    ++messages;
    tokens.insert(tokens.end(), m.token_ids().begin(), m.token_ids().end());
    EXPECT_EQ(m.logprobs_size(), m.token_ids_size());
    if (m.has_finished()) finished = m.finished();
    return true;
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(tokens.size(), 12u);
  EXPECT_GT(messages, 1);  // Streamed, not sent at the end.
  EXPECT_EQ(finished.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(finished.usage().prompt_tokens(), 4);
  EXPECT_EQ(finished.usage().completion_tokens(), 12);
  EXPECT_GT(finished.timings().total_seconds(), 0.0);
  // Greedy is deterministic: the same request gives the same tokens.
  std::vector<int> again;
  ASSERT_TRUE(client_
                  ->Generate(r,
                             [&](const v1::GenerateResponse& m) {
                               again.insert(again.end(), m.token_ids().begin(),
                                            m.token_ids().end());
                               return true;
                             })
                  .ok());
  EXPECT_EQ(again, tokens);
  // A logit bias over gRPC decides greedy decoding; repetition_penalty 0 means unset.
  (*r.mutable_sampling()->mutable_logit_bias())[9] = 100.0f;
  r.mutable_sampling()->set_repetition_penalty(0.0f);
  std::vector<int> biased;
  ASSERT_TRUE(client_
                  ->Generate(r,
                             [&](const v1::GenerateResponse& m) {
                               biased.insert(biased.end(), m.token_ids().begin(),
                                             m.token_ids().end());
                               // Logprobs stay the model's: 9's is not near 0.
                               for (const auto& lp : m.logprobs()) EXPECT_LT(lp.logprob(), -0.5f);
                               return true;
                             })
                  .ok());
  EXPECT_EQ(biased, std::vector<int>(12, 9));
  EXPECT_EQ(BlocksUsed(), 0);
}

TEST_F(GenerateOverGrpcTest, InvalidRequestsGetInvalidArgumentNamingTheField) {
  auto call = [&](const v1::GenerateRequest& r) {
    return client_->Generate(r, [](const v1::GenerateResponse&) { return true; });
  };
  v1::GenerateRequest empty;
  absl::Status s = call(empty);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("prompt"));
  s = call(Request({1, 100000}, 4));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token_ids.ids[1]"));
  v1::GenerateRequest hot = Request({1, 2}, 4);
  hot.mutable_sampling()->set_temperature(-2);
  EXPECT_THAT(call(hot).message(), HasSubstr("temperature"));
  v1::GenerateRequest watch = Request({1, 2}, 4);
  watch.mutable_indexer_watch()->set_begin(5);
  watch.mutable_indexer_watch()->set_end(3);
  EXPECT_EQ(call(watch).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(call(watch).message(), HasSubstr("indexer_watch"));
  v1::GenerateRequest biased = Request({1, 2}, 4);
  (*biased.mutable_sampling()->mutable_logit_bias())[100000] = 1.0f;
  EXPECT_EQ(call(biased).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(call(biased).message(), HasSubstr("sampling.logit_bias: token 100000"));
  v1::GenerateRequest penalized = Request({1, 2}, 4);
  penalized.mutable_sampling()->set_frequency_penalty(-3.0f);
  EXPECT_THAT(call(penalized).message(), HasSubstr("sampling.frequency_penalty"));
  v1::GenerateRequest text;
  text.set_text("hello");
  EXPECT_EQ(call(text).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->Abort("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(GenerateOverGrpcTest, CancelledStreamAbortsAndFreesBlocks) {
  int seen = 0;
  absl::Status s = client_->Generate(Request({1, 2, 3}, 20000), [&](const v1::GenerateResponse&) {
    return ++seen < 3;  // Cancel after three messages.
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  for (int i = 0; i < 200 && BlocksUsed() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(BlocksUsed(), 0);
}

TEST_F(GenerateOverGrpcTest, AbortFromAnotherConnection) {
  v1::GenerateRequest r = Request({1, 2, 3}, 20000);
  r.set_request_id("long-one");
  v1::Finished finished;
  std::thread aborter;
  absl::Status s = client_->Generate(r, [&](const v1::GenerateResponse& m) {
    if (!aborter.joinable()) {
      aborter = std::thread([this] {
        ClientOptions o;
        o.target = server_->target();
        MlaClient other(o);
        EXPECT_TRUE(other.Abort("long-one").ok());
      });
    }
    if (m.has_finished()) finished = m.finished();
    return true;
  });
  aborter.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(finished.reason(), v1::FINISH_REASON_ABORT);
  EXPECT_LT(finished.usage().completion_tokens(), 20000);
  EXPECT_EQ(BlocksUsed(), 0);
}

TEST_F(GenerateOverGrpcTest, SigtermDrainsInFlightStreamsThenExitsZero) {
  std::vector<int> tokens;
  v1::Finished finished;
  std::atomic<bool> signalled{false}, checked{false};
  std::thread stream([&] {
    EXPECT_TRUE(client_
                    ->Generate(Request({1, 2, 3}, 3000),
                               [&](const v1::GenerateResponse& m) {
                                 tokens.insert(tokens.end(), m.token_ids().begin(),
                                               m.token_ids().end());
                                 if (!signalled.exchange(true)) {
                                   kill(server_pid(), SIGTERM);
                                   // Hold this stream open (unread) until the checks below are
                                   // done: the drain must wait for it.
                                   while (!checked.load())
                                     std::this_thread::sleep_for(std::chrono::milliseconds(1));
                                 }
                                 if (m.has_finished()) finished = m.finished();
                                 return true;
                               })
                    .ok());
  });
  while (!signalled.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // While draining: not serving, and new streams are refused with UNAVAILABLE.
  ClientOptions o;
  o.target = server_->target();
  MlaClient other(o);
  // The server handles the signal on its own thread: poll until it has (a few ms).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> health;
  do {
    health = other.Health();
  } while (health.ok() && *health != grpc::health::v1::HealthCheckResponse::NOT_SERVING &&
           absl::Now() < deadline);
  EXPECT_TRUE(health.ok()) << health.status();
  if (health.ok()) {
    EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  // Health turns NOT_SERVING just before Generate starts refusing.
  absl::Status refused;
  do {
    refused = other.Generate(Request({4, 5}, 4), [](const v1::GenerateResponse&) { return true; });
  } while (refused.ok() && absl::Now() < deadline);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  checked = true;
  stream.join();
  // The in-flight stream finished normally with every token.
  EXPECT_EQ(finished.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(tokens.size(), 3000u);
  client_.reset();
  EXPECT_EQ(server_->Stop(0, 30), 0) << server_->Log();
  server_.reset();
}

// Past --drain_timeout_s the live requests are aborted, and each stream still gets its
// last message (FINISH_REASON_ABORT with usage and timings) before the transport closes;
// clients once saw only "UNAVAILABLE: Cancelling all calls".
TEST(ServerIntegrationTest, DrainTimeoutEndsStreamsWithAFinalAbortMessage) {
  auto server = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", "--kv_cache_mib=64",
                                      "--threads=2", "--drain_timeout_s=1"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.target = (*server)->target();
  auto client = std::make_unique<MlaClient>(options);
  ASSERT_TRUE(WaitServing(*client).ok());
  constexpr int kStreams = 2;
  constexpr int kMaxTokens = 100000;  // Far more than one second of decoding.
  std::atomic<int> started{0};
  std::vector<absl::Status> statuses(kStreams);
  std::vector<v1::Finished> finished(kStreams);
  std::vector<std::thread> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.emplace_back([&, i] {
      v1::GenerateRequest r;
      r.set_request_id("drained-" + std::to_string(i));
      for (int t : {1, 2, 3}) r.mutable_token_ids()->add_ids(t);
      r.mutable_sampling()->set_max_tokens(kMaxTokens);
      r.mutable_sampling()->set_ignore_eos(true);
      bool first = true;
      statuses[i] = client->Generate(r, [&, i](const v1::GenerateResponse& m) {
        if (first) started.fetch_add(1);
        first = false;
        if (m.has_finished()) finished[i] = m.finished();
        return true;
      });
    });
  }
  while (started.load() < kStreams) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const absl::Time signalled = absl::Now();
  kill((*server)->pid(), SIGTERM);
  for (std::thread& t : streams) t.join();
  const absl::Duration took = absl::Now() - signalled;
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << statuses[i];
    EXPECT_EQ(finished[i].reason(), v1::FINISH_REASON_ABORT) << i;
    EXPECT_GT(finished[i].usage().completion_tokens(), 0);
    EXPECT_LT(finished[i].usage().completion_tokens(), kMaxTokens);
    EXPECT_EQ(finished[i].usage().prompt_tokens(), 3);
    EXPECT_GT(finished[i].timings().total_seconds(), 0.9);
  }
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(10));
  client.reset();
  EXPECT_EQ((*server)->Stop(0, 30), 0) << (*server)->Log();
  EXPECT_THAT((*server)->Log(), HasSubstr("drain timeout: 2 request(s) still live are aborted"));
}

TEST(ServerIntegrationTest, MissingModelFailsWithClearError) {
  const std::string dir = ::testing::TempDir() + "/no-model";
  std::filesystem::create_directories(dir);
  auto server = ServerProcess::Start({"--model_dir=" + dir, "--device=cpu"});
  // The server listens before loading; it then exits 1 naming the missing file.
  if (server.ok()) {
    EXPECT_EQ((*server)->Stop(0, 20), 1);
    EXPECT_THAT((*server)->Log(), HasSubstr("config.json"));
  } else {
    EXPECT_THAT(server.status().message(), HasSubstr("config.json"));
  }
}

TEST(ServerIntegrationTest, InvalidConfigNamesTheField) {
  const std::string dir = ::testing::TempDir() + "/bad-config";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"hidden_size": 64})";
  auto server = ServerProcess::Start({"--model_dir=" + dir, "--device=cpu"});
  if (server.ok()) {
    EXPECT_EQ((*server)->Stop(0, 20), 1);
    EXPECT_THAT((*server)->Log(), HasSubstr("num_hidden_layers"));
  } else {
    EXPECT_THAT(server.status().message(), HasSubstr("num_hidden_layers"));
  }
}

TEST(ServerIntegrationTest, BadCacheFlagsNameTheFlag) {
  const std::pair<std::string, std::string> cases[] = {
      {"--kv_cache_dtype=int4", "--kv_cache_dtype"},
      {"--indexer_key_dtype=int8", "--indexer_key_dtype"},
      {"--kv_cache_mib=0", "--kv_cache_mib must be in [1, 2^40], got 0"},
      {"--kv_cache_mib=-3", "--kv_cache_mib must be in [1, 2^40], got -3"},
      {"--gpu_memory_fraction=1.5", "--gpu_memory_fraction must be in [0, 1]"},
  };
  for (const auto& [flag, expected] : cases) {
    auto server = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", flag});
    if (server.ok()) {
      EXPECT_EQ((*server)->Stop(0, 20), 1) << flag;
      EXPECT_THAT((*server)->Log(), HasSubstr(expected));
    } else {
      EXPECT_THAT(server.status().message(), HasSubstr(expected));
    }
  }
}

// An fp8 cache: ModelInfo and GetLoad say so, with the layout's bytes per token, and the
// same budget holds more blocks than bf16 does. --indexer_key_dtype on a model without
// DeepSeek-V3.2's indexer is logged as having no effect.
TEST(ServerIntegrationTest, Fp8CacheIsReportedAndServes) {
  auto server =
      ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", "--kv_cache_dtype=fp8",
                            "--kv_cache_mib=4", "--indexer_key_dtype=fp8"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.target = (*server)->target();
  auto client = std::make_unique<MlaClient>(options);
  ASSERT_TRUE(WaitServing(*client).ok()) << (*server)->Log();
  auto config = LoadModelConfig(kModel);
  ASSERT_TRUE(config.ok()) << config.status();
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kv_cache_dtype(), "fp8_e4m3");
  EXPECT_EQ(info->indexer_key_dtype(), "");  // A model without DeepSeek-V3.2's indexer.
  EXPECT_THAT((*server)->Log(), HasSubstr("--indexer_key_dtype has no effect"));
  // One fp32 scale for the 32 latent values, which stay one byte each; k_pe in bf16.
  const int64_t per_layer = config->kv_lora_rank + 4 + 2 * config->qk_rope_head_dim;
  EXPECT_EQ(info->kv_bytes_per_token(), config->num_hidden_layers * per_layer);
  EXPECT_EQ(info->kv_num_blocks(), (int64_t{4} << 20) / (64 * info->kv_bytes_per_token()));
  auto load = client->GetLoad();
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ(load->kv_cache_dtype(), "fp8_e4m3");
  EXPECT_EQ(load->kv_bytes_per_token(), info->kv_bytes_per_token());
  client.reset();
  EXPECT_EQ((*server)->Stop(SIGTERM, 20), 0) << (*server)->Log();
}

// The disk tier across a graceful restart: a long prompt's prefix blocks are written
// behind the engine, SIGTERM flushes them, and the next server process serves the same
// prompt's prefix from disk with the same tokens.
TEST(ServerIntegrationTest, DiskTierServesARepeatedPromptAfterARestart) {
  const std::string dir = ::testing::TempDir() + "/server-kv-disk";
  std::filesystem::remove_all(dir);
  std::vector<int> prompt(300);
  for (int i = 0; i < 300; ++i) prompt[i] = 2 + (i * 37) % 500;
  struct Result {
    std::vector<int> tokens;
    int64_t cached = -1;
  };
  auto serve_once = [&](v1::Load* load) {
    Result out;
    auto server = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", "--threads=2",
                                        "--kv_disk_dir=" + dir, "--kv_disk_gib=0.01"});
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return out;
    ClientOptions options;
    options.target = (*server)->target();
    auto client = std::make_unique<MlaClient>(options);
    EXPECT_TRUE(WaitServing(*client).ok());
    v1::GenerateRequest r;
    for (int t : prompt) r.mutable_token_ids()->add_ids(t);
    r.mutable_sampling()->set_max_tokens(8);
    r.mutable_sampling()->set_ignore_eos(true);
    EXPECT_TRUE(client
                    ->Generate(r,
                               [&](const v1::GenerateResponse& m) {
                                 out.tokens.insert(out.tokens.end(), m.token_ids().begin(),
                                                   m.token_ids().end());
                                 if (m.has_finished())
                                   out.cached = m.finished().usage().cached_prompt_tokens();
                                 return true;
                               })
                    .ok());
    auto got = client->GetLoad();
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok()) *load = *got;
    client.reset();
    EXPECT_EQ((*server)->Stop(SIGTERM, 20), 0) << (*server)->Log();
    return out;
  };
  v1::Load load;
  const Result cold = serve_once(&load);
  EXPECT_EQ(cold.cached, 0);
  EXPECT_TRUE(load.kv_disk_enabled());
  const Result warm = serve_once(&load);
  EXPECT_EQ(warm.cached, 256);  // 4 whole blocks of 64 (the last token is computed)
  EXPECT_EQ(warm.tokens, cold.tokens);
  EXPECT_EQ(load.kv_disk_hit_tokens(), 256);
  EXPECT_GE(load.kv_disk_blocks(), 4);
  EXPECT_EQ(load.kv_disk_corrupt_skipped(), 0);
}

}  // namespace
}  // namespace mla
