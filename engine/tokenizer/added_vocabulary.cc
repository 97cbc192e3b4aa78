#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/utf8.h"

namespace mla {
namespace {

// Rust regex's Unicode \w, which Hugging Face uses for single_word.
constexpr absl::string_view kWordCharPattern =
    R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])";

uint64_t EdgeKey(int node, uint8_t byte) { return (static_cast<uint64_t>(node) << 8) | byte; }

absl::StatusOr<AddedToken> ParseToken(const nlohmann::json& j, const std::string& where) {
  AddedToken token;
  const nlohmann::json* id = json_util::Find(j, "id");
  if (id == nullptr || !id->is_number_integer() || id->get<int64_t>() < 0 ||
      id->get<int64_t>() > INT32_MAX) {
    return json_util::Invalid(json_util::Field(where, "id"), "expected a token id");
  }
  token.id = static_cast<int32_t>(id->get<int64_t>());
  MLA_ASSIGN_OR_RETURN(token.content, json_util::GetString(j, "content", where));
  if (!IsValidUtf8(token.content)) {
    return json_util::Invalid(json_util::Field(where, "content"), "is not valid UTF-8");
  }
  MLA_ASSIGN_OR_RETURN(token.special, json_util::GetBool(j, "special", false, where));
  MLA_ASSIGN_OR_RETURN(token.single_word, json_util::GetBool(j, "single_word", false, where));
  MLA_ASSIGN_OR_RETURN(token.lstrip, json_util::GetBool(j, "lstrip", false, where));
  MLA_ASSIGN_OR_RETURN(token.rstrip, json_util::GetBool(j, "rstrip", false, where));
  // Hugging Face's default: special tokens are not normalized, others are.
  MLA_ASSIGN_OR_RETURN(token.normalized,
                       json_util::GetBool(j, "normalized", !token.special, where));
  return token;
}

}  // namespace

void AddedVocabulary::Trie::Add(absl::string_view pattern, int token_index) {
  if (pattern.empty()) return;
  int node = 0;
  for (char c : pattern) {
    const uint64_t key = EdgeKey(node, static_cast<uint8_t>(c));
    auto it = edges_.find(key);
    if (it == edges_.end()) {
      const int child = static_cast<int>(node_token_.size());
      node_token_.push_back(-1);
      it = edges_.emplace(key, child).first;
    }
    node = it->second;
  }
  if (node_token_[static_cast<size_t>(node)] < 0) {
    node_token_[static_cast<size_t>(node)] = token_index;
  }
  first_bytes_.set(static_cast<uint8_t>(pattern[0]));
}

bool AddedVocabulary::Trie::Find(absl::string_view text, size_t from, size_t* start, size_t* end,
                                 int* token_index) const {
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_bytes_.test(static_cast<uint8_t>(text[i]))) continue;
    int node = 0;
    int best = -1;
    for (size_t j = i; j < text.size(); ++j) {
      auto it = edges_.find(EdgeKey(node, static_cast<uint8_t>(text[j])));
      if (it == edges_.end()) break;
      node = it->second;
      if (node_token_[static_cast<size_t>(node)] >= 0) {
        best = node_token_[static_cast<size_t>(node)];
        *end = j + 1;
      }
    }
    if (best >= 0) {
      *start = i;
      *token_index = best;
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::unique_ptr<AddedVocabulary>> AddedVocabulary::FromJson(
    const nlohmann::json& added_tokens, const Normalizer* normalizer,
    absl::FunctionRef<int32_t(absl::string_view)> model_id, absl::string_view where) {
  std::unique_ptr<AddedVocabulary> vocab(new AddedVocabulary());
  const std::string at(where);
  if (!added_tokens.is_null() && !added_tokens.is_array()) {
    return json_util::Invalid(at, "expected an array");
  }
  for (size_t i = 0; !added_tokens.is_null() && i < added_tokens.size(); ++i) {
    MLA_ASSIGN_OR_RETURN(AddedToken token,
                         ParseToken(added_tokens[i], absl::StrCat(at, "[", i, "]")));
    if (const int32_t id = model_id(token.content); id >= 0) token.id = id;
    vocab->tokens_.push_back(std::move(token));
  }
  for (AddedToken& token : vocab->tokens_) {
    token.pattern = token.content;
    if (token.normalized && normalizer != nullptr) {
      MLA_ASSIGN_OR_RETURN(token.pattern, normalizer->Apply(token.content));
    }
  }
  // Special tokens come first in Hugging Face's matchers; it only matters for duplicates.
  for (bool special : {true, false}) {
    for (size_t i = 0; i < vocab->tokens_.size(); ++i) {
      const AddedToken& token = vocab->tokens_[i];
      if (token.special != special) continue;
      (token.normalized ? vocab->normalized_ : vocab->raw_).Add(token.pattern, static_cast<int>(i));
    }
  }
  MLA_ASSIGN_OR_RETURN(vocab->word_char_, Regex::Compile(kWordCharPattern));
  return vocab;
}

absl::Status AddedVocabulary::SplitRaw(absl::string_view text, Emit emit) const {
  return Split(raw_, text, emit);
}

absl::Status AddedVocabulary::SplitNormalized(absl::string_view text, Emit emit) const {
  return Split(normalized_, text, emit);
}

absl::StatusOr<bool> AddedVocabulary::IsWordChar(absl::string_view text, size_t char_start) const {
  return word_char_->MatchesAt(text, char_start);
}

absl::Status AddedVocabulary::Split(const Trie& trie, absl::string_view text, Emit emit) const {
  if (trie.empty()) return text.empty() ? absl::OkStatus() : emit(text, -1);
  size_t search_from = 0;
  size_t emitted = 0;  // end of the last piece handed out
  size_t start = 0, stop = 0;
  int index = -1;
  while (trie.Find(text, search_from, &start, &stop, &index)) {
    search_from = stop;  // the matcher resumes after the match even when it is discarded
    const AddedToken& token = tokens_[static_cast<size_t>(index)];
    if (token.single_word) {
      bool word_before = false;
      bool word_after = false;
      if (start > 0) {
        size_t before = start - 1;
        while (before > 0 && (static_cast<uint8_t>(text[before]) & 0xC0) == 0x80) --before;
        MLA_ASSIGN_OR_RETURN(word_before, IsWordChar(text, before));
      }
      if (stop < text.size()) {
        MLA_ASSIGN_OR_RETURN(word_after, IsWordChar(text, stop));
      }
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t s = start;
      while (s > 0 && IsUnicodeWhiteSpace(PreviousCodePoint(text, s))) {
        --s;
        while ((static_cast<uint8_t>(text[s]) & 0xC0) == 0x80) --s;
      }
      start = s;
    }
    start = std::max(start, emitted);
    if (token.rstrip) {
      size_t next = stop;
      while (next < text.size() && IsUnicodeWhiteSpace(NextCodePoint(text, &next))) stop = next;
    }
    if (emitted < start) MLA_RETURN_IF_ERROR(emit(text.substr(emitted, start - emitted), -1));
    MLA_RETURN_IF_ERROR(emit(text.substr(start, stop - start), index));
    emitted = stop;
  }
  if (emitted < text.size()) MLA_RETURN_IF_ERROR(emit(text.substr(emitted), -1));
  return absl::OkStatus();
}

}  // namespace mla
