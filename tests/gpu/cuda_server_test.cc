// mla-server with --device=cuda end to end over gRPC: the model is served on the GPU,
// GetModelInfo names it, greedy generation gives the CPU server's tokens, a cancelled
// stream frees its blocks, the memory gauges report device memory by kind, and an explicit
// --kv_cache_mib caps the cache the memory fraction allows. Skips without a usable CUDA device;
// tests/engine/cuda_emu runs it on the CPU emulator.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/mla_client.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/integration/client_waits.h"
#include "tests/integration/server_process.h"
#include "tests/server/http/http_get.h"
#include "tests/server/metrics/exposition_parser.h"

namespace mla {
namespace {

using testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";

struct Served {
  std::unique_ptr<ServerProcess> server;
  std::unique_ptr<MlaClient> client;
  int metrics_port = 0;
};

Served Serve(const std::string& device) {
  Served s;
  const std::string port_file =
      ::testing::TempDir() + "/mla-cuda-server-metrics-" + device + "-" + std::to_string(getpid());
  auto server =
      ServerProcess::Start({"--model_dir=" + kModel, "--device=" + device, "--kv_cache_mib=16",
                            "--gpu_memory_fraction=0.2", "--threads=2",
                            "--metrics_address=127.0.0.1:0", "--metrics_port_file=" + port_file});
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return s;
  s.server = std::move(*server);
  // The metrics port file is written before the gRPC one, which Start waited for.
  std::ifstream(port_file) >> s.metrics_port;
  ClientOptions options;
  options.target = s.server->target();
  s.client = std::make_unique<MlaClient>(options);
  // Loading takes a while on a device (and longer on the emulator).
  if (!testing::WaitUntilServing(*s.client, *s.server, absl::Seconds(120))) {
    ADD_FAILURE() << "mla-server --device=" << device << " is not serving:\n" << s.server->Log();
    s.client.reset();
  }
  return s;
}

std::vector<int> Greedy(MlaClient& client, const std::vector<int>& prompt, int max_tokens) {
  v1::GenerateRequest r;
  for (int t : prompt) r.mutable_token_ids()->add_ids(t);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_ignore_eos(true);
  std::vector<int> tokens;
  const absl::Status s = client.Generate(r, [&](const v1::GenerateResponse& m) {
    tokens.insert(tokens.end(), m.token_ids().begin(), m.token_ids().end());
    return true;
  });
  EXPECT_TRUE(s.ok()) << s;
  return tokens;
}

TEST(CudaServerTest, GeneratesTheCpuServersGreedyTokensOnTheGpu) {
  MLA_SKIP_WITHOUT_CUDA();
  Served gpu = Serve("cuda");
  ASSERT_NE(gpu.client, nullptr);
  auto info = gpu.client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->device().rfind("cuda:0 (", 0), 0u) << info->device();
  EXPECT_NE(gpu.server->Log().find("device memory plan"), std::string::npos) << gpu.server->Log();
  // --kv_cache_mib=16, given, caps the cache that --gpu_memory_fraction=0.2 would allow.
  EXPECT_NE(gpu.server->Log().find("cache capped at"), std::string::npos) << gpu.server->Log();
  EXPECT_LE(info->kv_num_blocks() * info->kv_block_size() * info->kv_bytes_per_token(), 16 << 20);
  EXPECT_GT(info->kv_num_blocks() * info->kv_block_size() * info->kv_bytes_per_token(), 15 << 20);

  const std::vector<int> prompt = {5, 17, 42, 8, 99, 3, 61, 7, 7, 12};
  const std::vector<int> on_gpu = Greedy(*gpu.client, prompt, 12);
  ASSERT_EQ(on_gpu.size(), 12u);
  // A second request reuses the cached prefix on the device and must agree.
  EXPECT_EQ(Greedy(*gpu.client, prompt, 12), on_gpu);

  // Cancelling a stream mid-generation frees its device blocks.
  v1::GenerateRequest r;
  for (int t : prompt) r.mutable_token_ids()->add_ids(t);
  r.mutable_sampling()->set_max_tokens(20000);
  r.mutable_sampling()->set_ignore_eos(true);
  int seen = 0;
  (void)gpu.client->Generate(r, [&](const v1::GenerateResponse&) { return ++seen < 3; });
  auto load = testing::WaitUntilIdle(*gpu.client);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ(load->num_requests_running(), 0);
  EXPECT_EQ(load->kv_blocks_used(), 0);

  // The memory gauges name the GPU and report its memory by kind.
  auto scraped = testing::HttpGet(gpu.metrics_port, "/metrics");
  ASSERT_TRUE(scraped.ok()) << scraped.status();
  auto metrics = testing::ParseExposition(scraped->body);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  auto memory = [&](const std::string& kind) {
    const std::string key =
        "mla_memory_bytes{kind=\"" + kind + "\",device=\"" + info->device() + "\"}";
    const auto it = metrics->samples.find(key);
    EXPECT_NE(it, metrics->samples.end()) << key << " missing in\n" << scraped->body;
    return it == metrics->samples.end() ? -1.0 : it->second;
  };
  EXPECT_EQ(memory("kv_cache"), static_cast<double>(info->kv_num_blocks() * info->kv_block_size() *
                                                    info->kv_bytes_per_token()));
  EXPECT_GT(memory("weights"), 0);
  EXPECT_GT(memory("workspace"), 0);

  Served cpu = Serve("cpu");
  ASSERT_NE(cpu.client, nullptr);
  EXPECT_EQ(Greedy(*cpu.client, prompt, 12), on_gpu)
      << "the GPU's bf16 GEMM inputs flipped a greedy token (see cuda_backend_test's margins)";
  gpu.client.reset();
  cpu.client.reset();
  EXPECT_EQ(gpu.server->Stop(SIGTERM, 20), 0) << gpu.server->Log();
  EXPECT_EQ(cpu.server->Stop(SIGTERM, 20), 0) << cpu.server->Log();
}

}  // namespace
}  // namespace mla
