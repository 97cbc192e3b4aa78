#include "tests/integration/client_waits.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace mla::testing {

bool WaitUntilServing(MlaClient& client, ServerProcess& server, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  do {
    auto health = client.Health();
    if (health.ok() && *health == grpc::health::v1::HealthCheckResponse::SERVING) return true;
    if (server.Exited()) return false;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  return false;
}

absl::StatusOr<v1::Load> WaitUntilIdle(MlaClient& client, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<v1::Load> load;
  do {
    load = client.GetLoad();
    if (load.ok() && load->num_requests_running() == 0 && load->num_requests_waiting() == 0 &&
        load->kv_blocks_used() == 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < deadline);
  return load;
}

absl::Status IdleWithin(MlaClient& client, absl::Duration timeout) {
  absl::StatusOr<v1::Load> load = WaitUntilIdle(client, timeout);
  if (!load.ok()) return load.status();
  if (load->num_requests_running() + load->num_requests_waiting() + load->kv_blocks_used() == 0) {
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(absl::StrCat("not idle: ", load->ShortDebugString()));
}

}  // namespace mla::testing
