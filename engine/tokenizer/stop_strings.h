// Stop strings over streamed text: finds a stop string even when it spans several deltas
// and never emits any of it. Text that could be the start of a stop string is held back
// until the following deltas decide. Feed it the deltas of a StreamingDetokenizer (whole
// characters), so held-back text and emitted text always split at character boundaries.
#ifndef MLA_ENGINE_TOKENIZER_STOP_STRINGS_H_
#define MLA_ENGINE_TOKENIZER_STOP_STRINGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mla {

class StopStringMatcher {
 public:
  // Empty strings are ignored.
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Result {
    std::string text;  // safe to emit now
    bool stopped = false;
    int stop_index = -1;  // which stop string matched (index into the constructor's list)
  };

  // Adds a delta. Once a stop string has matched, the text before it is returned with
  // stopped = true, and later calls return nothing.
  Result Add(absl::string_view delta);
  // End of stream without a stop: the held-back text.
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;  // as given; empty entries never match
  size_t max_length_ = 0;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_STOP_STRINGS_H_
