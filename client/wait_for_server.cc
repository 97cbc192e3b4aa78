#include "client/wait_for_server.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mla {

absl::Status RetryWhileUnavailable(const std::function<absl::Status()>& probe,
                                   const WaitOptions& options) {
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + options.budget;
  absl::Time next_note = start + options.note_every;
  while (true) {
    absl::Status s = probe();
    if (!absl::IsUnavailable(s)) return s;
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      if (options.budget <= absl::ZeroDuration()) return s;
      return absl::UnavailableError(absl::StrCat(s.message(), " (still unavailable after ",
                                                 absl::FormatDuration(now - start), ")"));
    }
    if (options.note && now >= next_note) {
      options.note(s, now - start);
      next_note = now + options.note_every;
    }
    absl::SleepFor(std::min(options.poll, deadline - now));
  }
}

std::function<void(const absl::Status&, absl::Duration)> StderrWaitNote(std::string who) {
  return [who = std::move(who)](const absl::Status& s, absl::Duration waited) {
    std::fprintf(stderr, "%s: waiting for the server (%s), %.0f s\n", who.c_str(),
                 std::string(s.message()).c_str(), absl::ToDoubleSeconds(waited));
  };
}

}  // namespace mla
