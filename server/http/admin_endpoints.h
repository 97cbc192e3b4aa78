// The operational HTTP endpoints of mla-server:
//   /metrics  the registry's families through the encoder (Prometheus text format 0.0.4)
//   /healthz  200 "ok" whenever the process answers (liveness)
//   /readyz   200 "ready" when `ready()` says so (model loaded, not draining), else 503
#ifndef MLA_SERVER_HTTP_ADMIN_ENDPOINTS_H_
#define MLA_SERVER_HTTP_ADMIN_ENDPOINTS_H_

#include <functional>
#include <map>
#include <string>

#include "server/http/http_server.h"
#include "server/metrics/metric_family.h"
#include "server/metrics/metrics.h"

namespace mla::http {

// `registry`, `encoder` and `ready` must outlive the server that serves the handlers.
std::map<std::string, HttpHandler> AdminHandlers(const metrics::MetricsRegistry* registry,
                                                 const metrics::MetricsEncoder* encoder,
                                                 std::function<bool()> ready);

}  // namespace mla::http

#endif  // MLA_SERVER_HTTP_ADMIN_ENDPOINTS_H_
