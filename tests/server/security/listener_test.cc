#include "server/security/listener.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"

ABSL_DECLARE_FLAG(std::string, auth_tokens_file);
ABSL_DECLARE_FLAG(int, keepalive_time_s);

namespace mla::security {
namespace {

using ::testing::HasSubstr;

class ListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/mla-tokens-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    tokens_file_ = path;
    std::ofstream(tokens_file_) << "a-token\n";
  }
  void TearDown() override { std::remove(tokens_file_.c_str()); }

  absl::FlagSaver saver_;  // Restores every flag after the test.
  std::string tokens_file_;
};

TEST_F(ListenerTest, TokensOnPlaintextNetworkAddressAreRefused) {
  absl::SetFlag(&FLAGS_auth_tokens_file, tokens_file_);
  grpc::ServerBuilder builder;
  int port = 0;
  const absl::Status s = ConfigureListener(builder, "0.0.0.0:0", &port);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--auth_tokens_file"));
  EXPECT_THAT(s.message(), HasSubstr("--tls_cert_file"));
}

TEST_F(ListenerTest, TokensOnLoopbackPlaintextAreAccepted) {
  absl::SetFlag(&FLAGS_auth_tokens_file, tokens_file_);
  grpc::ServerBuilder builder;
  int port = 0;
  EXPECT_TRUE(ConfigureListener(builder, "127.0.0.1:0", &port).ok());
}

TEST_F(ListenerTest, HttpApiTokensNeedALoopbackAddress) {
  absl::StatusOr<std::vector<std::string>> none = HttpTokens("127.0.0.1:8000");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());  // No --auth_tokens_file: no tokens.
  absl::SetFlag(&FLAGS_auth_tokens_file, tokens_file_);
  absl::StatusOr<std::vector<std::string>> tokens = HttpTokens("127.0.0.1:8000");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ::testing::ElementsAre("a-token"));
  // The API off: the gRPC port's tokens alone, nothing refused.
  tokens = HttpTokens("");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE(tokens->empty());
  tokens = HttpTokens("0.0.0.0:8000");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokens.status().message(), HasSubstr("plaintext HTTP"));
}

TEST_F(ListenerTest, KeepaliveMustBePositive) {
  absl::SetFlag(&FLAGS_keepalive_time_s, 0);
  grpc::ServerBuilder builder;
  int port = 0;
  EXPECT_THAT(ConfigureListener(builder, "127.0.0.1:0", &port).message(),
              HasSubstr("--keepalive_time_s"));
}

}  // namespace
}  // namespace mla::security
