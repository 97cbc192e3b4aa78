#include "engine/tokenizer/byte_level.h"

#include <array>

#include "engine/tokenizer/utf8.h"

namespace mla {
namespace {

bool MapsToItself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<char32_t, 256> byte_to_char;
  std::array<int16_t, 0x144> char_to_byte;  // every mapped character is below U+0144

  Tables() {
    char_to_byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      byte_to_char[b] = MapsToItself(b) ? static_cast<char32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

}  // namespace

char32_t ByteLevelChar(uint8_t byte) { return GetTables().byte_to_char[byte]; }

std::string BytesToByteLevel(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendCodePoint(ByteLevelChar(static_cast<uint8_t>(c)), &out);
  return out;
}

bool ByteLevelToBytes(absl::string_view token, std::string* bytes) {
  const Tables& tables = GetTables();
  bytes->clear();
  size_t pos = 0;
  while (pos < token.size()) {
    const char32_t c = NextCodePoint(token, &pos);
    if (c >= tables.char_to_byte.size() || tables.char_to_byte[c] < 0) return false;
    bytes->push_back(static_cast<char>(tables.char_to_byte[c]));
  }
  return true;
}

}  // namespace mla
