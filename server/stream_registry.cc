#include "server/stream_registry.h"

namespace mla {

bool StreamRegistry::TryEnter(int cap) {
  // The slot is taken before the check, so that concurrent calls cannot overshoot the cap.
  const int before = active_.fetch_add(1);
  if (cap > 0 && before >= cap) {
    active_.fetch_sub(1);
    return false;
  }
  return true;
}

void StreamRegistry::AddRequest(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  request_ids_.insert(request_id);
}

void StreamRegistry::Leave(const std::string& request_id) {
  if (!request_id.empty()) {
    absl::MutexLock lock(&mu_);
    request_ids_.erase(request_id);
  }
  active_.fetch_sub(1);
}

std::vector<std::string> StreamRegistry::RequestIds() const {
  absl::MutexLock lock(&mu_);
  return std::vector<std::string>(request_ids_.begin(), request_ids_.end());
}

}  // namespace mla
