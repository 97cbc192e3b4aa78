// absl::Status <-> grpc::Status. The code numbering is the same by design of both.
#ifndef MLA_SERVER_STATUS_CONVERT_H_
#define MLA_SERVER_STATUS_CONVERT_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace mla {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Tells the client when to retry a refused call, as trailing metadata: "retry-after-ms"
// for any client, and "grpc-retry-pushback-ms", which gRPC clients' retry policies read.
// Call before the call finishes.
inline void AddRetryHint(grpc::ServerContextBase* ctx, int ms) {
  ctx->AddTrailingMetadata("retry-after-ms", std::to_string(ms));
  ctx->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(ms));
}

}  // namespace mla

#endif  // MLA_SERVER_STATUS_CONVERT_H_
