#include "engine/chat/lexer.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/chat/text_util.h"

namespace mla::chat {
namespace {

// Decodes one code point at `pos` (returns its byte length in *len).
char32_t CodePointAt(absl::string_view s, size_t pos, size_t* len) {
  size_t n = 1;
  const auto lead = static_cast<unsigned char>(s[pos]);
  if (lead >= 0xF0) {
    n = 4;
  } else if (lead >= 0xE0) {
    n = 3;
  } else if (lead >= 0xC0) {
    n = 2;
  }
  n = std::min(n, s.size() - pos);
  const std::vector<char32_t> cps = DecodeUtf8(s.substr(pos, n));
  *len = cps.size() == 1 ? n : 1;
  return cps.empty() ? 0 : cps[0];
}

// Position after the Python-whitespace run starting at `pos`.
size_t SkipSpace(absl::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t len = 0;
    if (!IsPythonSpace(CodePointAt(s, pos, &len))) break;
    pos += len;
  }
  return pos;
}

// Python's str.rstrip() (Unicode whitespace).
absl::string_view RStrip(absl::string_view s) {
  const std::vector<char32_t> cps = DecodeUtf8(s);
  size_t end = s.size();
  for (size_t i = cps.size(); i > 0 && IsPythonSpace(cps[i - 1]); --i) {
    std::string enc;
    AppendUtf8(cps[i - 1], &enc);
    end -= enc.size();
  }
  return s.substr(0, end);
}

bool AllSpace(absl::string_view s) { return SkipSpace(s, 0) == s.size(); }

constexpr const char* kOperators[] = {"**", "//", "==", "!=", ">=", "<=", "+", "-", "/", "*",
                                      "%",  "~",  "[",  "]",  "(",  ")",  "{", "}", ">", "<",
                                      "=",  ".",  ":",  "|",  ",",  ";"};

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') newlines_.push_back(i);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      const size_t open = FindOpener(pos_);
      if (open == std::string::npos) {
        Emit(TokenKind::kText, src_.substr(pos_), pos_);
        pos_ = src_.size();
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const char sign = open + 2 < src_.size() ? src_[open + 2] : '\0';
      absl::string_view text = absl::string_view(src_).substr(pos_, open - pos_);
      if (sign == '-') {
        text = RStrip(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: drop the indentation before a block or comment tag that starts
        // its line.
        const size_t line_start = text.rfind('\n') == absl::string_view::npos
                                      ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && AllSpace(text.substr(line_start))) {
          text = text.substr(0, line_start);
        }
      }
      if (!text.empty()) Emit(TokenKind::kText, std::string(text), pos_);
      pos_ = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      absl::Status status = kind == '#' ? LexComment(open) : LexTag(kind == '%', open);
      if (!status.ok()) return status;
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    Emit(TokenKind::kEof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  int LineAt(size_t pos) const {
    return 1 + static_cast<int>(std::lower_bound(newlines_.begin(), newlines_.end(), pos) -
                                newlines_.begin());
  }

  absl::Status Error(size_t pos, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("line ", LineAt(pos), ": ", what));
  }

  void Emit(TokenKind kind, std::string text, size_t pos) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.line = LineAt(pos);
    tokens_.push_back(std::move(t));
  }

  size_t FindOpener(size_t from) const {
    size_t p = src_.find('{', from);
    while (p != std::string::npos && p + 1 < src_.size()) {
      const char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      p = src_.find('{', p + 1);
    }
    return std::string::npos;
  }

  // After a closing delimiter: `-` strips all following whitespace, `+` keeps it, and a
  // plain block or comment end drops one newline (trim_blocks).
  void AfterClose(char sign, bool trim_newline) {
    if (sign == '-') {
      pos_ = SkipSpace(src_, pos_);
    } else if (sign != '+' && trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  absl::Status LexComment(size_t open) {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) return Error(open, "missing end of comment tag");
    const char sign = close > pos_ ? src_[close - 1] : '\0';
    pos_ = close + 2;
    AfterClose(sign, /*trim_newline=*/true);
    return absl::OkStatus();
  }

  // Matches the tag's closing delimiter at pos_ (only when brackets are balanced).
  bool TryClose(bool block) {
    const std::string end = block ? "%}" : "}}";
    char sign = '\0';
    size_t p = pos_;
    if (src_[p] == '-' || (block && src_[p] == '+')) {
      sign = src_[p];
      ++p;
    }
    if (src_.compare(p, 2, end) != 0) return false;
    pos_ = p + 2;
    AfterClose(sign, /*trim_newline=*/block);
    return true;
  }

  absl::Status LexTag(bool block, size_t open) {
    Emit(block ? TokenKind::kBlockBegin : TokenKind::kVarBegin, "", open);
    if (block) {
      const size_t word = SkipSpace(src_, pos_);
      if (src_.compare(word, 3, "raw") == 0 &&
          (word + 3 >= src_.size() || !std::isalnum(static_cast<unsigned char>(src_[word + 3])))) {
        return Error(open, "unsupported tag 'raw'");
      }
    }
    std::vector<char> brackets;
    while (true) {
      if (pos_ >= src_.size()) return Error(open, "unexpected end of template inside a tag");
      const size_t start = pos_;
      if (brackets.empty() && TryClose(block)) {
        Emit(block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, "", start);
        return absl::OkStatus();
      }
      const size_t after_space = SkipSpace(src_, pos_);
      if (after_space != pos_) {
        pos_ = after_space;
        continue;
      }
      const char c = src_[pos_];
      absl::Status status;
      if (std::isdigit(static_cast<unsigned char>(c))) {
        status = LexNumber();
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos_;
        while (end < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[end])) || src_[end] == '_')) {
          ++end;
        }
        Emit(TokenKind::kName, src_.substr(pos_, end - pos_), pos_);
        pos_ = end;
      } else if (c == '\'' || c == '"') {
        status = LexString();
      } else {
        status = LexOperator(&brackets);
      }
      if (!status.ok()) return status;
    }
  }

  absl::Status LexOperator(std::vector<char>* brackets) {
    for (const char* op : kOperators) {
      const size_t n = std::char_traits<char>::length(op);
      if (src_.compare(pos_, n, op) != 0) continue;
      const char c = op[0];
      if (n == 1 && (c == '(' || c == '[' || c == '{')) {
        brackets->push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
      } else if (n == 1 && (c == ')' || c == ']' || c == '}')) {
        if (brackets->empty() || brackets->back() != c) {
          return Error(pos_, absl::StrCat("unexpected '", std::string(1, c), "'"));
        }
        brackets->pop_back();
      }
      Emit(TokenKind::kOperator, op, pos_);
      pos_ += n;
      return absl::OkStatus();
    }
    size_t len = 0;
    CodePointAt(src_, pos_, &len);
    return Error(pos_, absl::StrCat("unexpected char '", src_.substr(pos_, len), "'"));
  }

  // Decimal integers and floats with optional '_' separators, as jinja's regexes accept.
  absl::Status LexNumber() {
    auto digits = [&](size_t p) {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                                 (src_[p] == '_' && p + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[p + 1]))))) {
        ++p;
      }
      return p;
    };
    size_t end = digits(pos_);
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
      end = digits(end + 1);
      is_float = true;
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t p = end + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        end = digits(p);
        is_float = true;
      }
    }
    std::string text = absl::StrReplaceAll(src_.substr(pos_, end - pos_), {{"_", ""}});
    Token t;
    t.kind = is_float ? TokenKind::kFloat : TokenKind::kInt;
    t.text = text;
    t.line = LineAt(pos_);
    if (is_float) {
      t.float_value = std::stod(text);
    } else {
      if (text.size() > 1 && text[0] == '0') {
        // jinja lexes "007" as "00" then "7", which never parses: reject it outright.
        return Error(pos_, "invalid integer literal");
      }
      if (text.size() > 18) return Error(pos_, "integer literal too large");
      t.int_value = std::stoll(text);
    }
    tokens_.push_back(std::move(t));
    pos_ = end;
    return absl::OkStatus();
  }

  absl::Status LexString();

  std::string src_;
  std::vector<size_t> newlines_;  // offsets of '\n', for line numbers
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

// Python's "unicode-escape" decoding of a string literal's body, which jinja applies.
absl::Status Unescape(absl::string_view body, std::string* out) {
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) {
      out->push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    switch (c) {
      case '\n': break;  // line continuation
      case '\\': out->push_back('\\'); break;
      case '\'': out->push_back('\''); break;
      case '"': out->push_back('"'); break;
      case 'a': out->push_back('\a'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'v': out->push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        const size_t n = c == 'x' ? 2 : (c == 'u' ? 4 : 8);
        const std::string hex(body.substr(i + 1, n));
        if (hex.size() != n ||
            hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
          return absl::InvalidArgumentError("truncated escape in string literal");
        }
        const unsigned long cp = std::stoul(hex, nullptr, 16);
        if (cp > 0x10FFFF) return absl::InvalidArgumentError("illegal Unicode character");
        AppendUtf8(static_cast<char32_t>(cp), out);
        i += n;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          unsigned cp = 0;
          size_t k = 0;
          for (; k < 3 && i + k < body.size() && body[i + k] >= '0' && body[i + k] <= '7'; ++k) {
            cp = cp * 8 + (body[i + k] - '0');
          }
          AppendUtf8(cp, out);
          i += k - 1;
        } else if (c == 'N') {
          return absl::InvalidArgumentError("\\N{...} escapes are not supported");
        } else {
          // Python keeps unknown escapes verbatim.
          out->push_back('\\');
          out->push_back(c);
        }
    }
  }
  return absl::OkStatus();
}

absl::Status Lexer::LexString() {
  const char quote = src_[pos_];
  size_t p = pos_ + 1;
  while (p < src_.size() && src_[p] != quote) {
    p += src_[p] == '\\' ? 2 : 1;
  }
  if (p >= src_.size()) return Error(pos_, "unterminated string literal");
  Token t;
  t.kind = TokenKind::kString;
  t.line = LineAt(pos_);
  absl::Status status = Unescape(absl::string_view(src_).substr(pos_ + 1, p - pos_ - 1), &t.text);
  if (!status.ok()) return Error(pos_, status.message());
  tokens_.push_back(std::move(t));
  pos_ = p + 1;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source) {
  // jinja normalizes \r\n and \r to \n and, without keep_trailing_newline, drops one
  // trailing newline.
  std::string normalized = absl::StrReplaceAll(source, {{"\r\n", "\n"}, {"\r", "\n"}});
  if (!normalized.empty() && normalized.back() == '\n') normalized.pop_back();
  return Lexer(std::move(normalized)).Run();
}

}  // namespace mla::chat
