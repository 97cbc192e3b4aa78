// The Generate streams still running: their count (for the stream cap and the drain) and
// the engine request ids behind them, so that a drain past its timeout can abort every
// request and let each stream end with its final message (FINISH_REASON_ABORT, usage,
// timings) before the transport closes.
#ifndef MLA_SERVER_STREAM_REGISTRY_H_
#define MLA_SERVER_STREAM_REGISTRY_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace mla {

class StreamRegistry {
 public:
  // Takes a slot for a new stream; false (and no slot) when `cap` > 0 are taken already.
  bool TryEnter(int cap);
  // The stream's engine request is live under `request_id`.
  void AddRequest(const std::string& request_id);
  // Gives the slot back and forgets `request_id` (empty when none was added).
  void Leave(const std::string& request_id);

  int active() const { return active_.load(); }
  std::vector<std::string> RequestIds() const;

 private:
  std::atomic<int> active_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> request_ids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mla

#endif  // MLA_SERVER_STREAM_REGISTRY_H_
