#include "engine/tokenizer/streaming_detokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace mla {

absl::StatusOr<std::string> StreamingDetokenizer::Add(int32_t id) {
  if (!tokenizer_->IsValidId(id)) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is not in the vocabulary"));
  }
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
  const absl::string_view bytes = tokenizer_->TokenBytes(id);
  pending_.append(bytes.data(), bytes.size());
  // Everything up to the first character that is still incomplete can be decided now:
  // U+FFFD replacement depends only on the bytes of the ill-formed sequence itself, so
  // decoding in pieces at these boundaries gives the same text as decoding at once.
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    size_t length = 0;
    const absl::string_view rest = absl::string_view(pending_).substr(pos);
    if (ScanUtf8(rest, &length) == Utf8Scan::kIncomplete) break;
    AppendUtf8Lossy(rest.substr(0, length), &out);
    pos += length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamingDetokenizer::Flush() {
  std::string out = Utf8Lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace mla
