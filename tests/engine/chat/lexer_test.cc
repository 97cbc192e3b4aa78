// Lexer: whitespace control, trim_blocks/lstrip_blocks, string escapes and errors.
#include "engine/chat/lexer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mla::chat {
namespace {

// The concatenated text tokens (what a template without expressions renders).
std::string Texts(const std::string& source) {
  auto tokens = Tokenize(source);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  std::string out;
  if (!tokens.ok()) return out;
  for (const Token& t : *tokens) {
    if (t.kind == TokenKind::kText) out += t.text;
  }
  return out;
}

TEST(ChatLexerTest, TrimBlocksDropsOneNewlineAfterBlockTags) {
  EXPECT_EQ(Texts("{% if x %}\na\n{% endif %}\n\nb"), "a\n\nb");
  EXPECT_EQ(Texts("{# c #}\nx"), "x");
  // Variable tags never trim.
  EXPECT_EQ(Texts("{{ x }}\ny"), "\ny");
}

TEST(ChatLexerTest, LstripBlocksRemovesIndentBeforeBlockTagsOnly) {
  EXPECT_EQ(Texts("a\n    {% if x %}b"), "a\nb");
  EXPECT_EQ(Texts("   {% if x %}b"), "b");       // start of template counts as line start
  EXPECT_EQ(Texts("a  {% if x %}b"), "a  b");     // text before the tag on its line
  EXPECT_EQ(Texts("a\n  {{ x }}"), "a\n  ");      // not for {{ }}
  EXPECT_EQ(Texts("a\n  {%+ if x %}b"), "a\n  b");  // {%+ disables lstrip
}

TEST(ChatLexerTest, MinusStripsAllWhitespaceIncludingUnicode) {
  EXPECT_EQ(Texts("a \n\t {%- if x -%} \n\n b"), "ab");
  EXPECT_EQ(Texts("a\u3000{{- x -}}\u00a0b"), "ab");
  EXPECT_EQ(Texts("a {# c -#}  \n b"), "a b");
  EXPECT_EQ(Texts("{% if x +%}\nb"), "\nb");  // +%} keeps the newline
}

TEST(ChatLexerTest, NewlinesNormalizedAndOneTrailingNewlineDropped) {
  EXPECT_EQ(Texts("a\r\nb\rc\n"), "a\nb\nc");
  EXPECT_EQ(Texts("a\n\n"), "a\n");
}

TEST(ChatLexerTest, StringLiteralsUnescapeLikePython) {
  auto tokens = Tokenize(R"({{ 'a\n\t\x41\u00e9\U0001F600\'\\\q' "d\"q" }})");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  std::vector<std::string> strings;
  for (const Token& t : *tokens) {
    if (t.kind == TokenKind::kString) strings.push_back(t.text);
  }
  ASSERT_EQ(strings.size(), 2u);
  EXPECT_EQ(strings[0], "a\n\tA\u00e9\U0001F600'\\\\q");
  EXPECT_EQ(strings[1], "d\"q");
}

TEST(ChatLexerTest, NumbersAndOperators) {
  auto tokens = Tokenize("{{ 1_000 + 2.5e1 // x ** 2 }}");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 10u);  // {{, 1000 + 25.0 // x ** 2, }}, end
  EXPECT_EQ((*tokens)[1].int_value, 1000);
  EXPECT_EQ((*tokens)[3].kind, TokenKind::kFloat);
  EXPECT_DOUBLE_EQ((*tokens)[3].float_value, 25.0);
  EXPECT_EQ((*tokens)[4].text, "//");
  EXPECT_EQ((*tokens)[6].text, "**");
}

TEST(ChatLexerTest, BracesInsideTagsAreBalanced) {
  auto tokens = Tokenize("{{ {'a': {'b': 1}} }}");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->back().kind, TokenKind::kEof);
}

TEST(ChatLexerTest, ErrorsNameTheLine) {
  auto unterminated = Tokenize("a\nb\n{{ 'abc }}");
  ASSERT_FALSE(unterminated.ok());
  EXPECT_NE(unterminated.status().message().find("line 3"), std::string::npos)
      << unterminated.status();
  auto open_tag = Tokenize("x\n{% if y");
  ASSERT_FALSE(open_tag.ok());
  EXPECT_NE(open_tag.status().message().find("line 2"), std::string::npos);
  auto comment = Tokenize("{# never closed");
  EXPECT_FALSE(comment.ok());
  auto raw = Tokenize("\n\n{% raw %}{{ x }}{% endraw %}");
  ASSERT_FALSE(raw.ok());
  EXPECT_NE(raw.status().message().find("line 3"), std::string::npos);
  EXPECT_NE(raw.status().message().find("raw"), std::string::npos);
  EXPECT_FALSE(Tokenize("{{ x ] }}").ok());
  EXPECT_FALSE(Tokenize("{{ x $ y }}").ok());
}

}  // namespace
}  // namespace mla::chat
