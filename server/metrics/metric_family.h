// The format-neutral data model of a metrics scrape, and the two small interfaces around
// it: a Collectable produces families at scrape time, a MetricsEncoder turns them into
// bytes. The instrumentation (Counter, Gauge, Histogram in metrics.h) never sees the wire
// format, so another exporter (OpenMetrics, OTLP, prometheus-cpp) can replace the text
// encoder without touching the code that counts.
#ifndef MLA_SERVER_METRICS_METRIC_FAMILY_H_
#define MLA_SERVER_METRICS_METRIC_FAMILY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace mla::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge" or "histogram" (the TYPE line's words).
const char* MetricTypeName(MetricType type);

struct Label {
  std::string name;
  std::string value;
};
using Labels = std::vector<Label>;

struct HistogramValue {
  std::vector<double> upper_bounds;     // Finite and increasing; +Inf is implied.
  std::vector<uint64_t> bucket_counts;  // Per bucket, NOT cumulative; size bounds + 1
                                        // (the last one counts values above every bound).
  double sum = 0.0;

  uint64_t count() const;
};

// One series: its labels and its value (counter, gauge) or histogram.
struct MetricPoint {
  Labels labels;
  double value = 0.0;
  HistogramValue histogram;
};

struct MetricFamily {
  std::string name;  // Counters end in "_total".
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<MetricPoint> points;  // May be empty: the family is still described.
};

// Anything that contributes families to a scrape. Collect runs on the scraping thread.
class Collectable {
 public:
  virtual ~Collectable() = default;
  virtual void Collect(std::vector<MetricFamily>& out) const = 0;
};

// Serializes a scrape (for example the Prometheus text format, text_exposition.h).
class MetricsEncoder {
 public:
  virtual ~MetricsEncoder() = default;
  virtual std::string content_type() const = 0;
  virtual std::string Encode(const std::vector<MetricFamily>& families) const = 0;
};

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_METRIC_FAMILY_H_
