// Counters, gauges and histograms with labels, and the registry that owns them.
//
// Cost model: a metric object (one series) is a few atomics. Recording (Increment, Set,
// Observe) is lock-free and never allocates, so it is safe on the engine loop thread per
// token. Finding a series by label values (Family::WithLabels) takes the family's own
// mutex: resolve the series once and keep the reference where the path is hot. Series
// live as long as the registry; references to them stay valid.
//
// Programmer errors (an invalid or duplicate metric name, a wrong number of label
// values, unsorted histogram bounds) abort with a message naming the metric: they are
// found by the first test that creates the metric, never by an operator.
#ifndef MLA_SERVER_METRICS_METRICS_H_
#define MLA_SERVER_METRICS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/metrics/metric_family.h"

namespace mla::metrics {

// Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]* for metrics, [a-zA-Z_][a-zA-Z0-9_]* for
// labels (and not starting with "__", which Prometheus reserves).
bool IsValidMetricName(absl::string_view name);
bool IsValidLabelName(absl::string_view name);

// A monotonically increasing value (requests, tokens). Negative increments are ignored.
class Counter {
 public:
  struct Config {};
  static constexpr MetricType kType = MetricType::kCounter;
  explicit Counter(const Config&) {}

  void Increment(double amount = 1.0) {
    if (amount > 0) value_.fetch_add(amount, std::memory_order_relaxed);
  }
  double value() const { return value_.load(std::memory_order_relaxed); }
  void Fill(MetricPoint& point) const { point.value = value(); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  struct Config {};
  static constexpr MetricType kType = MetricType::kGauge;
  explicit Gauge(const Config&) {}

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }
  void Fill(MetricPoint& point) const { point.value = value(); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations in buckets with explicit upper bounds: a value v lands in the first
// bucket whose bound b satisfies v <= b (Prometheus' "le"), or in the implicit +Inf
// bucket. NaN observations are dropped (they would poison the sum forever).
class Histogram {
 public:
  struct Config {
    std::vector<double> upper_bounds;  // Finite, strictly increasing, non-empty.
  };
  static constexpr MetricType kType = MetricType::kHistogram;
  explicit Histogram(const Config& config);

  void Observe(double v);
  HistogramValue Snapshot() const;
  void Fill(MetricPoint& point) const { point.histogram = Snapshot(); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
};

// The series of one metric name, one per combination of label values.
template <typename Metric>
class Family final : public Collectable {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         typename Metric::Config config)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        config_(std::move(config)) {}

  const std::string& name() const { return name_; }

  // The series with these label values (in the order of the family's label names),
  // created on first use.
  Metric& WithLabels(const std::vector<std::string>& values) ABSL_LOCKS_EXCLUDED(mu_);
  // The family's only series when it has no labels.
  Metric& Get() { return WithLabels({}); }

  // Series in lexicographic order of their label values, so that scrapes are stable.
  void Collect(std::vector<MetricFamily>& out) const override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const typename Metric::Config config_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> series_ ABSL_GUARDED_BY(mu_);
};

// Aborts naming the family: a caller passed the wrong number of label values.
[[noreturn]] void DieOnLabelCount(absl::string_view family, size_t expected, size_t got);

template <typename Metric>
Metric& Family<Metric>::WithLabels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    DieOnLabelCount(name_, label_names_.size(), values.size());
  }
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Metric>& slot = series_[values];
  if (!slot) slot = std::make_unique<Metric>(config_);
  return *slot;
}

template <typename Metric>
void Family<Metric>::Collect(std::vector<MetricFamily>& out) const {
  MetricFamily family{name_, help_, Metric::kType, {}};
  absl::MutexLock lock(&mu_);
  family.points.reserve(series_.size());
  for (const auto& [values, metric] : series_) {
    MetricPoint point;
    for (size_t i = 0; i < values.size(); ++i) point.labels.push_back({label_names_[i], values[i]});
    metric->Fill(point);
    family.points.push_back(std::move(point));
  }
  out.push_back(std::move(family));
}

// Owns metric families and lists the collectables that produce families at scrape time.
// Registration happens at start-up; Collect may run concurrently with recording.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<double> upper_bounds,
                                  std::vector<std::string> label_names = {});

  // `collectable` is not owned and must outlive every Collect call.
  void AddCollectable(const Collectable* collectable);

  // Every family, in the order the families and collectables were added.
  std::vector<MetricFamily> Collect() const;

 private:
  template <typename Metric>
  Family<Metric>& Add(std::string name, std::string help, std::vector<std::string> label_names,
                      typename Metric::Config config) ABSL_LOCKS_EXCLUDED(mu_);
  // Aborts on an invalid or duplicate name or label name.
  void CheckNew(const std::string& name, MetricType type,
                const std::vector<std::string>& label_names) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Collectable>> owned_ ABSL_GUARDED_BY(mu_);
  std::vector<const Collectable*> collectables_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_METRICS_H_
