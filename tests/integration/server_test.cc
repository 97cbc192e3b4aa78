// Starts mla-server on port 0 with a committed tiny model and talks to it over a real
// socket through the client library.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

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
  MlaClient client(options);
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
  EXPECT_EQ((*server)->Stop(SIGTERM, 20), 0) << (*server)->Log();
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

}  // namespace
}  // namespace mla
