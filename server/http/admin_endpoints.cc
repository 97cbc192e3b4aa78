#include "server/http/admin_endpoints.h"

#include <utility>

namespace mla::http {

std::map<std::string, HttpHandler> AdminHandlers(const metrics::MetricsRegistry* registry,
                                                 const metrics::MetricsEncoder* encoder,
                                                 std::function<bool()> ready) {
  std::map<std::string, HttpHandler> handlers;
  handlers["/metrics"] = [registry, encoder] {
    return HttpResponse{200, encoder->content_type(), encoder->Encode(registry->Collect()), {}};
  };
  handlers["/healthz"] = [] { return HttpResponse{200, "text/plain; charset=utf-8", "ok\n", {}}; };
  handlers["/readyz"] = [ready = std::move(ready)] {
    return ready() ? HttpResponse{200, "text/plain; charset=utf-8", "ready\n", {}}
                   : HttpResponse{503, "text/plain; charset=utf-8", "not ready\n", {}};
  };
  return handlers;
}

}  // namespace mla::http
