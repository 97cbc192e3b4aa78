// Counts every finished gRPC call by service, method and status code through a server
// interceptor, so that the service's reactors need no metrics code: the status is read at
// PRE_SEND_STATUS, before it reaches the client.
#ifndef MLA_SERVER_METRICS_RPC_METRICS_INTERCEPTOR_H_
#define MLA_SERVER_METRICS_RPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

#include "server/metrics/serving_metrics.h"

namespace mla::metrics {

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the gRPC server.
  explicit RpcMetricsInterceptorFactory(ServingMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServingMetrics* metrics_;
};

// For ServerBuilder::experimental().SetInterceptorCreators.
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcMetricsInterceptors(ServingMetrics* metrics);

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_RPC_METRICS_INTERCEPTOR_H_
