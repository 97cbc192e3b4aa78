// UTF-8 helpers for the template engine. Python strings index, slice and strip by code
// point, and its whitespace is Unicode's (str.isspace), so the engine needs the same view.
#ifndef MLA_ENGINE_CHAT_TEXT_UTIL_H_
#define MLA_ENGINE_CHAT_TEXT_UTIL_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mla::chat {

// Decodes UTF-8 to code points; an invalid byte decodes as itself (U+0080..U+00FF) so that
// nothing is lost, though templates only ever see valid UTF-8 from the API.
std::vector<char32_t> DecodeUtf8(absl::string_view text);
std::string EncodeUtf8(const std::vector<char32_t>& code_points);
void AppendUtf8(char32_t cp, std::string* out);

// Python's str.isspace() for one code point.
bool IsPythonSpace(char32_t cp);
// Number of code points (Python len()).
size_t CodePointCount(absl::string_view text);

// Python str.strip/lstrip/rstrip: with `chars` == nullptr strip Unicode whitespace,
// otherwise strip any code point in *chars.
std::string PyStrip(absl::string_view text, const std::string* chars, bool left, bool right);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_TEXT_UTIL_H_
