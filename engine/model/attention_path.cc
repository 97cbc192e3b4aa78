#include "engine/model/attention_path.h"

#include <cstdio>
#include <cstdlib>

namespace mla {
namespace {

AttentionPath ComputeDefault() {
  const char* env = std::getenv("MLA_ATTENTION_PATH");
  if (env == nullptr || *env == '\0') return AttentionPath::kAuto;
  const std::optional<AttentionPath> path = ParseAttentionPath(env);
  if (!path.has_value()) {
    std::fprintf(
        stderr, "MLA_ATTENTION_PATH=%s: unknown (auto, absorbed, decompressed); using auto\n", env);
    return AttentionPath::kAuto;
  }
  return *path;
}

}  // namespace

std::string_view AttentionPathName(AttentionPath path) {
  switch (path) {
    case AttentionPath::kAuto:
      return "auto";
    case AttentionPath::kAbsorbed:
      return "absorbed";
    case AttentionPath::kDecompressed:
      return "decompressed";
  }
  return "?";
}

std::optional<AttentionPath> ParseAttentionPath(std::string_view name) {
  for (AttentionPath p :
       {AttentionPath::kAuto, AttentionPath::kAbsorbed, AttentionPath::kDecompressed}) {
    if (name == AttentionPathName(p)) return p;
  }
  return std::nullopt;
}

AttentionPath DefaultAttentionPath() {
  static const AttentionPath path = ComputeDefault();
  return path;
}

AttentionCost EstimateAttentionCost(const ModelConfig& c, int64_t rows, int64_t start_pos) {
  const double lat = c.kv_lora_rank, rope = c.qk_rope_head_dim;
  const double nope = c.qk_nope_head_dim, v = c.v_head_dim;
  const double m = static_cast<double>(rows), keys = static_cast<double>(start_pos + rows);
  // Σ over rows of the keys each sees.
  const double pairs = m * static_cast<double>(start_pos) + m * (m + 1) / 2;
  const double up_projection = 2 * lat * (nope + v);  // q_nope·W_UK and W_UV, or k and v
  AttentionCost cost;
  cost.absorbed = pairs * (2 * (lat + rope) + 2 * lat) + m * up_projection;
  cost.decompressed = pairs * (2 * (nope + rope) + 2 * v) + keys * up_projection;
  return cost;
}

bool PreferDecompressed(const ModelConfig& config, int64_t rows, int64_t start_pos) {
  const AttentionCost cost = EstimateAttentionCost(config, rows, start_pos);
  return cost.decompressed < cost.absorbed;
}

}  // namespace mla
