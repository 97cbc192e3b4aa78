#include "engine/tokenizer/utf8.h"

#include <cstdint>

namespace mla {
namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The number of bytes a lead byte announces and the allowed range of the byte after it;
// the later continuation bytes are always 80..BF. Zero length: not a lead byte.
struct LeadInfo {
  int length;
  uint8_t second_lo;
  uint8_t second_hi;
};

LeadInfo InfoForLead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // excludes the surrogates
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

}  // namespace

Utf8Scan ScanUtf8(absl::string_view bytes, size_t* length) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const LeadInfo info = InfoForLead(p[0]);
  if (info.length == 0) {
    *length = 1;
    return Utf8Scan::kInvalid;
  }
  for (int i = 1; i < info.length; ++i) {
    if (static_cast<size_t>(i) >= bytes.size()) {
      *length = bytes.size();
      return Utf8Scan::kIncomplete;
    }
    const uint8_t lo = i == 1 ? info.second_lo : 0x80;
    const uint8_t hi = i == 1 ? info.second_hi : 0xBF;
    if (p[i] < lo || p[i] > hi) {
      *length = static_cast<size_t>(i);
      return Utf8Scan::kInvalid;
    }
  }
  *length = static_cast<size_t>(info.length);
  return Utf8Scan::kValid;
}

bool IsValidUtf8(absl::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    // ASCII fast path: the common case for prompts and code.
    if (static_cast<uint8_t>(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t length = 0;
    if (ScanUtf8(bytes.substr(pos), &length) != Utf8Scan::kValid) return false;
    pos += length;
  }
  return true;
}

void AppendUtf8Lossy(absl::string_view bytes, std::string* out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t length = 0;
    const Utf8Scan scan = ScanUtf8(bytes.substr(pos), &length);
    if (scan == Utf8Scan::kValid) {
      out->append(bytes.data() + pos, length);
    } else {
      out->append(kReplacement.data(), kReplacement.size());
    }
    pos += length;
  }
}

std::string Utf8Lossy(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  AppendUtf8Lossy(bytes, &out);
  return out;
}

void AppendCodePoint(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

char32_t NextCodePoint(absl::string_view bytes, size_t* pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data()) + *pos;
  const int length = InfoForLead(p[0]).length;
  char32_t c = length == 1 ? p[0] : p[0] & (0x7F >> length);
  for (int i = 1; i < length; ++i) c = (c << 6) | (p[i] & 0x3F);
  *pos += static_cast<size_t>(length == 0 ? 1 : length);
  return c;
}

char32_t PreviousCodePoint(absl::string_view bytes, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && (static_cast<uint8_t>(bytes[start]) & 0xC0) == 0x80) --start;
  return NextCodePoint(bytes, &start);
}

bool IsUnicodeWhiteSpace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace mla
