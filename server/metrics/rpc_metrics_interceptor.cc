#include "server/metrics/rpc_metrics_interceptor.h"

#include <string>

#include "absl/strings/string_view.h"

namespace mla::metrics {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  // `full_method` is "/package.Service/Method".
  RpcMetricsInterceptor(ServingMetrics* metrics, absl::string_view full_method)
      : metrics_(metrics) {
    absl::string_view m = full_method;
    if (!m.empty() && m.front() == '/') m.remove_prefix(1);
    const size_t slash = m.find('/');
    service_ = std::string(slash == absl::string_view::npos ? "" : m.substr(0, slash));
    method_ = std::string(slash == absl::string_view::npos ? m : m.substr(slash + 1));
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->RecordRpc(service_, method_,
                          static_cast<absl::StatusCode>(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  ServingMetrics* metrics_;
  std::string service_;
  std::string method_;
};

}  // namespace

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(metrics_, info->method() ? info->method() : "");
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcMetricsInterceptors(ServingMetrics* metrics) {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> v;
  v.push_back(std::make_unique<RpcMetricsInterceptorFactory>(metrics));
  return v;
}

}  // namespace mla::metrics
