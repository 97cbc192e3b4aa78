// StreamingDetokenizer and StopStringMatcher on the DeepSeek-V3 tokenizer.
#include <string>
#include <vector>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/stop_strings.h"
#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/test_util.h"

namespace mla {
namespace {

using testing_util::DeepSeekV3;
using testing_util::Goldens;
using testing_util::Ids;

// Feeds `ids` one at a time; returns the deltas, the last one being Flush().
std::vector<std::string> Stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                                bool skip_special_tokens = false) {
  StreamingDetokenizer detokenizer(&tokenizer, skip_special_tokens);
  std::vector<std::string> deltas;
  for (int32_t id : ids) {
    auto delta = detokenizer.Add(id);
    EXPECT_TRUE(delta.ok()) << delta.status();
    deltas.push_back(delta.ok() ? *delta : "");
  }
  deltas.push_back(detokenizer.Flush());
  return deltas;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += p;
  return out;
}

TEST(StreamingDetokenizerTest, HoldsBackACharacterSplitOverFourTokens) {
  const Tokenizer& tokenizer = DeepSeekV3();
  // 😀 is F0 9F 98 80: feed one byte token per byte.
  std::vector<int32_t> ids;
  for (char byte : std::string("a\xF0\x9F\x98\x80z")) {
    ids.push_back(tokenizer.TokenToId(BytesToByteLevel(std::string(1, byte))));
    ASSERT_GE(ids.back(), 0);
  }
  EXPECT_EQ(Stream(tokenizer, ids),
            std::vector<std::string>({"a", "", "", "", "\xF0\x9F\x98\x80", "z", ""}));
}

TEST(StreamingDetokenizerTest, DeltasAreWholeCharactersAndJoinToDecode) {
  const Tokenizer& tokenizer = DeepSeekV3();
  std::vector<std::vector<int32_t>> id_lists;
  for (const nlohmann::json& c : Goldens()["deepseek_v3"]["cases"]) {
    id_lists.push_back(Ids(c["ids_with_special"]));
  }
  // Arbitrary ids: most of these are not valid UTF-8 and decode with U+FFFD.
  for (const nlohmann::json& c : Goldens()["deepseek_v3"]["decode_cases"]) {
    id_lists.push_back(Ids(c["ids"]));
  }
  int multi_token_chars = 0;
  for (const std::vector<int32_t>& ids : id_lists) {
    for (bool skip : {false, true}) {
      const std::vector<std::string> deltas = Stream(tokenizer, ids, skip);
      for (const std::string& delta : deltas) ASSERT_TRUE(IsValidUtf8(delta)) << delta;
      auto decoded = tokenizer.Decode(ids, skip);
      ASSERT_TRUE(decoded.ok());
      ASSERT_EQ(Join(deltas), *decoded);
      for (size_t i = 0; i + 1 < deltas.size(); ++i) {
        if (deltas[i].empty() && !tokenizer.TokenBytes(ids[i]).empty()) ++multi_token_chars;
      }
    }
  }
  EXPECT_GT(multi_token_chars, 50);  // the corpus has many characters split across tokens
}

TEST(StreamingDetokenizerTest, SkipsSpecialTokensAndRejectsUnknownIds) {
  const Tokenizer& tokenizer = DeepSeekV3();
  auto ids = tokenizer.Encode("Hi<｜end▁of▁sentence｜>", true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(Join(Stream(tokenizer, *ids, /*skip_special_tokens=*/true)), "Hi");
  EXPECT_EQ(Join(Stream(tokenizer, *ids, false)), "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>");

  StreamingDetokenizer detokenizer(&tokenizer);
  ASSERT_TRUE(detokenizer.Add(28927).ok());  // the first three bytes of 😀
  EXPECT_EQ(detokenizer.pending_bytes(), 3u);
  EXPECT_EQ(detokenizer.Add(tokenizer.vocab_size()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(detokenizer.pending_bytes(), 3u);
  EXPECT_EQ(detokenizer.Flush(), "\xEF\xBF\xBD");  // unfinished at the end: U+FFFD
  EXPECT_EQ(detokenizer.pending_bytes(), 0u);
}

TEST(StopStringMatcherTest, StopSpanningDeltasIsNotEmitted) {
  StopStringMatcher matcher({"</answer>", "STOP"});
  std::string emitted;
  for (const char* delta : {"The result", " is 4.", "</", "ans", "wer> ignored"}) {
    StopStringMatcher::Result r = matcher.Add(delta);
    emitted += r.text;
    if (r.stopped) {
      EXPECT_EQ(r.stop_index, 0);
      break;
    }
  }
  EXPECT_TRUE(matcher.stopped());
  EXPECT_EQ(emitted, "The result is 4.");
  EXPECT_EQ(matcher.Add("more").text, "");
}

TEST(StopStringMatcherTest, HeldPrefixIsReleasedWhenItDoesNotContinue) {
  StopStringMatcher matcher({"STOP"});
  StopStringMatcher::Result r = matcher.Add("go ST");
  EXPECT_EQ(r.text, "go ");  // "ST" may start the stop string
  r = matcher.Add("ART");
  EXPECT_EQ(r.text, "START");
  EXPECT_FALSE(r.stopped);
  r = matcher.Add("S");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(matcher.Flush(), "S");  // the stream ended without the stop string
}

TEST(StopStringMatcherTest, EarliestStopWinsAndEmptyStopsAreIgnored) {
  StopStringMatcher matcher({"", "world", "lo w"});
  StopStringMatcher::Result r = matcher.Add("hello world");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.stop_index, 2);
  EXPECT_EQ(r.text, "hel");
}

TEST(StopStringMatcherTest, WorksOnDetokenizedStreamAcrossTokenBoundaries) {
  const Tokenizer& tokenizer = DeepSeekV3();
  auto ids = tokenizer.Encode("Answer: 42 😀😀<stop>tail text", false);
  ASSERT_TRUE(ids.ok());
  StreamingDetokenizer detokenizer(&tokenizer);
  StopStringMatcher matcher({"😀<st"});
  std::string emitted;
  bool stopped = false;
  for (int32_t id : *ids) {
    auto delta = detokenizer.Add(id);
    ASSERT_TRUE(delta.ok());
    StopStringMatcher::Result r = matcher.Add(*delta);
    emitted += r.text;
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(emitted, "Answer: 42 😀");
}

}  // namespace
}  // namespace mla
