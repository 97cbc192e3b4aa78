// TextStream on the DeepSeek-V3 tokenizer: text deltas of generated tokens with stop
// strings that span tokens, start the output, or complete only at the final flush.
#include "server/text_stream.h"

#include <string>
#include <vector>

#include "engine/tokenizer/byte_level.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/test_util.h"

namespace mla {
namespace {

using testing_util::DeepSeekV3;

std::vector<int32_t> Encode(const std::string& text) {
  auto ids = DeepSeekV3().Encode(text, /*add_special_tokens=*/false);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>();
}

int32_t ByteToken(char byte) {
  return DeepSeekV3().TokenToId(BytesToByteLevel(std::string(1, byte)));
}

// Feeds `ids` one at a time and records each call's text (Flush last unless stopped).
struct StreamRun {
  std::vector<std::string> deltas;
  std::string text;
  int tokens_used = 0;
  bool stopped = false;
  std::string stop_sequence;
};

StreamRun Feed(const std::vector<int32_t>& ids, std::vector<std::string> stops) {
  TextStream stream(&DeepSeekV3(), std::move(stops));
  StreamRun run;
  for (int32_t id : ids) {
    TextStream::Delta d = stream.Add({id});
    run.deltas.push_back(d.text);
    run.tokens_used += static_cast<int>(d.tokens_used);
    run.stopped = run.stopped || d.stopped;
  }
  if (!stream.stopped()) run.deltas.push_back(stream.Flush());
  for (const std::string& d : run.deltas) run.text += d;
  run.stopped = stream.stopped();
  run.stop_sequence = stream.stop_sequence();
  return run;
}

TEST(TextStreamTest, NeverSplitsACharacterOverTokens) {
  // 😀 (F0 9F 98 80) as four byte tokens, between two ASCII letters.
  std::vector<int32_t> ids;
  for (char c : std::string("a\xF0\x9F\x98\x80z")) ids.push_back(ByteToken(c));
  StreamRun run = Feed(ids, {});
  EXPECT_EQ(run.deltas,
            std::vector<std::string>({"a", "", "", "", "\xF0\x9F\x98\x80", "z", ""}));
  EXPECT_FALSE(run.stopped);
}

TEST(TextStreamTest, JoinsToDecodeWithoutSpecialTokens) {
  const std::string text = "你好，世界！ Hello 😀 world\n\tend";
  std::vector<int32_t> ids = Encode(text);
  ids.insert(ids.begin(), DeepSeekV3().bos_token_id());
  ids.push_back(DeepSeekV3().eos_token_id());
  StreamRun run = Feed(ids, {});
  EXPECT_EQ(run.text, text);
  auto decoded = DeepSeekV3().Decode(ids, /*skip_special_tokens=*/true);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(run.text, *decoded);
  EXPECT_EQ(run.tokens_used, static_cast<int>(ids.size()));
}

TEST(TextStreamTest, StopStringAcrossTokensEndsTheTextBeforeIt) {
  const std::vector<int32_t> ids = Encode("The quick brown fox jumps over the lazy dog");
  // "own fox ju" spans at least three tokens (" brown", " fox", " jumps").
  StreamRun run = Feed(ids, {"never", "own fox ju"});
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.text, "The quick br");
  EXPECT_EQ(run.stop_sequence, "own fox ju");
  // Tokens up to the one completing the stop string (" jumps") are used, none after.
  const std::vector<int32_t> through = Encode("The quick brown fox jumps");
  EXPECT_EQ(run.tokens_used, static_cast<int>(through.size()));
}

TEST(TextStreamTest, HoldsBackAPossibleStopPrefixUntilDecided) {
  const std::vector<int32_t> ids = Encode("one two three");
  ASSERT_EQ(ids.size(), 3u);
  // " tw" may begin " two!" until " three" shows it does not.
  StreamRun run = Feed(ids, {" two!"});
  EXPECT_FALSE(run.stopped);
  EXPECT_EQ(run.deltas, std::vector<std::string>({"one", "", " two three", ""}));
}

TEST(TextStreamTest, StopStringAtTheVeryStart) {
  const std::vector<int32_t> ids = Encode("Hello world");
  StreamRun run = Feed(ids, {"Hello"});
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.text, "");
  EXPECT_EQ(run.tokens_used, 1);
  EXPECT_EQ(run.stop_sequence, "Hello");
}

TEST(TextStreamTest, EarliestStopWinsAndLaterTokensAreIgnored) {
  TextStream stream(&DeepSeekV3(), {"lazy", "fox"});
  const std::vector<int32_t> ids = Encode("The quick brown fox jumps over the lazy dog");
  TextStream::Delta d = stream.Add(ids);  // All tokens in one call.
  EXPECT_TRUE(d.stopped);
  EXPECT_EQ(d.text, "The quick brown ");
  EXPECT_EQ(d.tokens_used, Encode("The quick brown fox").size());
  EXPECT_EQ(stream.stop_sequence(), "fox");
  TextStream::Delta after = stream.Add(ids);
  EXPECT_FALSE(after.stopped);
  EXPECT_EQ(after.tokens_used, 0u);
  EXPECT_EQ(after.text, "");
  EXPECT_EQ(stream.Flush(), "");
}

TEST(TextStreamTest, FlushReleasesHeldTextAndUnfinishedCharacters) {
  // The stream ends inside a possible stop string and then inside a character.
  std::vector<int32_t> ids = Encode("abc xy");
  ids.push_back(ByteToken('\xF0'));
  ids.push_back(ByteToken('\x9F'));
  TextStream stream(&DeepSeekV3(), {"xyz"});
  TextStream::Delta d = stream.Add(ids);
  EXPECT_FALSE(d.stopped);
  EXPECT_EQ(d.text, "abc ");
  EXPECT_EQ(stream.Flush(), "xy\xEF\xBF\xBD");  // Ill-formed bytes become one U+FFFD.
  EXPECT_FALSE(stream.stopped());
}

TEST(TextStreamTest, FlushedTextCanCompleteAStop) {
  std::vector<int32_t> ids = Encode("ok");
  ids.push_back(ByteToken('\xE4'));  // The first byte of a three-byte character.
  TextStream stream(&DeepSeekV3(), {"ok\xEF\xBF\xBD"});
  EXPECT_EQ(stream.Add(ids).text, "");
  EXPECT_EQ(stream.Flush(), "");
  EXPECT_TRUE(stream.stopped());
  EXPECT_EQ(stream.stop_sequence(), "ok\xEF\xBF\xBD");
}

TEST(TextStreamTest, IdsWithoutATokenAddNoText) {
  // Model vocabularies are often padded past the tokenizer's.
  const int32_t unknown = DeepSeekV3().vocab_size() + 7;
  std::vector<int32_t> ids = Encode("a");
  ids.push_back(unknown);
  ids.push_back(Encode("b")[0]);
  StreamRun run = Feed(ids, {});
  EXPECT_EQ(run.text, "ab");
  EXPECT_EQ(run.tokens_used, 3);
}

}  // namespace
}  // namespace mla
