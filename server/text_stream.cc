#include "server/text_stream.h"

#include <utility>

namespace mla {

TextStream::TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop_strings)
    : detokenizer_(tokenizer, /*skip_special_tokens=*/true),
      stops_(stop_strings),
      matcher_(std::move(stop_strings)) {}

void TextStream::NoteStop(int stop_index) {
  if (stop_index >= 0 && static_cast<size_t>(stop_index) < stops_.size()) {
    stop_sequence_ = stops_[static_cast<size_t>(stop_index)];
  }
}

TextStream::Delta TextStream::Add(absl::Span<const int32_t> ids) {
  Delta delta;
  if (stopped()) return delta;
  for (int32_t id : ids) {
    ++delta.tokens_used;
    // A model vocabulary may be larger than the tokenizer's (padding rows of the
    // embedding): such ids have no text, as in Hugging Face's decode.
    absl::StatusOr<std::string> piece = detokenizer_.Add(id);
    if (!piece.ok() || piece->empty()) continue;
    StopStringMatcher::Result r = matcher_.Add(*piece);
    delta.text += r.text;
    if (r.stopped) {
      delta.stopped = true;
      NoteStop(r.stop_index);
      break;
    }
  }
  return delta;
}

std::string TextStream::Apply(GenerationOutput& output, bool* abort) {
  Delta delta = Add(output.tokens);
  *abort = false;
  if (stopped()) {
    *abort = delta.stopped && !output.finished;
    output.tokens.resize(delta.tokens_used);
    if (output.logprobs.size() > delta.tokens_used) output.logprobs.resize(delta.tokens_used);
  }
  if (output.finished) {
    if (!stopped()) delta.text += Flush();
    // The flushed text may complete a stop string too.
    if (stopped() && output.error.empty()) output.reason = FinishReason::kStopSequence;
  }
  return std::move(delta.text);
}

std::string TextStream::Flush() {
  if (stopped()) return "";
  std::string out;
  const std::string tail = detokenizer_.Flush();
  if (!tail.empty()) {
    StopStringMatcher::Result r = matcher_.Add(tail);
    out = std::move(r.text);
    if (r.stopped) {
      NoteStop(r.stop_index);
      return out;
    }
  }
  out += matcher_.Flush();
  return out;
}

}  // namespace mla
