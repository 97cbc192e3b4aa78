// The text side of one Generate stream: generated token ids in, text deltas out, with the
// request's stop strings applied. Deltas are whole UTF-8 characters; text that could be
// the start of a stop string is held back until later tokens decide; the stop string
// itself is never emitted. Special tokens (BOS, EOS, ...) add no text, as in
// Detokenize with skip_special_tokens; ids the tokenizer does not know add none either.
//
// Not thread-safe: one stream's outputs arrive in order on the engine thread.
#ifndef MLA_SERVER_TEXT_STREAM_H_
#define MLA_SERVER_TEXT_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "engine/request.h"
#include "engine/tokenizer/stop_strings.h"
#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace mla {

class TextStream {
 public:
  // `tokenizer` must outlive this object.
  TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop_strings);

  struct Delta {
    std::string text;      // Safe to send now.
    // How many of the ids passed in belong to the output: all of them, or on a stop the
    // ones up to and including the token that completed the stop string.
    size_t tokens_used = 0;
    bool stopped = false;  // A stop string matched in this call.
  };

  // Adds generated tokens. After a stop, further ids are ignored (tokens_used = 0).
  Delta Add(absl::Span<const int32_t> ids);
  // End of the stream without a stop: the held-back text (an unfinished character as
  // U+FFFD, a possible stop-string prefix as written). A stop string completed by the
  // flushed text still stops the stream (stopped() turns true; its text is dropped).
  std::string Flush();

  // One engine output through the stream, as both front ends use it: returns its text.
  // On a stop string it drops the output's tokens (and logprobs) after it and, on the last
  // output, sets the reason to kStopSequence; `*abort` turns true when the stop came
  // before the engine finished, so that the caller aborts the engine request (with
  // kStopSequence) and no token is generated past the stop.
  std::string Apply(GenerationOutput& output, bool* abort);

  bool stopped() const { return matcher_.stopped(); }
  // The stop string that matched; "" before a stop.
  const std::string& stop_sequence() const { return stop_sequence_; }

 private:
  void NoteStop(int stop_index);

  StreamingDetokenizer detokenizer_;
  std::vector<std::string> stops_;
  StopStringMatcher matcher_;
  std::string stop_sequence_;
};

}  // namespace mla

#endif  // MLA_SERVER_TEXT_STREAM_H_
