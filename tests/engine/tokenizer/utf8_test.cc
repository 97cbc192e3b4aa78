// UTF-8 repair, the byte-level alphabet and the Oniguruma-compatible regex wrapper.
#include "engine/tokenizer/utf8.h"

#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/regex.h"
#include "gtest/gtest.h"

namespace mla {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(Utf8Test, LossyReplacesEachMaximalSubpart) {
  // The Unicode Standard's example (chapter 3, "U+FFFD Substitution of Maximal Subparts").
  EXPECT_EQ(Utf8Lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a" + Repeat(kFffd, 3) + "b" + kFffd + "c" + Repeat(kFffd, 2) + "d");
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), Repeat(kFffd, 2));          // overlong
  EXPECT_EQ(Utf8Lossy("\xE0\x80\xAF"), Repeat(kFffd, 3));      // overlong
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), Repeat(kFffd, 3));      // surrogate
  EXPECT_EQ(Utf8Lossy("\xF4\x90\x80\x80"), Repeat(kFffd, 4));  // above U+10FFFF
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98"), kFffd);                 // truncated at the end
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98x"), kFffd + "x");
  EXPECT_EQ(Utf8Lossy("\xFF\xFE"), Repeat(kFffd, 2));
  EXPECT_EQ(Utf8Lossy("héllo 😀 中"), "héllo 😀 中");
  EXPECT_EQ(Utf8Lossy(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Utf8Test, ScanReportsIncompleteOnlyForCompletablePrefixes) {
  size_t length = 0;
  EXPECT_EQ(ScanUtf8("\xF0\x9F", &length), Utf8Scan::kIncomplete);
  EXPECT_EQ(length, 2u);
  EXPECT_EQ(ScanUtf8("\xE0\x80", &length), Utf8Scan::kInvalid);  // E0 needs A0..BF next
  EXPECT_EQ(length, 1u);
  EXPECT_EQ(ScanUtf8("\xE4\xBD\xA0", &length), Utf8Scan::kValid);
  EXPECT_EQ(length, 3u);
}

TEST(Utf8Test, ValidityAndCodePoints) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("abc 中文 😀"));
  EXPECT_FALSE(IsValidUtf8("abc\x80"));
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x98"));
  std::string s;
  for (char32_t c : {U'a', U'\u00e9', U'\u4e2d', U'\U0001F600'}) AppendCodePoint(c, &s);
  EXPECT_EQ(s, "a\u00e9\u4e2d\U0001F600");
  size_t pos = 0;
  EXPECT_EQ(NextCodePoint(s, &pos), U'a');
  EXPECT_EQ(NextCodePoint(s, &pos), U'\u00e9');
  EXPECT_EQ(PreviousCodePoint(s, s.size()), U'\U0001F600');
  EXPECT_TRUE(IsUnicodeWhiteSpace(U'\u3000'));
  EXPECT_TRUE(IsUnicodeWhiteSpace(U'\u0085'));
  EXPECT_FALSE(IsUnicodeWhiteSpace(U'\u180e'));
  EXPECT_FALSE(IsUnicodeWhiteSpace(U'\u200b'));
}

TEST(ByteLevelTest, Gpt2AlphabetIsABijection) {
  EXPECT_EQ(ByteLevelChar(' '), U'\u0120');   // Ġ
  EXPECT_EQ(ByteLevelChar('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(ByteLevelChar('A'), U'A');
  EXPECT_EQ(ByteLevelChar(0xAD), U'\u0143');  // the last remapped byte
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(ByteLevelToBytes(BytesToByteLevel(all), &back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(ByteLevelToBytes("<｜User｜>", &back));  // ｜ is outside the alphabet
}

std::vector<std::pair<size_t, size_t>> Matches(const Regex& regex, const std::string& text) {
  std::vector<std::pair<size_t, size_t>> out;
  EXPECT_TRUE(regex.ForEachMatch(text, [&](size_t s, size_t e) { out.emplace_back(s, e); }).ok());
  return out;
}

TEST(RegexTest, WhitespaceFollowsOniguruma) {
  auto regex = Regex::Compile("\\s+");
  ASSERT_TRUE(regex.ok()) << regex.status();
  // U+180E is not White_Space (PCRE2's own \s would match it); U+3000 and U+0085 are.
  EXPECT_TRUE(Matches(**regex, "\u180e").empty());
  EXPECT_EQ(Matches(**regex, "a\u3000\u0085b").size(), 1u);
  auto negated = Regex::Compile("[^\\s]+");
  ASSERT_TRUE(negated.ok());
  EXPECT_EQ(Matches(**negated, "a\u180eb c"),
            (std::vector<std::pair<size_t, size_t>>{{0, 5}, {6, 7}}));
}

TEST(RegexTest, EmptyMatchesIterateLikeOnigFindIter) {
  auto regex = Regex::Compile("x*");
  ASSERT_TRUE(regex.ok());
  EXPECT_EQ(Matches(**regex, "ab"),
            (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 1}, {2, 2}}));
  EXPECT_EQ(Matches(**regex, "xxa"), (std::vector<std::pair<size_t, size_t>>{{0, 2}, {3, 3}}));
}

TEST(RegexTest, LiteralEscapesMetacharactersAndBadPatternsFail) {
  auto literal = Regex::Literal("a.b*");
  ASSERT_TRUE(literal.ok());
  EXPECT_EQ(Matches(**literal, "axbb a.b*"), (std::vector<std::pair<size_t, size_t>>{{5, 9}}));
  EXPECT_FALSE(Regex::Compile("(unclosed").ok());
  EXPECT_EQ(Regex::Compile("\\h").status().code(), absl::StatusCode::kUnimplemented);
}

TEST(RegexTest, LongWhitespaceRunsDoNotExhaustTheJitStack) {
  auto regex = Regex::Compile("\\s+(?!\\S)|\\s+");
  ASSERT_TRUE(regex.ok());
  const std::string text = std::string(200000, ' ') + "x";
  EXPECT_EQ(Matches(**regex, text),
            (std::vector<std::pair<size_t, size_t>>{{0, 199999}, {199999, 200000}}));
}

}  // namespace
}  // namespace mla
