#include "client/recall/backend.h"

#include "common/status_macros.h"

namespace mla::recall {

absl::StatusOr<std::vector<int32_t>> BytesTokenizer::Encode(const std::string& text,
                                                            bool add_special) {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 1);
  if (add_special && bos_id_ >= 0) ids.push_back(bos_id_);
  for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

absl::StatusOr<std::string> BytesTokenizer::Decode(const std::vector<int32_t>& ids) {
  std::string text;
  for (const int32_t id : ids) {
    if (id >= 0 && id < 256) text.push_back(static_cast<char>(id));
  }
  return text;
}

absl::StatusOr<int> CachingCounter::CountPiece(const std::string& piece) {
  {
    absl::MutexLock lock(&mu_);
    const auto it = cache_.find(piece);
    if (it != cache_.end()) {
      ++hits_;
      return it->second;
    }
  }
  // Counted outside the lock: two threads may count one piece, which is harmless.
  MLA_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, tokenizer_->Encode(piece, false));
  const int n = static_cast<int>(ids.size());
  absl::MutexLock lock(&mu_);
  cache_.emplace(piece, n);
  return n;
}

absl::StatusOr<int> CachingCounter::CountPrompt(const std::string& prompt) {
  MLA_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, tokenizer_->Encode(prompt, true));
  return static_cast<int>(ids.size());
}

int64_t CachingCounter::cache_hits() const {
  absl::MutexLock lock(&mu_);
  return hits_;
}

}  // namespace mla::recall
