// mla-bench's reading of the OpenAI API's Server-Sent Events: events split anywhere by
// the transport, tokens counted from each chunk's logprobs, the usage chunk as the
// finished message, the end marker, and error events.
#include "client/bench/openai_generate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mla::bench {
namespace {

std::string Chunk(int tokens, const char* finish_reason) {
  std::string list;
  for (int i = 0; i < tokens; ++i) list += i == 0 ? "\"a\"" : ",\"b\"";
  return std::string(
             "data: {\"choices\":[{\"index\":0,\"text\":\"ab\",\"logprobs\":{\"tokens\":[") +
         list + "]},\"finish_reason\":" + finish_reason + "}]}\n\n";
}

TEST(SseParserTest, CountsTokensAndReadsUsageWhereverTheBytesSplit) {
  const std::string stream =
      ": a comment line\n\n" + Chunk(2, "null") + Chunk(1, "\"length\"") +
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,"
      "\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\ndata: [DONE]\n\n";
  for (size_t piece : {size_t{1}, size_t{7}, stream.size()}) {
    std::vector<v1::GenerateResponse> messages;
    SseParser parser([&](const v1::GenerateResponse& m) {
      messages.push_back(m);
      return true;
    });
    for (size_t i = 0; i < stream.size(); i += piece) {
      ASSERT_TRUE(parser.Feed(absl::string_view(stream).substr(i, piece)));
    }
    EXPECT_TRUE(parser.done());
    ASSERT_EQ(messages.size(), 3u) << piece;
    EXPECT_EQ(messages[0].token_ids_size(), 2);
    EXPECT_EQ(messages[1].token_ids_size(), 1);
    ASSERT_TRUE(messages[2].has_finished());
    EXPECT_EQ(messages[2].finished().reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(messages[2].finished().usage().completion_tokens(), 3);
    EXPECT_EQ(messages[2].finished().usage().cached_prompt_tokens(), 4);
  }
}

TEST(SseParserTest, ErrorEventsAndGarbageStopTheStream) {
  SseParser errors([](const v1::GenerateResponse&) { return true; });
  EXPECT_FALSE(errors.Feed("data: {\"error\":{\"message\":\"aborted\"}}\n\n"));
  EXPECT_EQ(errors.status().code(), absl::StatusCode::kUnknown);
  SseParser garbage([](const v1::GenerateResponse&) { return true; });
  EXPECT_FALSE(garbage.Feed("data: {not json\n\n"));
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kDataLoss);
  // The consumer may stop the stream too.
  SseParser stop([](const v1::GenerateResponse&) { return false; });
  EXPECT_FALSE(stop.Feed(Chunk(1, "null")));
  EXPECT_TRUE(stop.status().ok());
}

}  // namespace
}  // namespace mla::bench
