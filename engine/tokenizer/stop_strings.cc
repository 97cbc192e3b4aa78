#include "engine/tokenizer/stop_strings.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"

namespace mla {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings)
    : stops_(std::move(stop_strings)) {
  for (const std::string& s : stops_) max_length_ = std::max(max_length_, s.size());
}

StopStringMatcher::Result StopStringMatcher::Add(absl::string_view delta) {
  Result result;
  if (stopped_) return result;
  held_.append(delta.data(), delta.size());
  // The earliest occurrence wins; among stops starting at the same place, the first listed.
  size_t best_pos = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    if (stops_[i].empty()) continue;
    const size_t pos = held_.find(stops_[i]);
    if (pos != std::string::npos && (best_pos == std::string::npos || pos < best_pos)) {
      best_pos = pos;
      result.stop_index = static_cast<int>(i);
    }
  }
  if (best_pos != std::string::npos) {
    result.text = held_.substr(0, best_pos);
    result.stopped = stopped_ = true;
    held_.clear();
    return result;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  const size_t longest = std::min(held_.size(), max_length_ == 0 ? 0 : max_length_ - 1);
  for (size_t n = longest; n > 0 && keep == 0; --n) {
    const absl::string_view suffix = absl::string_view(held_).substr(held_.size() - n);
    for (const std::string& s : stops_) {
      if (s.size() > n && absl::StartsWith(s, suffix)) {
        keep = n;
        break;
      }
    }
  }
  result.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace mla
