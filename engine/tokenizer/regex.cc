#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace mla {
namespace {

// Per-thread match state: PCRE2 match data must not be shared between concurrent matches,
// and a JIT stack larger than the default 32 KiB lets patterns such as \s+(?!\S) run over
// long whitespace runs.
class MatchScratch {
 public:
  MatchScratch()
      : data_(pcre2_match_data_create(1, nullptr)),
        context_(pcre2_match_context_create(nullptr)),
        stack_(pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr)) {
    if (context_ != nullptr && stack_ != nullptr) {
      pcre2_jit_stack_assign(context_, nullptr, stack_);
    }
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack_);
    pcre2_match_context_free(context_);
    pcre2_match_data_free(data_);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

  pcre2_match_data* data() const { return data_; }
  pcre2_match_context* context() const { return context_; }

 private:
  pcre2_match_data* data_;
  pcre2_match_context* context_;
  pcre2_jit_stack* stack_;
};

MatchScratch& ThreadScratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

std::string Pcre2Error(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return absl::StrCat("PCRE2 error ", code);
  }
  return std::string(reinterpret_cast<const char*>(buffer));
}

// Rewrites the escapes whose meaning differs between Oniguruma and PCRE2 (see regex.h).
absl::StatusOr<std::string> TranslateOniguruma(absl::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out.push_back(pattern[i]);
      continue;
    }
    const char next = pattern[++i];
    if (next == 's') {
      out.append("\\p{White_Space}");
    } else if (next == 'S') {
      out.append("\\P{White_Space}");
    } else if (next == 'h' || next == 'H') {
      // Oniguruma: hexadecimal digit; PCRE2: horizontal space. Not used by known models.
      return absl::UnimplementedError(
          absl::StrCat("regex escape \\", std::string(1, next), " is not supported"));
    } else {
      out.push_back('\\');
      out.push_back(next);
    }
  }
  return out;
}

absl::StatusOr<void*> CompilePcre2(const std::string& pattern, absl::string_view shown) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid regex '", shown, "' at offset ", offset, ": ", Pcre2Error(error)));
  }
  // Without JIT support PCRE2 falls back to its interpreter: slower, same results.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return static_cast<void*>(code);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(absl::string_view pattern) {
  auto translated = TranslateOniguruma(pattern);
  if (!translated.ok()) {
    return absl::Status(translated.status().code(),
                        absl::StrCat(translated.status().message(), " (in regex '", pattern, "')"));
  }
  auto code = CompilePcre2(*translated, pattern);
  if (!code.ok()) return code.status();
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(pattern);
  regex->code_ = *code;
  return regex;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Literal(absl::string_view literal) {
  std::string escaped;
  for (char c : literal) {
    // A backslash before an ASCII non-alphanumeric character always means that character.
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) escaped.push_back('\\');
    escaped.push_back(c);
  }
  auto code = CompilePcre2(escaped, literal);
  if (!code.ok()) return code.status();
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = escaped;
  regex->code_ = *code;
  return regex;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::StatusOr<bool> Regex::MatchOnce(absl::string_view subject, size_t start, bool anchored,
                                      size_t* match_start, size_t* match_end) const {
  MatchScratch& scratch = ThreadScratch();
  // The tokenizer validates its input once; every start offset is a character boundary.
  const uint32_t options = PCRE2_NO_UTF_CHECK | (anchored ? PCRE2_ANCHORED : 0);
  const int rc = pcre2_match(static_cast<const pcre2_code*>(code_),
                             reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                             options, scratch.data(), scratch.context());
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("regex '", pattern_, "' failed: ", Pcre2Error(rc)));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data());
  *match_start = ovector[0];
  *match_end = ovector[1];
  return true;
}

absl::Status Regex::ForEachMatch(absl::string_view subject,
                                 absl::FunctionRef<void(size_t, size_t)> on_match) const {
  size_t search_from = 0;
  bool have_previous = false;
  size_t previous_end = 0;
  while (search_from <= subject.size()) {
    size_t start = 0;
    size_t end = 0;
    auto found = MatchOnce(subject, search_from, /*anchored=*/false, &start, &end);
    if (!found.ok()) return found.status();
    if (!*found) break;
    if (start == end && have_previous && previous_end == end) {
      if (search_from >= subject.size()) break;
      NextCodePoint(subject, &search_from);
      continue;
    }
    on_match(start, end);
    search_from = end;
    have_previous = true;
    previous_end = end;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Regex::MatchesAt(absl::string_view subject, size_t pos) const {
  size_t start = 0;
  size_t end = 0;
  return MatchOnce(subject, pos, /*anchored=*/true, &start, &end);
}

}  // namespace mla
