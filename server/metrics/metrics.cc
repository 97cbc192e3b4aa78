#include "server/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/log.h"

namespace mla::metrics {
namespace {

bool IsNameStart(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
}

bool IsValidName(absl::string_view name, bool allow_colon) {
  if (name.empty() || !IsNameStart(name[0], allow_colon)) return false;
  for (char c : name) {
    if (!IsNameStart(c, allow_colon) && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

[[noreturn]] void Die(absl::string_view message) {
  LogError("metrics: ", message);
  std::abort();
}

}  // namespace

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

uint64_t HistogramValue::count() const {
  uint64_t total = 0;
  for (uint64_t c : bucket_counts) total += c;
  return total;
}

bool IsValidMetricName(absl::string_view name) { return IsValidName(name, true); }

bool IsValidLabelName(absl::string_view name) {
  return IsValidName(name, false) && !absl::StartsWith(name, "__");
}

void DieOnLabelCount(absl::string_view family, size_t expected, size_t got) {
  Die(absl::StrCat(family, ": expected ", expected, " label values, got ", got));
}

Histogram::Histogram(const Config& config)
    : bounds_(config.upper_bounds),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // First bound >= v: a value exactly on a bound belongs to that bound's bucket.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

HistogramValue Histogram::Snapshot() const {
  HistogramValue h;
  h.upper_bounds = bounds_;
  h.bucket_counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    h.bucket_counts[i] = counts_[i].load(std::memory_order_relaxed);
  }
  h.sum = sum_.load(std::memory_order_relaxed);
  return h;
}

void MetricsRegistry::CheckNew(const std::string& name, MetricType type,
                               const std::vector<std::string>& label_names) {
  if (!IsValidMetricName(name)) Die(absl::StrCat("invalid metric name '", name, "'"));
  if (type == MetricType::kCounter && !absl::EndsWith(name, "_total")) {
    Die(absl::StrCat("counter '", name, "' must end in _total"));
  }
  if (std::find(names_.begin(), names_.end(), name) != names_.end()) {
    Die(absl::StrCat("metric '", name, "' registered twice"));
  }
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label) || (type == MetricType::kHistogram && label == "le")) {
      Die(absl::StrCat(name, ": invalid label name '", label, "'"));
    }
  }
  names_.push_back(name);
}

template <typename Metric>
Family<Metric>& MetricsRegistry::Add(std::string name, std::string help,
                                     std::vector<std::string> label_names,
                                     typename Metric::Config config) {
  absl::MutexLock lock(&mu_);
  CheckNew(name, Metric::kType, label_names);
  auto family = std::make_unique<Family<Metric>>(std::move(name), std::move(help),
                                                 std::move(label_names), std::move(config));
  Family<Metric>& ref = *family;
  collectables_.push_back(family.get());
  owned_.push_back(std::move(family));
  return ref;
}

Family<Counter>& MetricsRegistry::AddCounter(std::string name, std::string help,
                                             std::vector<std::string> label_names) {
  return Add<Counter>(std::move(name), std::move(help), std::move(label_names), {});
}

Family<Gauge>& MetricsRegistry::AddGauge(std::string name, std::string help,
                                         std::vector<std::string> label_names) {
  return Add<Gauge>(std::move(name), std::move(help), std::move(label_names), {});
}

Family<Histogram>& MetricsRegistry::AddHistogram(std::string name, std::string help,
                                                 std::vector<double> upper_bounds,
                                                 std::vector<std::string> label_names) {
  if (upper_bounds.empty()) Die(absl::StrCat(name, ": a histogram needs bucket bounds"));
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && upper_bounds[i] <= upper_bounds[i - 1])) {
      Die(absl::StrCat(name, ": bucket bounds must be finite and strictly increasing: ",
                       absl::StrJoin(upper_bounds, ", ")));
    }
  }
  return Add<Histogram>(std::move(name), std::move(help), std::move(label_names),
                        Histogram::Config{std::move(upper_bounds)});
}

void MetricsRegistry::AddCollectable(const Collectable* collectable) {
  absl::MutexLock lock(&mu_);
  collectables_.push_back(collectable);
}

std::vector<MetricFamily> MetricsRegistry::Collect() const {
  std::vector<const Collectable*> collectables;
  {
    absl::MutexLock lock(&mu_);
    collectables = collectables_;
  }
  std::vector<MetricFamily> families;
  for (const Collectable* c : collectables) c->Collect(families);
  return families;
}

}  // namespace mla::metrics
