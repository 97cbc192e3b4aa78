#include "server/metrics/text_exposition.h"

#include <charconv>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace mla::metrics {
namespace {

std::string Escape(absl::string_view text, bool quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (the histogram's le); nothing when empty.
void AppendLabels(const Labels& labels, const char* extra_name, absl::string_view extra_value,
                  std::string& out) {
  if (labels.empty() && extra_name == nullptr) return;
  out += '{';
  bool first = true;
  for (const Label& l : labels) {
    if (!first) out += ',';
    first = false;
    absl::StrAppend(&out, l.name, "=\"", EscapeLabelValue(l.value), "\"");
  }
  if (extra_name != nullptr) {
    if (!first) out += ',';
    absl::StrAppend(&out, extra_name, "=\"", extra_value, "\"");
  }
  out += '}';
}

void AppendSample(absl::string_view name, absl::string_view suffix, const Labels& labels,
                  const char* extra_name, absl::string_view extra_value, double value,
                  std::string& out) {
  absl::StrAppend(&out, name, suffix);
  AppendLabels(labels, extra_name, extra_value, out);
  absl::StrAppend(&out, " ", FormatValue(value), "\n");
}

void AppendHistogram(const MetricFamily& family, const MetricPoint& point, std::string& out) {
  const HistogramValue& h = point.histogram;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.upper_bounds.size(); ++i) {
    cumulative += i < h.bucket_counts.size() ? h.bucket_counts[i] : 0;
    AppendSample(family.name, "_bucket", point.labels, "le", FormatValue(h.upper_bounds[i]),
                 static_cast<double>(cumulative), out);
  }
  const double count = static_cast<double>(h.count());
  AppendSample(family.name, "_bucket", point.labels, "le", "+Inf", count, out);
  AppendSample(family.name, "_sum", point.labels, nullptr, "", h.sum, out);
  AppendSample(family.name, "_count", point.labels, nullptr, "", count, out);
}

}  // namespace

std::string EscapeHelp(absl::string_view help) { return Escape(help, false); }

std::string EscapeLabelValue(absl::string_view value) { return Escape(value, true); }

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  if (value == std::floor(value) && std::fabs(value) < kExactIntegers) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[32];
  const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, r.ptr);
}

std::string TextEncoder::Encode(const std::vector<MetricFamily>& families) const {
  std::string out;
  for (const MetricFamily& family : families) {
    absl::StrAppend(&out, "# HELP ", family.name, " ", EscapeHelp(family.help), "\n");
    absl::StrAppend(&out, "# TYPE ", family.name, " ", MetricTypeName(family.type), "\n");
    for (const MetricPoint& point : family.points) {
      if (family.type == MetricType::kHistogram) {
        AppendHistogram(family, point, out);
      } else {
        AppendSample(family.name, "", point.labels, nullptr, "", point.value, out);
      }
    }
  }
  return out;
}

}  // namespace mla::metrics
