#include "server/request_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "mla/v1/inference.pb.h"

namespace mla {
namespace {

using ::testing::HasSubstr;

const std::string kBad = "a\xc3\x28z";  // A lead byte without its continuation.

// Serialized without protobuf's UTF-8 check: wire format is the same for bytes.
std::string Bytes(const google::protobuf::Message& m) {
  std::string out;
  EXPECT_TRUE(m.SerializePartialToString(&out));
  return out;
}

TEST(FindInvalidUtf8FieldTest, NamesTopLevelNestedAndRepeatedFields) {
  v1::GenerateRequest r;
  r.set_request_id("fine");
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "");
  r.set_cache_salt(kBad);
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "cache_salt");
  r.Clear();
  r.mutable_sampling()->add_stop("x");
  r.mutable_sampling()->add_stop("y");
  r.mutable_sampling()->add_stop(kBad);
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "sampling.stop[2]");
  r.Clear();
  r.mutable_messages()->add_messages()->set_role(kBad);
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "messages.messages[0].role");
  // Valid UTF-8 of every length, and an empty string, pass.
  r.Clear();
  r.set_text("\x24 \xc2\xa2 \xe2\x82\xac \xf0\x90\x8d\x88");
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "");
  // Surrogates and overlong forms are not UTF-8.
  r.set_text("\xed\xa0\x80");
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "text");
  r.set_text("\xc0\xaf");
  EXPECT_EQ(FindInvalidUtf8Field(Bytes(r), *r.GetDescriptor()), "text");
}

TEST(ParseRequestBytesTest, ValidInvalidUtf8AndGarbage) {
  v1::TokenizeRequest t;
  t.set_text("hello");
  t.set_add_special_tokens(true);
  v1::TokenizeRequest parsed;
  ASSERT_TRUE(ParseRequestBytes(Bytes(t), &parsed).ok());
  EXPECT_EQ(parsed.text(), "hello");
  EXPECT_TRUE(parsed.add_special_tokens());

  t.set_text(kBad);
  grpc::Status s = ParseRequestBytes(Bytes(t), &parsed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("text: is not valid UTF-8"));

  for (const std::string& garbage :
       {std::string("\xff\xff\xff"), std::string("\x0a\x09short"), std::string("\x08", 1),
        std::string("\x0b\x0b\x0b")}) {
    s = ParseRequestBytes(garbage, &parsed);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("is not a valid mla.v1.TokenizeRequest message"));
  }
}

// Found by generate_request_fuzz: a string field cut short whose bytes are not UTF-8 went
// to protobuf, which refused it and logged an error line per request.
TEST(ParseRequestBytesTest, TruncatedFieldIsRefusedWithoutReachingProtobuf) {
  v1::GenerateRequest r;
  ::testing::internal::CaptureStderr();
  const grpc::Status s = ParseRequestBytes(std::string("\x0a\x0a\xc0\xc0"), &r);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("is not a valid mla.v1.GenerateRequest message"));
}

TEST(SerializeResponseTest, RoundTrips) {
  v1::DetokenizeResponse d;
  d.set_text("abc");
  grpc::ByteBuffer buffer;
  ASSERT_TRUE(SerializeResponse(d, &buffer).ok());
  v1::DetokenizeResponse back;
  ASSERT_TRUE(ParseRequest(buffer, &back).ok());
  EXPECT_EQ(back.text(), "abc");
}

}  // namespace
}  // namespace mla
