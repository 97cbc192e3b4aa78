// Requests that do not parse: garbage bodies and invalid UTF-8 in proto3 string fields.
// gRPC's own deserialization answered these UNIMPLEMENTED with an empty message; the
// service parses the bytes itself and answers INVALID_ARGUMENT naming the field.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <future>
#include <string>
#include <thread>

#include "client/mla_client.h"
#include "tests/integration/server_process.h"

namespace mla {
namespace {

using ::testing::HasSubstr;
using testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
const std::string kBadUtf8 = "ok \xc3\x28 \xff";

class MalformedRequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", "--threads=2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
    ClientOptions options;
    options.target = server_->target();
    client_ = new MlaClient(options);
    for (int i = 0; i < 600; ++i) {
      auto health = client_->Health();
      if (health.ok() && *health == grpc::health::v1::HealthCheckResponse::SERVING) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  static void TearDownTestSuite() {
    delete client_;
    delete channel_;
    EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    delete server_;
  }

  // Sends `body` as the request of `method` ("/mla.v1.Inference/Tokenize").
  static grpc::Status SendRaw(const std::string& method, const std::string& body) {
    grpc::GenericStub stub(*channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Slice slice(body);
    grpc::ByteBuffer request(&slice, 1), response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  static absl::Status Generate(const v1::GenerateRequest& r) {
    return client_->Generate(r, [](const v1::GenerateResponse&) { return true; });
  }

  static ServerProcess* server_;
  static std::shared_ptr<grpc::Channel>* channel_;
  static MlaClient* client_;
};

ServerProcess* MalformedRequestTest::server_ = nullptr;
std::shared_ptr<grpc::Channel>* MalformedRequestTest::channel_ = nullptr;
MlaClient* MalformedRequestTest::client_ = nullptr;

v1::GenerateRequest TokenRequest() {
  v1::GenerateRequest r;
  for (int t : {1, 2, 3}) r.mutable_token_ids()->add_ids(t);
  r.mutable_sampling()->set_max_tokens(2);
  return r;
}

void ExpectInvalidArgument(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(field + ": is not valid UTF-8")) << s;
}

TEST_F(MalformedRequestTest, InvalidUtf8InStringFieldsNamesTheField) {
  v1::GenerateRequest r = TokenRequest();
  r.set_request_id(kBadUtf8);
  ExpectInvalidArgument(Generate(r), "request_id");

  r = TokenRequest();
  r.set_text(kBadUtf8);
  ExpectInvalidArgument(Generate(r), "text");

  r = TokenRequest();
  r.mutable_sampling()->add_stop("fine");
  r.mutable_sampling()->add_stop(kBadUtf8);
  ExpectInvalidArgument(Generate(r), "sampling.stop[1]");

  r = TokenRequest();
  r.set_cache_salt(kBadUtf8);
  ExpectInvalidArgument(Generate(r), "cache_salt");

  r = TokenRequest();
  v1::ChatMessages* chat = r.mutable_messages();
  chat->add_messages()->set_content("hello");
  v1::ChatMessage* bad = chat->add_messages();
  bad->set_role("user");
  bad->set_content(kBadUtf8);
  ExpectInvalidArgument(Generate(r), "messages.messages[1].content");

  v1::TokenizeRequest t;
  t.set_text(kBadUtf8);
  ExpectInvalidArgument(client_->Tokenize(t).status(), "text");
  ExpectInvalidArgument(client_->Abort(kBadUtf8), "request_id");
}

TEST_F(MalformedRequestTest, GarbageBodiesAreInvalidArgumentNamingTheMessage) {
  // 0xff is no valid tag; "\x0a\x05ab" is a string field whose length runs past the end.
  for (const std::string& body : {std::string("\xff\xff\xff\xff"),
                                  std::string("\x0a\x05"
                                              "ab"),
                                  std::string("hello, world")}) {
    for (const char* method :
         {"Generate", "Abort", "Tokenize", "Detokenize", "GetModelInfo", "GetLoad"}) {
      const grpc::Status s = SendRaw(std::string("/mla.v1.Inference/") + method, body);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
      EXPECT_THAT(s.error_message(), HasSubstr("is not a valid mla.v1.")) << method;
    }
  }
  // The server is unharmed: a well-formed request still works.
  EXPECT_TRUE(Generate(TokenRequest()).ok());
  auto load = client_->GetLoad();
  EXPECT_TRUE(load.ok()) << load.status();
}

}  // namespace
}  // namespace mla
