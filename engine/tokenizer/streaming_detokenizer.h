// Incremental decoding for streamed generation: token ids go in one at a time, text deltas
// come out. A delta never ends inside a UTF-8 character: bytes of a character that later
// tokens may still complete are held back. The deltas of a whole stream, Flush included,
// concatenate to exactly Tokenizer::Decode of all its ids.
#ifndef MLA_ENGINE_TOKENIZER_STREAMING_DETOKENIZER_H_
#define MLA_ENGINE_TOKENIZER_STREAMING_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace mla {

class StreamingDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  explicit StreamingDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // The text that became complete with this token (possibly empty). Ill-formed bytes
  // become U+FFFD as in Decode. InvalidArgument for an unknown id (the state is unchanged).
  absl::StatusOr<std::string> Add(int32_t id);

  // End of stream: the held-back bytes of an unfinished character, as U+FFFD (or "").
  std::string Flush();

  // Bytes currently held back (0-3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // a proper prefix of a UTF-8 character
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_STREAMING_DETOKENIZER_H_
