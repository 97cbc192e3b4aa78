#include "client/recall/heatmap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <string>
#include <vector>

namespace mla::recall {
namespace {

using ::testing::HasSubstr;

// A minimal XML well-formedness check: tags nest and close in order, attributes are
// quoted. Returns an error message, or "" when the document is well formed.
std::string CheckXml(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0;
  while ((i = xml.find('<', i)) != std::string::npos) {
    const size_t end = xml.find('>', i);
    if (end == std::string::npos) return "unterminated tag";
    const std::string tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '?' || tag[0] == '!') continue;
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) return "unbalanced quotes: " + tag;
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1))
        return "mismatched </" + tag.substr(1) + ">";
      open.pop_back();
      continue;
    }
    if (tag.back() == '/') continue;
    open.push_back(tag.substr(0, tag.find_first_of(" \n")));
  }
  return open.empty() ? "" : "unclosed <" + open.back() + ">";
}

TEST(HeatmapTest, ColorsRunFromRedThroughYellowToGreen) {
  const auto channels = [](const std::string& c) {
    return std::vector<int>{std::stoi(c.substr(1, 2), nullptr, 16),
                            std::stoi(c.substr(3, 2), nullptr, 16),
                            std::stoi(c.substr(5, 2), nullptr, 16)};
  };
  const std::vector<int> red = channels(RateColor(0));
  const std::vector<int> green = channels(RateColor(1));
  EXPECT_GT(red[0], red[1]);      // Red dominates at 0%.
  EXPECT_GT(green[1], green[0]);  // Green dominates at 100%.
  EXPECT_EQ(RateColor(-1), RateColor(0));
  EXPECT_EQ(RateColor(2), RateColor(1));
  // Greener as the rate grows.
  int previous = -256;
  for (double r = 0; r <= 1.0001; r += 0.1) {
    const std::vector<int> c = channels(RateColor(r));
    EXPECT_GE(c[1] - c[0], previous);
    previous = c[1] - c[0];
  }
}

TEST(HeatmapTest, FormatsLengths) {
  EXPECT_EQ(FormatLength(512), "512");
  EXPECT_EQ(FormatLength(4096), "4K");
  EXPECT_EQ(FormatLength(131072), "128K");
  EXPECT_EQ(FormatLength(1500), "1500");
}

TEST(HeatmapTest, RendersOneCellPerLengthDepthAndKind) {
  std::vector<CellSummary> cells;
  std::map<std::string, double> rate_of;  // "kind/length/depth" -> rate.
  for (const NeedleKind kind : {NeedleKind::kPasskey, NeedleKind::kMulti}) {
    for (const int length : {256, 1024, 4096}) {
      for (const double depth : {0.0, 0.5, 1.0}) {
        CellSummary c;
        c.kind = kind;
        c.length = length;
        c.depth = depth;
        c.n = 4;
        c.exact_match_rate = (length == 4096 ? 0.0 : 1.0) * (depth == 0.5 ? 0.5 : 1.0);
        cells.push_back(c);
      }
    }
  }
  cells.back().n = 0;  // No finished trial: drawn gray.
  const std::string svg = RenderHeatmap(cells, "demo-model");
  EXPECT_EQ(CheckXml(svg), "") << svg;
  EXPECT_THAT(svg, HasSubstr("demo-model"));
  EXPECT_THAT(svg, HasSubstr("Context length"));
  EXPECT_THAT(svg, HasSubstr("Needle depth"));
  EXPECT_THAT(svg, HasSubstr(">passkey<"));
  EXPECT_THAT(svg, HasSubstr(">multi<"));
  EXPECT_THAT(svg, HasSubstr(">4K<"));

  const std::regex cell(
      "<rect class=\"cell\"[^>]*fill=\"(#[0-9a-f]{6})\" data-rate=\"([-0-9.]+)\"");
  int count = 0, gray = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), cell); it != std::sregex_iterator();
       ++it) {
    ++count;
    const double rate = std::stod((*it)[2].str());
    if (rate < 0) {
      ++gray;
      EXPECT_EQ((*it)[1].str(), kNoDataColor);
    } else {
      EXPECT_EQ((*it)[1].str(), RateColor(rate));
    }
  }
  EXPECT_EQ(count, 2 * 3 * 3);
  EXPECT_EQ(gray, 1);
  // Rates 1, 0.5 and 0 all appear with their colors.
  EXPECT_THAT(svg, HasSubstr("fill=\"" + RateColor(1) + "\" data-rate=\"1.0000\""));
  EXPECT_THAT(svg, HasSubstr("fill=\"" + RateColor(0.5) + "\" data-rate=\"0.5000\""));
  EXPECT_THAT(svg, HasSubstr("fill=\"" + RateColor(0) + "\" data-rate=\"0.0000\""));
}

TEST(HeatmapTest, EscapesTheModelName) {
  const std::string svg = RenderHeatmap({}, "a<b>&\"c\"");
  EXPECT_EQ(CheckXml(svg), "");
  EXPECT_THAT(svg, HasSubstr("a&lt;b&gt;&amp;&quot;c&quot;"));
}

TEST(HeatmapTest, IndexerRecallHeatmapColorsByRecallAndGraysCellsWithout) {
  std::vector<CellSummary> cells(3);
  for (int i = 0; i < 3; ++i) {
    cells[i].length = 1024 << i;
    cells[i].n = 2;
    cells[i].exact_match_rate = 1.0;
  }
  cells[0].mean_indexer_recall = 0.25;
  cells[1].mean_indexer_recall = 1.0;  // cells[2]: a dense server, no telemetry.
  const std::string svg = RenderIndexerRecallHeatmap(cells, "v32");
  EXPECT_EQ(CheckXml(svg), "") << svg;
  EXPECT_THAT(svg, HasSubstr("Indexer selection recall"));
  EXPECT_THAT(svg, HasSubstr(">indexer recall<"));
  EXPECT_THAT(svg, HasSubstr("fill=\"" + RateColor(0.25) + "\" data-rate=\"0.2500\""));
  EXPECT_THAT(svg, HasSubstr("fill=\"" + RateColor(1) + "\" data-rate=\"1.0000\""));
  EXPECT_THAT(svg, HasSubstr(std::string("fill=\"") + kNoDataColor + "\" data-rate=\"-1.0000\""));
}

}  // namespace
}  // namespace mla::recall
