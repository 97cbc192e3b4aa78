// Backpressure over real sockets: a client that stops reading has its request aborted
// once its unread tokens pass --max_unread_tokens (the engine never waits for it), and a
// full waiting queue refuses new streams with RESOURCE_EXHAUSTED and a retry hint.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "client/mla_client.h"
#include "mla/v1/inference.grpc.pb.h"
#include "tests/integration/client_waits.h"
#include "tests/integration/server_process.h"

namespace mla {
namespace {

using ::testing::HasSubstr;
using testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";

v1::GenerateRequest LongRequest(int max_tokens) {
  v1::GenerateRequest request;
  for (int t : {5, 6, 7, 8}) request.mutable_token_ids()->add_ids(t);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

class BackpressureTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags) {
    flags.push_back("--model_dir=" + kModel);
    flags.push_back("--device=cpu");
    flags.push_back("--threads=1");
    flags.push_back("--metrics_address=");
    auto server = ServerProcess::Start(flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ClientOptions options;
    options.target = server_->target();
    client_ = std::make_unique<MlaClient>(options);
    ASSERT_TRUE(testing::WaitUntilServing(*client_, *server_)) << server_->Log();
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 30), 0) << server_->Log();
    }
  }
  // Polls GetLoad until no request runs or waits and no block is in use.
  void ExpectIdle() {
    absl::StatusOr<v1::Load> load = testing::WaitUntilIdle(*client_);
    ASSERT_TRUE(load.ok()) << load.status();
    EXPECT_EQ(load->num_requests_running() + load->num_requests_waiting(), 0);
    EXPECT_EQ(load->kv_blocks_used(), 0);
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
};

TEST_F(BackpressureTest, StalledReaderIsAbortedAndItsBlocksFreed) {
  Start({"--max_unread_tokens=64"});
  // A small HTTP/2 window without BDP probing: the server's writes stall as soon as the
  // client stops reading, so unread tokens pile up on the server side.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto channel =
      grpc::CreateCustomChannel(server_->target(), grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Inference::NewStub(channel);
  v1::GenerateRequest request = LongRequest(100000);
  request.set_logprobs(20);  // Big messages fill the window quickly.
  grpc::ClientContext ctx;
  auto stream = stub->Generate(&ctx, request);
  v1::GenerateResponse message;
  ASSERT_TRUE(stream->Read(&message));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // Stop reading.
  int tokens = message.token_ids_size();
  while (stream->Read(&message)) tokens += message.token_ids_size();
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("not reading"));
  EXPECT_LT(tokens, 100000);
  ExpectIdle();
  EXPECT_THAT(server_->Log(), HasSubstr("stopped reading"));
}

TEST_F(BackpressureTest, FullWaitingQueueRefusesWithRetryHint) {
  // The running request must still run when the third arrives. The tiny model decodes
  // ~15k tokens/s, and the server buffers the tokens this test never reads, so the request
  // is long (150k tokens: seconds even on a fast machine) and the unread bound is above it
  // (it would otherwise be aborted as a stalled reader, letting the second one run).
  Start({"--max_running=1", "--max_waiting=1", "--max_unread_tokens=1000000"});
  // One connection per stream, so that the running stream's unread tokens (which fill its
  // HTTP/2 flow-control window) have no say in the others. Channels with distinct
  // arguments do not share a connection.
  auto new_stub = [&](int index) {
    grpc::ChannelArguments args;
    args.SetInt("mla.test_connection", index);
    return v1::Inference::NewStub(
        grpc::CreateCustomChannel(server_->target(), grpc::InsecureChannelCredentials(), args));
  };
  auto stub = new_stub(0);
  auto waiting_stub = new_stub(1);
  grpc::ClientContext running_ctx, waiting_ctx;
  auto running = stub->Generate(&running_ctx, LongRequest(150000));
  v1::GenerateResponse message;
  ASSERT_TRUE(running->Read(&message));  // Running: the one slot of the batch is taken.
  auto waiting = waiting_stub->Generate(&waiting_ctx, LongRequest(4));
  absl::Status refused;
  grpc::ClientContext refused_ctx;
  // The third request must reach the server after the second is queued, or the two swap
  // roles (the third waits behind the running one until its deadline). On a loaded
  // machine that can take a while: wait up to 60 s, while the running request (150k
  // tokens) still runs. The second is sent the moment the first's stream starts, within
  // the engine step that made its first token: the engine once counted the running
  // request as waiting until that step ended and refused the second (1 run in 8 with both
  // cores busy; EngineTest.RequestSubmittedOnAnotherFirstTokenQueuesBehindIt).
  bool queued = false;
  for (int i = 0; i < 3000 && !queued; ++i) {
    auto load = client_->GetLoad();
    queued = load.ok() && load->num_requests_waiting() >= 1;
    if (!queued) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!queued) {
    waiting_ctx.TryCancel();
    while (waiting->Read(&message)) {
    }
    const grpc::Status ws = waiting->Finish();
    FAIL() << "the second request was never queued; it ended " << ws.error_code() << " "
           << ws.error_message()
           << "; last load: " << (client_->GetLoad().ok() ? client_->GetLoad()->DebugString() : "?")
           << "\n"
           << server_->Log();
  }
  refused_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto third_stub = new_stub(2);  // Outlives its call: the stub holds the channel.
  auto third = third_stub->Generate(&refused_ctx, LongRequest(4));
  while (third->Read(&message)) {
  }
  const grpc::Status status = third->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  const auto& trailers = refused_ctx.GetServerTrailingMetadata();
  const auto hint = trailers.find("retry-after-ms");
  ASSERT_NE(hint, trailers.end());
  EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "1000");
  running_ctx.TryCancel();
  while (running->Read(&message)) {
  }
  while (waiting->Read(&message)) {
  }
  EXPECT_TRUE(waiting->Finish().ok());  // It ran once the running one was cancelled.
  running->Finish();
  ExpectIdle();
}

}  // namespace
}  // namespace mla
