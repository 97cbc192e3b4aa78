// Reads Prometheus text exposition back for tests: every sample line becomes an entry
// keyed by the series exactly as printed, e.g. `mla_x_bucket{le="0.5"}`.
#ifndef MLA_TESTS_SERVER_METRICS_EXPOSITION_PARSER_H_
#define MLA_TESTS_SERVER_METRICS_EXPOSITION_PARSER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mla::testing {

struct Exposition {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // Family name -> TYPE word.
  std::map<std::string, std::string> helps;  // Family name -> HELP text (still escaped).
};

// INVALID_ARGUMENT naming the line when a line is not a comment or `series value`.
absl::StatusOr<Exposition> ParseExposition(const std::string& text);

}  // namespace mla::testing

#endif  // MLA_TESTS_SERVER_METRICS_EXPOSITION_PARSER_H_
