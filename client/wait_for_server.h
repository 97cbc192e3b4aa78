// A client started beside a server (a script that launches mla-server, then mla-recall or
// mla-bench) may find it not yet listening or still loading its model: both answer
// UNAVAILABLE. Such clients retry their first call for a while instead of failing at once.
#ifndef MLA_CLIENT_WAIT_FOR_SERVER_H_
#define MLA_CLIENT_WAIT_FOR_SERVER_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mla {

struct WaitOptions {
  absl::Duration budget = absl::Minutes(10);  // Zero: one try.
  absl::Duration poll = absl::Milliseconds(500);
  absl::Duration note_every = absl::Seconds(10);
  // Told the last status and the time waited so far, every note_every while waiting.
  std::function<void(const absl::Status&, absl::Duration)> note;
};

// Calls `probe` until it returns anything but UNAVAILABLE or the budget is spent, and
// returns its last status. A budget-exhausted UNAVAILABLE says how long it waited.
absl::Status RetryWhileUnavailable(const std::function<absl::Status()>& probe,
                                   const WaitOptions& options);

// The note most command-line clients want: "<who>: waiting for the server (<status>), Ns".
std::function<void(const absl::Status&, absl::Duration)> StderrWaitNote(std::string who);

}  // namespace mla

#endif  // MLA_CLIENT_WAIT_FOR_SERVER_H_
