// The recall heatmap as SVG: one panel per needle kind, side by side; in each, columns
// are context lengths, rows are needle depths (0% at the top), and a cell's color is
// its exact-match rate on a red (0%) - yellow (50%) - green (100%) scale, the layout of
// the needle-in-a-haystack figures in long-context model reports.
#ifndef MLA_CLIENT_RECALL_HEATMAP_H_
#define MLA_CLIENT_RECALL_HEATMAP_H_

#include <string>
#include <vector>

#include "client/recall/results.h"

namespace mla::recall {

// "#rrggbb" for an exact-match rate in [0, 1] (clamped).
std::string RateColor(double rate);

// Color of a cell without finished trials.
inline constexpr char kNoDataColor[] = "#d9d9d9";

// "512", "4K", "128K": lengths that are multiples of 1024 are written in K.
std::string FormatLength(int length);

// The whole SVG document. Each cell is one <rect class="cell" ...> with its fill and a
// data-rate attribute; `model` goes into the title.
std::string RenderHeatmap(const std::vector<CellSummary>& cells, const std::string& model);

// The same layout colored by indexer selection recall (DeepSeek-V3.2 servers): the mean
// share of the asked needle's tokens the lightning indexer kept for the answer's first
// token, over layers and trials. Cells without that telemetry show as no data.
std::string RenderIndexerRecallHeatmap(const std::vector<CellSummary>& cells,
                                       const std::string& model);

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_HEATMAP_H_
