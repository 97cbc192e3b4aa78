#include "engine/tokenizer/tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace mla {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text,
                                                       bool add_special_tokens) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  MLA_RETURN_IF_ERROR(added_->SplitRaw(text, [&](absl::string_view piece, int index) {
    if (index >= 0) {
      ids.push_back(added_->tokens()[static_cast<size_t>(index)].id);
      return absl::OkStatus();
    }
    return EncodePlain(piece, &ids);
  }));
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

// Text between raw-matched added tokens: normalize, match the normalized added tokens,
// then pre-tokenize and BPE-encode what remains.
absl::Status Tokenizer::EncodePlain(absl::string_view piece, std::vector<int32_t>* ids) const {
  std::string normalized;
  if (normalizer_ != nullptr) {
    MLA_ASSIGN_OR_RETURN(normalized, normalizer_->Apply(piece));
    piece = normalized;
  }
  return added_->SplitNormalized(piece, [&](absl::string_view part, int index) {
    if (index >= 0) {
      ids->push_back(added_->tokens()[static_cast<size_t>(index)].id);
      return absl::OkStatus();
    }
    return pre_tokenizer_->Run(part, [&](absl::string_view word) { bpe_->Encode(word, ids); });
  });
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (!IsValidId(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    if (skip_special_tokens && special_[static_cast<size_t>(id)]) continue;
    bytes.append(token_bytes_[static_cast<size_t>(id)]);
  }
  return Utf8Lossy(bytes);
}

absl::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (!IsValidId(id)) return absl::string_view();
  return token_bytes_[static_cast<size_t>(id)];
}

int32_t Tokenizer::TokenToId(absl::string_view token) const {
  for (const AddedToken& added : added_->tokens()) {
    if (added.content == token) return added.id;
  }
  return bpe_->TokenToId(token);
}

std::string Tokenizer::IdToToken(int32_t id) const {
  if (!IsValidId(id)) return std::string();
  for (const AddedToken& added : added_->tokens()) {
    if (added.id == id) return added.pattern;
  }
  return bpe_->tokens()[static_cast<size_t>(id)];
}

size_t Tokenizer::CachedWords() const { return bpe_->CachedWords(); }
void Tokenizer::ClearCache() const { bpe_->ClearCache(); }

}  // namespace mla
