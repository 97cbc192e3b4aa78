// Haystack construction: a window of consecutive corpus sentences with the needles
// inserted between sentences at the requested depths, sized so that the whole prompt
// has the requested number of tokens.
#ifndef MLA_CLIENT_RECALL_HAYSTACK_H_
#define MLA_CLIENT_RECALL_HAYSTACK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/recall/needle.h"

namespace mla::recall {

// Splits text into sentences: a sentence ends at '.', '!' or '?' followed by white
// space (or the end). White space runs, newlines included, become single spaces.
std::vector<std::string> SplitSentences(absl::string_view text);

class Corpus {
 public:
  // Reads and splits a text file; an error when it holds no sentence.
  static absl::StatusOr<Corpus> Load(const std::string& path);
  static absl::StatusOr<Corpus> FromText(absl::string_view text);

  const std::vector<std::string>& sentences() const { return sentences_; }

 private:
  explicit Corpus(std::vector<std::string> sentences) : sentences_(std::move(sentences)) {}
  std::vector<std::string> sentences_;
};

// Token counts. Implementations must be thread-safe: trials run concurrently.
class TokenCounter {
 public:
  virtual ~TokenCounter() = default;
  // Tokens of `piece` as it appears inside a prompt, without special tokens.
  virtual absl::StatusOr<int> CountPiece(const std::string& piece) = 0;
  // Tokens of a whole prompt, with the special tokens the tokenizer adds (BOS).
  virtual absl::StatusOr<int> CountPrompt(const std::string& prompt) = 0;
};

struct BuiltPrompt {
  std::string text;         // The prompt without special tokens: haystack + needles + question.
  int tokens = 0;           // CountPrompt(text).
  int haystack_tokens = 0;  // Tokens of the corpus sentences alone (estimated).
  std::vector<double> needle_depths;  // Actual depth of each needle, in NeedleTask order.
};

// Builds the prompt of `task` with `target_tokens` tokens in all. The haystack is a
// window of consecutive sentences starting at a place chosen by task.haystack_seed
// (wrapping around the corpus); its first sentence is cut at a word boundary to hit the
// length, so that the text before the question always ends with a whole sentence.
// Each needle goes to the sentence boundary nearest to its depth. Piece counts are
// summed to size the window, then the whole prompt is counted and the window resized
// until the count is exact or a few rounds have passed (sub-word tokenizers do not
// count additively): the result is within a few tokens of the target.
absl::StatusOr<BuiltPrompt> BuildPrompt(const Corpus& corpus, const NeedleTask& task,
                                        int target_tokens, TokenCounter& counter);

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_HAYSTACK_H_
