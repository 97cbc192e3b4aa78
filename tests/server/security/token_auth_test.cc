#include "server/security/token_auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mla::security {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseTokensTest, SkipsCommentsAndBlankLinesAndTrims) {
  auto tokens = ParseTokens("# ops tokens\n\n  alpha-1  \r\n#beta\nbeta.2\n\t\n");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ElementsAre("alpha-1", "beta.2"));
}

TEST(ParseTokensTest, NoTrailingNewlineNeeded) {
  auto tokens = ParseTokens("only");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ElementsAre("only"));
}

TEST(ParseTokensTest, FileWithoutTokensIsAnError) {
  for (const char* contents : {"", "\n\n", "# just a comment\n  # another\n"}) {
    auto tokens = ParseTokens(contents);
    ASSERT_FALSE(tokens.ok()) << contents;
    EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(tokens.status().message(), HasSubstr("no token"));
  }
}

TEST(ParseTokensTest, TokenWithSpaceIsRejectedWithoutEchoingIt) {
  auto tokens = ParseTokens("good\nsecret value\n");
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(tokens.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(tokens.status().message(), Not(HasSubstr("secret")));
}

TEST(LoadTokensFileTest, MissingFileNamesFlagAndPath) {
  auto tokens = LoadTokensFile("/nonexistent/tokens.txt");
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(tokens.status().message(), HasSubstr("--auth_tokens_file"));
  EXPECT_THAT(tokens.status().message(), HasSubstr("/nonexistent/tokens.txt"));
}

TEST(TokenMatchesTest, ExactMatchOnly) {
  const std::vector<std::string> tokens = {"first-token", "second"};
  EXPECT_TRUE(TokenMatches("first-token", tokens));
  EXPECT_TRUE(TokenMatches("second", tokens));
  EXPECT_FALSE(TokenMatches("first-tokem", tokens));   // Last byte differs.
  EXPECT_FALSE(TokenMatches("first-token2", tokens));  // Longer.
  EXPECT_FALSE(TokenMatches("first", tokens));         // Prefix.
  EXPECT_FALSE(TokenMatches("secondsecond", tokens));  // The cyclic read must not match.
  EXPECT_FALSE(TokenMatches("", tokens));
  EXPECT_FALSE(TokenMatches("second", {}));
}

TEST(TokenMatchesTest, DifferencesAnywhereAreDetected) {
  const std::vector<std::string> tokens = {"abcdefgh"};
  for (size_t i = 0; i < 8; ++i) {
    std::string candidate = "abcdefgh";
    candidate[i] ^= 0x01;
    EXPECT_FALSE(TokenMatches(candidate, tokens)) << i;
  }
}

TEST(ParseBearerTest, Forms) {
  EXPECT_EQ(ParseBearer("Bearer abc").value_or(""), "abc");
  EXPECT_EQ(ParseBearer("bearer  abc ").value_or(""), "abc");
  EXPECT_FALSE(ParseBearer("Basic abc").has_value());
  EXPECT_FALSE(ParseBearer("Bearer ").has_value());
  EXPECT_FALSE(ParseBearer("Bearer").has_value());
  EXPECT_FALSE(ParseBearer("abc").has_value());
}

class TokenAuthProcessorTest : public ::testing::Test {
 protected:
  grpc::Status Call(const std::string& path, const std::string* authorization) {
    grpc::AuthMetadataProcessor::InputMetadata md;
    md.emplace(":path", path);
    if (authorization != nullptr) md.emplace("authorization", *authorization);
    consumed_.clear();
    return processor_.Process(md, nullptr, &consumed_, &response_);
  }
  TokenAuthProcessor processor_{{"tok-1", "tok-2"}};
  grpc::AuthMetadataProcessor::OutputMetadata consumed_;
  grpc::AuthMetadataProcessor::OutputMetadata response_;
};

TEST_F(TokenAuthProcessorTest, RightTokenPassesAndIsConsumed) {
  const std::string header = "Bearer tok-2";
  EXPECT_TRUE(Call("/mla.v1.Inference/GetModelInfo", &header).ok());
  EXPECT_EQ(consumed_.count("authorization"), 1u);
}

TEST_F(TokenAuthProcessorTest, MissingOrMalformedHeader) {
  const std::string basic = "Basic tok-1";
  for (const std::string* header : {static_cast<const std::string*>(nullptr), &basic}) {
    grpc::Status s = Call("/mla.v1.Inference/Generate", header);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(s.error_message(), "missing bearer token");
  }
}

TEST_F(TokenAuthProcessorTest, WrongTokenIsNotEchoed) {
  const std::string header = "Bearer guessed-value";
  grpc::Status s = Call("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                        &header);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), Not(HasSubstr("guessed")));
}

TEST_F(TokenAuthProcessorTest, HealthNeedsNoToken) {
  EXPECT_TRUE(Call("/grpc.health.v1.Health/Check", nullptr).ok());
  EXPECT_TRUE(Call("/grpc.health.v1.Health/Watch", nullptr).ok());
  // Only the exact service prefix is exempt.
  EXPECT_FALSE(Call("/grpc.health.v1.HealthX/Check", nullptr).ok());
}

}  // namespace
}  // namespace mla::security
