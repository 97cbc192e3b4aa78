#include "client/recall/heatmap.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mla::recall {
namespace {

constexpr int kCellW = 44;
constexpr int kCellH = 24;
constexpr int kLeft = 70;    // Room for the depth labels and the y axis title.
constexpr int kTop = 60;     // Title and panel titles.
constexpr int kBottom = 50;  // Length labels and the x axis title.
constexpr int kPanelGap = 30;
constexpr int kLegendW = 90;

struct Rgb {
  double r, g, b;
};
constexpr Rgb kRed{0xf8, 0x69, 0x6b};
constexpr Rgb kYellow{0xff, 0xeb, 0x84};
constexpr Rgb kGreen{0x63, 0xbe, 0x7b};

// What a heatmap colors its cells by.
struct Metric {
  const char* legend;  // Above the color bar.
  const char* title;   // Before the model name.
  // The cell's value in [0, 1]; absent: no data.
  std::optional<double> (*value)(const CellSummary&);
};

constexpr Metric kExactMatch{
    "exact match", "Needle-in-a-haystack recall: ", [](const CellSummary& c) {
      return c.n > 0 ? std::optional<double>(c.exact_match_rate) : std::nullopt;
    }};
constexpr Metric kIndexerRecall{"indexer recall", "Indexer selection recall (needle tokens kept): ",
                                [](const CellSummary& c) { return c.mean_indexer_recall; }};

Rgb Lerp(const Rgb& a, const Rgb& b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

std::string Escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string Text(double x, double y, const std::string& s, const std::string& extra = "") {
  return absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\"%s>%s</text>\n", x, y, extra, Escape(s));
}

struct Grid {
  std::set<int> lengths;    // Columns.
  std::set<double> depths;  // Rows.
  std::map<std::pair<int, double>, const CellSummary*> at;
};

Grid MakeGrid(const std::vector<const CellSummary*>& cells) {
  Grid g;
  for (const CellSummary* c : cells) {
    g.lengths.insert(c->length);
    g.depths.insert(c->depth);
    g.at[{c->length, c->depth}] = c;
  }
  return g;
}

std::string Cell(int x, int y, int length, double depth, const CellSummary* c, const Metric& m) {
  const std::optional<double> value = c != nullptr ? m.value(*c) : std::nullopt;
  const bool data = value.has_value();
  const double rate = data ? *value : -1;
  std::string svg = absl::StrFormat(
      "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" "
      "data-rate=\"%.4f\"><title>%s tokens, depth %.0f%%: %s</title></rect>\n",
      x, y, kCellW, kCellH, data ? RateColor(rate) : kNoDataColor, rate, FormatLength(length),
      depth * 100, data ? absl::StrFormat("%.0f%% of %d", rate * 100, c->n) : "no data");
  if (data) {
    absl::StrAppend(
        &svg, Text(x + kCellW / 2.0, y + kCellH / 2.0 + 4, absl::StrFormat("%.0f", rate * 100),
                   " text-anchor=\"middle\" font-size=\"10\""));
  }
  return svg;
}

// Depth labels, length labels and axis titles around a grid whose left edge is x0.
std::string Axes(const Grid& g, int x0) {
  std::string svg;
  int row = 0;
  for (const double depth : g.depths) {
    absl::StrAppend(&svg, Text(x0 + kLeft - 6, kTop + row++ * kCellH + kCellH / 2.0 + 4,
                               absl::StrFormat("%.0f%%", depth * 100),
                               " text-anchor=\"end\" font-size=\"11\""));
  }
  const int bottom = kTop + static_cast<int>(g.depths.size()) * kCellH;
  int col = 0;
  for (const int length : g.lengths) {
    absl::StrAppend(&svg, Text(x0 + kLeft + col++ * kCellW + kCellW / 2.0, bottom + 16,
                               FormatLength(length), " text-anchor=\"middle\" font-size=\"11\""));
  }
  const double mid_x = x0 + kLeft + g.lengths.size() * kCellW / 2.0;
  absl::StrAppend(&svg, Text(mid_x, bottom + 38, "Context length (tokens)",
                             " text-anchor=\"middle\" font-size=\"12\""));
  const double mid_y = kTop + g.depths.size() * kCellH / 2.0;
  absl::StrAppend(&svg, Text(x0 + 16, mid_y, "Needle depth",
                             absl::StrFormat(" text-anchor=\"middle\" font-size=\"12\" "
                                             "transform=\"rotate(-90 %d %.1f)\"",
                                             x0 + 16, mid_y)));
  return svg;
}

// One panel (one needle kind) with its top-left corner at (x0, kTop).
std::string Panel(NeedleKind kind, const std::vector<const CellSummary*>& cells, int x0,
                  const Metric& m, int* width) {
  const Grid g = MakeGrid(cells);
  std::string svg = Text(x0 + kLeft + g.lengths.size() * kCellW / 2.0, kTop - 10,
                         NeedleKindName(kind), " text-anchor=\"middle\" font-weight=\"bold\"");
  int col = 0;
  for (const int length : g.lengths) {
    int row = 0;
    for (const double depth : g.depths) {
      const auto it = g.at.find({length, depth});
      absl::StrAppend(&svg, Cell(x0 + kLeft + col * kCellW, kTop + row++ * kCellH, length, depth,
                                 it == g.at.end() ? nullptr : it->second, m));
    }
    ++col;
  }
  absl::StrAppend(&svg, Axes(g, x0));
  *width = kLeft + static_cast<int>(g.lengths.size()) * kCellW;
  return svg;
}

// A vertical color bar from 100% (top) to 0% (bottom), plus the no-data swatch.
std::string Legend(int x, int height, const Metric& m) {
  std::string svg =
      "<defs><linearGradient id=\"rate\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
      "<stop offset=\"0\" stop-color=\"" +
      RateColor(0) +
      "\"/>"
      "<stop offset=\"0.5\" stop-color=\"" +
      RateColor(0.5) +
      "\"/>"
      "<stop offset=\"1\" stop-color=\"" +
      RateColor(1) + "\"/></linearGradient></defs>\n";
  const int bar_h = std::max(height, 100);
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%d\" y=\"%d\" width=\"16\" height=\"%d\" "
                        "fill=\"url(#rate)\" stroke=\"#666\"/>\n",
                        x, kTop, bar_h);
  absl::StrAppend(&svg, Text(x + 22, kTop + 10, "100%", " font-size=\"11\""),
                  Text(x + 22, kTop + bar_h / 2.0 + 4, "50%", " font-size=\"11\""),
                  Text(x + 22, kTop + bar_h, "0%", " font-size=\"11\""),
                  Text(x - 4, kTop - 10, m.legend, " font-size=\"11\""));
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%d\" y=\"%d\" width=\"16\" height=\"12\" fill=\"%s\" "
                        "stroke=\"#666\"/>\n",
                        x, kTop + bar_h + 14, kNoDataColor);
  absl::StrAppend(&svg, Text(x + 22, kTop + bar_h + 24, "no data", " font-size=\"11\""));
  return svg;
}

}  // namespace

std::string RateColor(double rate) {
  const double t = std::clamp(rate, 0.0, 1.0);
  const Rgb c = t < 0.5 ? Lerp(kRed, kYellow, t * 2) : Lerp(kYellow, kGreen, (t - 0.5) * 2);
  return absl::StrFormat("#%02x%02x%02x", static_cast<int>(std::lround(c.r)),
                         static_cast<int>(std::lround(c.g)), static_cast<int>(std::lround(c.b)));
}

std::string FormatLength(int length) {
  if (length >= 1024 && length % 1024 == 0) return absl::StrCat(length / 1024, "K");
  return absl::StrCat(length);
}

namespace {

std::string Render(const std::vector<CellSummary>& cells, const std::string& model,
                   const Metric& m) {
  std::map<NeedleKind, std::vector<const CellSummary*>> by_kind;
  std::set<double> all_depths;
  for (const CellSummary& c : cells) {
    by_kind[c.kind].push_back(&c);
    all_depths.insert(c.depth);
  }
  std::string body;
  int x = 0;
  for (const auto& [kind, kind_cells] : by_kind) {
    int width = 0;
    absl::StrAppend(&body, Panel(kind, kind_cells, x, m, &width));
    x += width + kPanelGap;
  }
  const int grid_h = static_cast<int>(all_depths.size()) * kCellH;
  absl::StrAppend(&body, Legend(x + 10, grid_h, m));
  const int width = x + 10 + kLegendW;
  const int height = kTop + std::max(grid_h, 100) + kBottom;
  const std::string title = absl::StrCat(m.title, model);
  return absl::StrCat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
      absl::StrFormat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
                      width, height, width, height),
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      Text(width / 2.0, 22, title, " text-anchor=\"middle\" font-size=\"15\""), body, "</svg>\n");
}

}  // namespace

std::string RenderHeatmap(const std::vector<CellSummary>& cells, const std::string& model) {
  return Render(cells, model, kExactMatch);
}

std::string RenderIndexerRecallHeatmap(const std::vector<CellSummary>& cells,
                                       const std::string& model) {
  return Render(cells, model, kIndexerRecall);
}

}  // namespace mla::recall
