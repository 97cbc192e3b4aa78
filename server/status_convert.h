// Server-side status helpers: the conversions (common/grpc_status.h) and retry hints.
#ifndef MLA_SERVER_STATUS_CONVERT_H_
#define MLA_SERVER_STATUS_CONVERT_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"
#include "common/grpc_status.h"

namespace mla {

// Tells the client when to retry a refused call, as trailing metadata: "retry-after-ms"
// for any client, and "grpc-retry-pushback-ms", which gRPC clients' retry policies read.
// Call before the call finishes.
inline void AddRetryHint(grpc::ServerContextBase* ctx, int ms) {
  ctx->AddTrailingMetadata("retry-after-ms", std::to_string(ms));
  ctx->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(ms));
}

}  // namespace mla

#endif  // MLA_SERVER_STATUS_CONVERT_H_
