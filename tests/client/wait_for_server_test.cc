#include "client/wait_for_server.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace mla {
namespace {

WaitOptions Fast(absl::Duration budget) {
  WaitOptions w;
  w.budget = budget;
  w.poll = absl::Milliseconds(1);
  w.note_every = absl::Milliseconds(5);
  return w;
}

// A probe that always answers `status`, counting its calls.
std::function<absl::Status()> Always(absl::Status status, int* calls) {
  return [status = std::move(status), calls] {
    ++*calls;
    return status;
  };
}

TEST(RetryWhileUnavailable, RetriesUntilTheServerAnswers) {
  int calls = 0;
  const absl::Status s = RetryWhileUnavailable(
      [&] {
        return ++calls < 4 ? absl::UnavailableError("the model is still loading")
                           : absl::OkStatus();
      },
      Fast(absl::Seconds(30)));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 4);
}

TEST(RetryWhileUnavailable, OtherErrorsReturnAtOnce) {
  int calls = 0;
  const absl::Status s = RetryWhileUnavailable(
      Always(absl::UnauthenticatedError("missing bearer token"), &calls), Fast(absl::Seconds(30)));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(s.message(), "missing bearer token");
  EXPECT_EQ(calls, 1);
}

TEST(RetryWhileUnavailable, GivesUpAfterTheBudgetAndSaysSo) {
  int calls = 0;
  std::vector<std::string> notes;
  WaitOptions w = Fast(absl::Milliseconds(60));
  w.note = [&](const absl::Status& s, absl::Duration) { notes.emplace_back(s.message()); };
  const absl::Time start = absl::Now();
  const absl::Status s =
      RetryWhileUnavailable(Always(absl::UnavailableError("connection refused"), &calls), w);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(60));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("connection refused (still unavailable after"), std::string::npos)
      << s;
  EXPECT_GT(calls, 1);
  ASSERT_FALSE(notes.empty());
  EXPECT_EQ(notes.front(), "connection refused");
}

TEST(RetryWhileUnavailable, ZeroBudgetTriesOnce) {
  int calls = 0;
  const absl::Status s =
      RetryWhileUnavailable(Always(absl::UnavailableError("the model is still loading"), &calls),
                            Fast(absl::ZeroDuration()));
  EXPECT_EQ(s, absl::UnavailableError("the model is still loading"));
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace mla
