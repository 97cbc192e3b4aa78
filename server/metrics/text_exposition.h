// The Prometheus text exposition format, version 0.0.4:
//
//   # HELP <name> <help, with \ and newline escaped>
//   # TYPE <name> counter|gauge|histogram
//   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
//
// Histograms expand into <name>_bucket{...,le="<bound>"} (cumulative counts, ending with
// le="+Inf", which equals _count), <name>_sum and <name>_count. Values print as integers
// when they are whole (below 2^53) and otherwise in the shortest form that reads back to
// the same double; NaN, +Inf and -Inf as Prometheus spells them.
#ifndef MLA_SERVER_METRICS_TEXT_EXPOSITION_H_
#define MLA_SERVER_METRICS_TEXT_EXPOSITION_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/metrics/metric_family.h"

namespace mla::metrics {

inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

std::string EscapeHelp(absl::string_view help);
std::string EscapeLabelValue(absl::string_view value);
std::string FormatValue(double value);

class TextEncoder final : public MetricsEncoder {
 public:
  std::string content_type() const override { return kTextContentType; }
  std::string Encode(const std::vector<MetricFamily>& families) const override;
};

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_TEXT_EXPOSITION_H_
