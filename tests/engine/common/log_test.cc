#include "engine/common/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace mla {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(LogQuotedTest, EscapesWhatCouldEndTheValueOrTheLine) {
  EXPECT_EQ(LogQuoted("req-1"), "\"req-1\"");
  EXPECT_EQ(LogQuoted(""), "\"\"");
  EXPECT_EQ(LogQuoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(LogQuoted("x\nI 2026 forged\r\t"), "\"x\\nI 2026 forged\\r\\t\"");
  EXPECT_EQ(LogQuoted(std::string("\0\x1b\x7f", 3)), "\"\\x00\\x1b\\x7f\"");
  // Non-ASCII bytes (valid UTF-8 or not, U+2028 included) are shown as bytes.
  EXPECT_EQ(LogQuoted("\xc3\xa9\xe2\x80\xa8\xff"), "\"\\xc3\\xa9\\xe2\\x80\\xa8\\xff\"");
}

// A client-chosen id with a newline once wrote a second, forged log line.
TEST(LogLineTest, OneCallWritesOneLineWhateverTheMessage) {
  ::testing::internal::CaptureStderr();
  LogInfo("request_finished id=", "evil\nE 2026-01-01T00:00:00.000Z forged", " reason=stop");
  LogWarning("tab\there\r", std::string("nul\0end", 7));
  const std::string out = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  EXPECT_THAT(out, HasSubstr("id=evil\\nE 2026-01-01T00:00:00.000Z forged reason=stop\n"));
  EXPECT_THAT(out, HasSubstr("tab\\there\\rnul\\x00end\n"));
  EXPECT_THAT(out, Not(HasSubstr("\nE 2026")));
}

}  // namespace
}  // namespace mla
