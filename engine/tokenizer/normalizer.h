// tokenizer.json "normalizer": the text rewrites applied before pre-tokenization.
// Supported: Sequence (nested), Prepend, Replace (String or Regex pattern). Unicode
// normalization forms, case folding and the like are rejected with a clear error rather
// than silently skipped. DeepSeek V2/V3 use an empty Sequence.
#ifndef MLA_ENGINE_TOKENIZER_NORMALIZER_H_
#define MLA_ENGINE_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/regex.h"

namespace mla {

// Parses a {"String": ...} (literal) or {"Regex": ...} pattern, as used by Split
// pre-tokenizers and Replace normalizers.
absl::StatusOr<std::unique_ptr<Regex>> ParsePattern(const nlohmann::json& j,
                                                    const std::string& where);

class Normalizer {
 public:
  // Parses the "normalizer" value; a null value or an empty Sequence gives nullptr (no-op).
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const nlohmann::json& j,
                                                              absl::string_view where);

  absl::StatusOr<std::string> Apply(absl::string_view text) const;

 private:
  struct Step {
    std::string prepend;             // Prepend when `pattern` is null
    std::unique_ptr<Regex> pattern;  // Replace
    std::string content;             // Replace
  };
  static absl::Status AddSteps(const nlohmann::json& j, const std::string& where,
                               std::vector<Step>* steps);

  std::vector<Step> steps_;
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_NORMALIZER_H_
