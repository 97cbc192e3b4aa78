// Counters, gauges, histograms and families: values, bucket placement on and around the
// bounds, exact totals under concurrent recording, and the registry's refusals.
#include "server/metrics/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace mla::metrics {
namespace {

std::vector<uint64_t> Buckets(const Histogram& h) { return h.Snapshot().bucket_counts; }

TEST(CounterTest, AddsPositiveAmountsOnly) {
  Counter c(Counter::Config{});
  c.Increment();
  c.Increment(2.5);
  c.Increment(-7);  // A counter never goes down.
  c.Increment(0);
  EXPECT_DOUBLE_EQ(c.value(), 3.5);
}

TEST(GaugeTest, SetsAndAdds) {
  Gauge g(Gauge::Config{});
  g.Set(10);
  g.Add(-2.5);
  EXPECT_DOUBLE_EQ(g.value(), 7.5);
}

TEST(HistogramTest, ValueExactlyOnABoundGoesIntoThatBucket) {
  Histogram h(Histogram::Config{{1.0, 2.0, 5.0}});
  h.Observe(1.0);
  h.Observe(2.0);
  h.Observe(5.0);
  EXPECT_EQ(Buckets(h), (std::vector<uint64_t>{1, 1, 1, 0}));
}

TEST(HistogramTest, ValuesJustAboveABoundGoIntoTheNextBucket) {
  Histogram h(Histogram::Config{{1.0, 2.0, 5.0}});
  h.Observe(std::nextafter(1.0, 2.0));
  h.Observe(std::nextafter(5.0, 6.0));
  h.Observe(1e300);
  h.Observe(std::numeric_limits<double>::infinity());
  EXPECT_EQ(Buckets(h), (std::vector<uint64_t>{0, 1, 0, 3}));
}

TEST(HistogramTest, BelowTheFirstBoundAndNegativeGoIntoTheFirstBucket) {
  Histogram h(Histogram::Config{{0.001, 0.01}});
  h.Observe(0.0);
  h.Observe(-3.0);
  h.Observe(0.0005);
  EXPECT_EQ(Buckets(h), (std::vector<uint64_t>{3, 0, 0}));
  EXPECT_DOUBLE_EQ(h.Snapshot().sum, -2.9995);
}

TEST(HistogramTest, NanIsDroppedAndSumAndCountAreKept) {
  Histogram h(Histogram::Config{{1.0}});
  h.Observe(0.25);
  h.Observe(std::nan(""));
  h.Observe(3.0);
  const HistogramValue v = h.Snapshot();
  EXPECT_EQ(v.count(), 2u);
  EXPECT_DOUBLE_EQ(v.sum, 3.25);
  EXPECT_EQ(v.upper_bounds, std::vector<double>{1.0});
}

TEST(FamilyTest, SameLabelValuesGiveTheSameSeriesAndCollectIsSorted) {
  MetricsRegistry registry;
  Family<Counter>& f = registry.AddCounter("x_total", "help", {"a", "b"});
  Counter& one = f.WithLabels({"z", "1"});
  EXPECT_EQ(&one, &f.WithLabels({"z", "1"}));
  one.Increment(3);
  f.WithLabels({"m", "2"}).Increment();
  std::vector<MetricFamily> families = registry.Collect();
  ASSERT_EQ(families.size(), 1u);
  ASSERT_EQ(families[0].points.size(), 2u);
  EXPECT_EQ(families[0].points[0].labels[0].value, "m");
  EXPECT_EQ(families[0].points[0].labels[1].name, "b");
  EXPECT_EQ(families[0].points[1].labels[0].value, "z");
  EXPECT_DOUBLE_EQ(families[0].points[1].value, 3);
  EXPECT_EQ(families[0].type, MetricType::kCounter);
}

TEST(RegistryTest, CollectsFamiliesAndCollectablesInOrder) {
  class Fixed : public Collectable {
   public:
    void Collect(std::vector<MetricFamily>& out) const override {
      out.push_back({"fixed", "h", MetricType::kGauge, {}});
    }
  } fixed;
  MetricsRegistry registry;
  registry.AddGauge("first", "h");
  registry.AddCollectable(&fixed);
  registry.AddHistogram("last", "h", {1, 2});
  std::vector<MetricFamily> families = registry.Collect();
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0].name, "first");
  EXPECT_EQ(families[0].points.size(), 0u);  // No series until one is asked for.
  EXPECT_EQ(families[1].name, "fixed");
  EXPECT_EQ(families[2].name, "last");
}

TEST(NamesTest, MetricAndLabelNames) {
  EXPECT_TRUE(IsValidMetricName("mla_requests_total"));
  EXPECT_TRUE(IsValidMetricName("vllm:num_requests_running"));
  EXPECT_TRUE(IsValidMetricName("_x9"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("9x"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName("a b"));
  EXPECT_TRUE(IsValidLabelName("finished_reason"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("0a"));
}

TEST(RegistryDeathTest, RefusesProgrammerErrors) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry r;
  r.AddGauge("taken", "h");
  EXPECT_DEATH(r.AddGauge("taken", "h"), "registered twice");
  EXPECT_DEATH(r.AddCounter("requests", "h"), "must end in _total");
  EXPECT_DEATH(r.AddGauge("bad-name", "h"), "invalid metric name");
  EXPECT_DEATH(r.AddGauge("g", "h", {"bad-label"}), "invalid label name");
  EXPECT_DEATH(r.AddHistogram("h1", "h", {2, 1}), "strictly increasing");
  EXPECT_DEATH(r.AddHistogram("h2", "h", {1, 1}), "strictly increasing");
  EXPECT_DEATH(r.AddHistogram("h3", "h", {}), "needs bucket bounds");
  EXPECT_DEATH(r.AddHistogram("h4", "h", {1}, {"le"}), "invalid label name");
  Family<Gauge>& g = r.AddGauge("labelled", "h", {"a"});
  EXPECT_DEATH(g.WithLabels({"x", "y"}), "expected 1 label values, got 2");
}

// N threads record into the same series (and create labelled series) while another thread
// scrapes: the totals are exact and every snapshot is internally consistent.
TEST(ConcurrencyTest, ExactTotalsUnderContention) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  MetricsRegistry registry;
  Counter& counter = registry.AddCounter("c_total", "h").Get();
  Gauge& gauge = registry.AddGauge("g", "h").Get();
  Histogram& histogram = registry.AddHistogram("h", "h", {0.5, 1.5}).Get();
  Family<Counter>& labelled = registry.AddCounter("l_total", "h", {"k"});
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    uint64_t last = 0;
    while (!done.load()) {
      const HistogramValue v = histogram.Snapshot();
      EXPECT_GE(v.count(), last);
      last = v.count();
      (void)registry.Collect();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.Increment();
        gauge.Add(1);
        histogram.Observe(i % 2);  // 0 into le=0.5, 1 into le=1.5.
        labelled.WithLabels({std::to_string(i % 4)}).Increment(2);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  scraper.join();
  constexpr double kTotal = double{kThreads} * kPerThread;
  EXPECT_EQ(counter.value(), kTotal);
  EXPECT_EQ(gauge.value(), kTotal);
  const HistogramValue v = histogram.Snapshot();
  EXPECT_EQ(v.bucket_counts,
            (std::vector<uint64_t>{kThreads * kPerThread / 2, kThreads * kPerThread / 2, 0}));
  EXPECT_EQ(v.sum, kTotal / 2);
  double labelled_total = 0;
  for (int k = 0; k < 4; ++k) labelled_total += labelled.WithLabels({std::to_string(k)}).value();
  EXPECT_EQ(labelled_total, 2 * kTotal);
}

}  // namespace
}  // namespace mla::metrics
