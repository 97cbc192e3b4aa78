// A compiled PCRE2 regular expression (UTF + UCP, JIT) that behaves like the Oniguruma
// regexes Hugging Face tokenizers use for Split pre-tokenizers and Replace normalizers.
#ifndef MLA_ENGINE_TOKENIZER_REGEX_H_
#define MLA_ENGINE_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla {

class Regex {
 public:
  // Compiles an Oniguruma-syntax pattern. \s and \S are rewritten to Unicode White_Space
  // (PCRE2's \s also matches U+180E, Oniguruma's does not); ^ and $ match at line breaks as
  // in Oniguruma's Ruby syntax. Other escapes keep their PCRE2 meaning.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(absl::string_view pattern);
  // A regex matching `literal` exactly.
  static absl::StatusOr<std::unique_ptr<Regex>> Literal(absl::string_view literal);

  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(start, end) for each successive match in `subject` (valid UTF-8),
  // iterating like the Rust onig crate's find_iter: the search resumes at the previous
  // match's end, and an empty match right where the previous match ended is skipped by
  // moving on one character. Safe to call from several threads at once.
  absl::Status ForEachMatch(absl::string_view subject,
                            absl::FunctionRef<void(size_t, size_t)> on_match) const;

  // True if the regex matches at `pos` (anchored there), looking at the whole subject.
  absl::StatusOr<bool> MatchesAt(absl::string_view subject, size_t pos) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  absl::StatusOr<bool> MatchOnce(absl::string_view subject, size_t start, bool anchored,
                                 size_t* match_start, size_t* match_end) const;

  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so that users need no PCRE2 headers
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_REGEX_H_
