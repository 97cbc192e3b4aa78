// The text exposition format 0.0.4 against golden text: HELP/TYPE lines, label and HELP
// escaping, counters' _total, histograms' cumulative _bucket with +Inf, _sum and _count.
#include "server/metrics/text_exposition.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "server/metrics/metrics.h"
#include "tests/server/metrics/exposition_parser.h"

namespace mla::metrics {
namespace {

TEST(TextExpositionTest, GoldenCountersGaugesHistogramsWithLabelsAndEscaping) {
  MetricsRegistry r;
  Family<Counter>& requests = r.AddCounter(
      "demo_requests_total", "Requests by path.\nSecond line \\ backslash", {"path", "code"});
  requests.WithLabels({"/a\"b\\c\nd", "200"}).Increment(3);
  requests.WithLabels({"/", "500"}).Increment();
  r.AddGauge("demo_temperature", "A gauge").Get().Set(-1.5);
  Family<Histogram>& latency =
      r.AddHistogram("demo_latency_seconds", "Latency", {0.005, 0.1, 1}, {"method"});
  Histogram& get = latency.WithLabels({"GET"});
  get.Observe(0.005);  // On the first bound.
  get.Observe(0.05);
  get.Observe(0.1);  // On the second bound.
  get.Observe(7);    // Above every bound.
  r.AddHistogram("demo_empty_seconds", "No observations", {1}).Get();
  r.AddCounter("demo_unused_total", "Described, no series");

  const std::string golden =
      R"(# HELP demo_requests_total Requests by path.\nSecond line \\ backslash
# TYPE demo_requests_total counter
demo_requests_total{path="/",code="500"} 1
demo_requests_total{path="/a\"b\\c\nd",code="200"} 3
# HELP demo_temperature A gauge
# TYPE demo_temperature gauge
demo_temperature -1.5
# HELP demo_latency_seconds Latency
# TYPE demo_latency_seconds histogram
demo_latency_seconds_bucket{method="GET",le="0.005"} 1
demo_latency_seconds_bucket{method="GET",le="0.1"} 3
demo_latency_seconds_bucket{method="GET",le="1"} 3
demo_latency_seconds_bucket{method="GET",le="+Inf"} 4
demo_latency_seconds_sum{method="GET"} 7.155
demo_latency_seconds_count{method="GET"} 4
# HELP demo_empty_seconds No observations
# TYPE demo_empty_seconds histogram
demo_empty_seconds_bucket{le="1"} 0
demo_empty_seconds_bucket{le="+Inf"} 0
demo_empty_seconds_sum 0
demo_empty_seconds_count 0
# HELP demo_unused_total Described, no series
# TYPE demo_unused_total counter
)";
  TextEncoder encoder;
  EXPECT_EQ(encoder.Encode(r.Collect()), golden);
  EXPECT_EQ(encoder.content_type(), "text/plain; version=0.0.4; charset=utf-8");
}

TEST(TextExpositionTest, FormatsValues) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(-7), "-7");
  EXPECT_EQ(FormatValue(1e15), "1000000000000000");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.001), "0.001");
  EXPECT_EQ(FormatValue(2.5e-7), "2.5e-07");
  EXPECT_EQ(FormatValue(1e300), "1e+300");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  // Shortest round trip: reads back to the same double.
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::stod(FormatValue(third)), third);
}

TEST(TextExpositionTest, Escaping) {
  EXPECT_EQ(EscapeLabelValue(R"(a\b"c)"
                             "\n"),
            R"(a\\b\"c\n)");
  EXPECT_EQ(EscapeHelp("say \"hi\"\\\n"), R"(say "hi"\\\n)");  // Quotes stay in HELP.
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
}

// Histogram bucket lines are cumulative, the +Inf bucket equals _count, and parsing the
// output back gives what was recorded, also when a snapshot races with observations.
TEST(TextExpositionTest, HistogramRoundTrip) {
  MetricsRegistry r;
  Histogram& h = r.AddHistogram("x_seconds", "h", {1, 2, 4}).Get();
  for (double v : {0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 100.0}) h.Observe(v);
  auto parsed = testing::ParseExposition(TextEncoder().Encode(r.Collect()));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->types.at("x_seconds"), "histogram");
  EXPECT_EQ(parsed->samples.at("x_seconds_bucket{le=\"1\"}"), 2);
  EXPECT_EQ(parsed->samples.at("x_seconds_bucket{le=\"2\"}"), 4);
  EXPECT_EQ(parsed->samples.at("x_seconds_bucket{le=\"4\"}"), 6);
  EXPECT_EQ(parsed->samples.at("x_seconds_bucket{le=\"+Inf\"}"), 8);
  EXPECT_EQ(parsed->samples.at("x_seconds_count"), 8);
  EXPECT_DOUBLE_EQ(parsed->samples.at("x_seconds_sum"), 116.5);
}

}  // namespace
}  // namespace mla::metrics
