// tokenizer.json "added_tokens": special and added tokens matched in the text before
// pre-tokenization, as Hugging Face's AddedVocabulary does: tokens with normalized=false
// are matched in the raw text first, then tokens with normalized=true in the normalized
// remainder; each pass takes the leftmost, then longest, match. single_word, lstrip and
// rstrip are honoured (word characters: Alphabetic, M, Nd, Pc and Join_Control, like Rust's
// \w; spaces: Unicode White_Space).
#ifndef MLA_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_
#define MLA_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_

#include <bitset>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/regex.h"

namespace mla {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  // What is matched in the text: `content`, normalized when `normalized` is set. Hugging
  // Face also decodes the token to this string.
  std::string pattern;
};

class AddedVocabulary {
 public:
  // Receives each piece of the text in order: token_index >= 0 for a matched added token
  // (an index into tokens()), -1 for text between matches.
  using Emit = absl::FunctionRef<absl::Status(absl::string_view piece, int token_index)>;

  // `normalizer` (may be null) normalizes the patterns of normalized tokens. A token whose
  // content is in the model vocabulary takes the model's id (`model_id` gives it, or -1),
  // as Hugging Face does whatever id the JSON says.
  static absl::StatusOr<std::unique_ptr<AddedVocabulary>> FromJson(
      const nlohmann::json& added_tokens, const Normalizer* normalizer,
      absl::FunctionRef<int32_t(absl::string_view)> model_id, absl::string_view where);

  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Splits raw text on the tokens with normalized=false.
  absl::Status SplitRaw(absl::string_view text, Emit emit) const;
  // Splits normalized text on the tokens with normalized=true.
  absl::Status SplitNormalized(absl::string_view text, Emit emit) const;

 private:
  // A byte trie over token patterns for leftmost-longest matching.
  class Trie {
   public:
    void Add(absl::string_view pattern, int token_index);
    bool empty() const { return node_token_.size() <= 1; }
    // The first match at or after `from`: false when none.
    bool Find(absl::string_view text, size_t from, size_t* start, size_t* end,
              int* token_index) const;

   private:
    std::vector<int> node_token_{-1};           // token index ending at each node, -1 if none
    absl::flat_hash_map<uint64_t, int> edges_;  // (node << 8 | byte) -> child node
    std::bitset<256> first_bytes_;
  };

  absl::Status Split(const Trie& trie, absl::string_view text, Emit emit) const;
  absl::StatusOr<bool> IsWordChar(absl::string_view text, size_t char_start) const;

  std::vector<AddedToken> tokens_;
  Trie raw_;
  Trie normalized_;
  std::unique_ptr<Regex> word_char_;
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_
