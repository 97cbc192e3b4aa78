// GPT-2's reversible byte <-> character map ("bytes_to_unicode"): every byte becomes a
// printable character, so that byte-level BPE vocabularies can be stored as JSON strings.
// Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF map to themselves; the other 68 bytes map to
// U+0100 onwards in byte order (space 0x20 -> U+0120 'Ġ', newline 0x0A -> U+010A 'Ċ').
#ifndef MLA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
#define MLA_ENGINE_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace mla {

char32_t ByteLevelChar(uint8_t byte);

// Maps each byte to its character (UTF-8 encoded).
std::string BytesToByteLevel(absl::string_view bytes);

// The inverse: false (and `bytes` unspecified) when `token` (valid UTF-8) holds a
// character outside the 256-character alphabet, as special tokens such as
// "<｜begin▁of▁sentence｜>" do.
bool ByteLevelToBytes(absl::string_view token, std::string* bytes);

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_BYTE_LEVEL_H_
