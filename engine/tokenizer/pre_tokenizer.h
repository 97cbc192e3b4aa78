// tokenizer.json "pre_tokenizer": splits normalized text into the words that BPE encodes.
// Supported: a ByteLevel pre-tokenizer alone, or a Sequence of Split steps ending with
// ByteLevel (DeepSeek V2/V3: three regex Splits, then ByteLevel without its own regex).
// The byte-level mapping itself is implicit: words stay raw bytes and the BPE model is
// keyed by bytes, which is equivalent because GPT-2's byte-to-character map is a bijection.
#ifndef MLA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define MLA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/regex.h"

namespace mla {

// How a Split step treats the pieces its pattern matches (Hugging Face's names).
enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous,
};

class PreTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& j,
                                                                absl::string_view where);

  // Calls emit(word) for each non-empty word of `text` (valid UTF-8), in order. A word is
  // only valid during its call (it may live in a temporary buffer).
  absl::Status Run(absl::string_view text, absl::FunctionRef<void(absl::string_view)> emit) const;

 private:
  struct SplitStep {
    std::unique_ptr<Regex> regex;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };

  absl::Status AddStep(const nlohmann::json& j, const std::string& where, bool last);
  absl::Status RunStep(size_t step, absl::string_view piece,
                       absl::FunctionRef<void(absl::string_view)> emit) const;
  absl::Status RunByteLevel(absl::string_view piece,
                            absl::FunctionRef<void(absl::string_view)> emit) const;

  std::vector<SplitStep> splits_;
  bool has_byte_level_ = false;
  bool add_prefix_space_ = false;
  std::unique_ptr<Regex> byte_level_regex_;  // GPT-2's regex when use_regex is true
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
