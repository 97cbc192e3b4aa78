// Polls the integration tests share: a server that has just started, or requests that
// have just ended, settle a moment later.
#ifndef MLA_TESTS_INTEGRATION_CLIENT_WAITS_H_
#define MLA_TESTS_INTEGRATION_CLIENT_WAITS_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/mla_client.h"
#include "tests/integration/server_process.h"

namespace mla::testing {

// Polls Health until SERVING (the model is loaded); false when `timeout` passes first, or
// at once when `server` exits instead (a model that failed to load: its log says why).
bool WaitUntilServing(MlaClient& client, ServerProcess& server,
                      absl::Duration timeout = absl::Seconds(30));

// Polls GetLoad until nothing runs or waits and no block is held by a request (blocks
// that only keep a cached prefix are free); returns the last load read, idle or not.
absl::StatusOr<v1::Load> WaitUntilIdle(MlaClient& client,
                                       absl::Duration timeout = absl::Seconds(10));

// WaitUntilIdle as a status: OK once idle; otherwise the last load read (or the error).
absl::Status IdleWithin(MlaClient& client, absl::Duration timeout = absl::Seconds(10));

}  // namespace mla::testing

#endif  // MLA_TESTS_INTEGRATION_CLIENT_WAITS_H_
