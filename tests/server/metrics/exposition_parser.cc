#include "tests/server/metrics/exposition_parser.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mla::testing {
namespace {

bool ParseValue(absl::string_view text, double* value) {
  if (text == "+Inf") {
    *value = INFINITY;
  } else if (text == "-Inf") {
    *value = -INFINITY;
  } else if (text == "NaN") {
    *value = NAN;
  } else {
    return absl::SimpleAtod(text, value);
  }
  return true;
}

}  // namespace

absl::StatusOr<Exposition> ParseExposition(const std::string& text) {
  Exposition e;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "# ")) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
      if (parts.size() == 3 && parts[0] == "TYPE") e.types[parts[1]] = parts[2];
      if (parts.size() >= 2 && parts[0] == "HELP") {
        e.helps[parts[1]] = parts.size() == 3 ? parts[2] : "";
      }
      continue;
    }
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos || !ParseValue(line.substr(space + 1), &value)) {
      return absl::InvalidArgumentError("bad sample line: " + std::string(line));
    }
    e.samples[std::string(line.substr(0, space))] = value;
  }
  return e;
}

}  // namespace mla::testing
