// UTF-8 helpers shared by the tokenizer and the streaming detokenizer.
#ifndef MLA_ENGINE_TOKENIZER_UTF8_H_
#define MLA_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace mla {

// What ScanUtf8 found at the start of its input.
enum class Utf8Scan {
  kValid,       // one well-formed character of `length` bytes
  kInvalid,     // an ill-formed sequence: its maximal subpart is `length` (>= 1) bytes
  kIncomplete,  // the input ends inside a character that could still be completed
};

// Classifies the sequence at the start of `bytes` (non-empty) per the Unicode standard's
// well-formed byte sequences (Table 3-7). `*length` receives the bytes it covers.
Utf8Scan ScanUtf8(absl::string_view bytes, size_t* length);

bool IsValidUtf8(absl::string_view bytes);

// Appends `bytes` to `out`, replacing each maximal ill-formed subpart with U+FFFD, the way
// Rust's String::from_utf8_lossy (used by Hugging Face decoders) and Python's
// bytes.decode("utf-8", "replace") do. A trailing incomplete character becomes one U+FFFD.
void AppendUtf8Lossy(absl::string_view bytes, std::string* out);
std::string Utf8Lossy(absl::string_view bytes);

// Appends the UTF-8 encoding of a Unicode scalar value.
void AppendCodePoint(char32_t code_point, std::string* out);

// Decodes the character starting at bytes[pos] of a valid UTF-8 string and advances `pos`.
char32_t NextCodePoint(absl::string_view bytes, size_t* pos);
// Decodes the character that ends at bytes[pos - 1] of a valid UTF-8 string (pos > 0).
char32_t PreviousCodePoint(absl::string_view bytes, size_t pos);

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s match).
bool IsUnicodeWhiteSpace(char32_t c);

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_UTF8_H_
