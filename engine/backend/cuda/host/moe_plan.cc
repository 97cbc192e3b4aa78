#include "engine/backend/cuda/host/moe_plan.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace mla::cuda {

absl::Status PlanMoePermutation(absl::Span<const int32_t> expert_ids, int64_t num_tokens, int top_k,
                                int num_experts, MoePlan* plan) {
  if (num_tokens < 0 || top_k < 1 || num_experts < 1) {
    return absl::InvalidArgumentError(
        "MoePlan: need num_tokens >= 0, top_k >= 1 and num_experts >= 1");
  }
  if (num_tokens > INT32_MAX / top_k) {
    return absl::InvalidArgumentError("MoePlan: num_tokens · top_k must fit in int32");
  }
  const int64_t num_pairs = num_tokens * top_k;
  if (static_cast<int64_t>(expert_ids.size()) != num_pairs) {
    return absl::InvalidArgumentError(absl::StrCat("MoePlan: expected ", num_pairs,
                                                   " expert ids (num_tokens · top_k), got ",
                                                   expert_ids.size()));
  }
  for (int64_t p = 0; p < num_pairs; ++p) {
    if (expert_ids[p] < 0 || expert_ids[p] >= num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("MoePlan: expert id ", expert_ids[p],
                                                     " of token ", p / top_k, " is outside [0, ",
                                                     num_experts, ")"));
    }
  }
  plan->num_experts = num_experts;
  plan->top_k = top_k;
  plan->num_tokens = num_tokens;
  plan->counts.assign(num_experts, 0);
  for (int32_t e : expert_ids) ++plan->counts[e];
  plan->offsets.assign(num_experts + 1, 0);
  for (int e = 0; e < num_experts; ++e) {
    plan->offsets[e + 1] = plan->offsets[e] + plan->counts[e];
  }
  // A counting sort: visiting the pairs in order keeps token order inside each expert.
  std::vector<int32_t> next(plan->offsets.begin(), plan->offsets.end() - 1);
  plan->sorted_pairs.resize(num_pairs);
  plan->pair_rows.resize(num_pairs);
  for (int64_t p = 0; p < num_pairs; ++p) {
    const int32_t row = next[expert_ids[p]]++;
    plan->sorted_pairs[row] = static_cast<int32_t>(p);
    plan->pair_rows[p] = row;
  }
  return absl::OkStatus();
}

absl::StatusOr<GroupedExperts> ParseGroupedExperts(std::string_view value) {
  if (value == "auto") return GroupedExperts::kAuto;
  if (value == "always") return GroupedExperts::kAlways;
  if (value == "never") return GroupedExperts::kNever;
  return absl::InvalidArgumentError(
      absl::StrCat("expected auto, always or never, got \"", std::string(value), "\""));
}

bool UseGroupedExperts(std::span<const ExpertTensors> experts, int64_t hidden, int64_t pairs,
                       GroupedExperts mode) {
  if (mode == GroupedExperts::kNever || experts.empty()) return false;
  if (mode == GroupedExperts::kAuto && pairs > kGroupedMaxPairs) return false;
  const DType dtype = experts[0].gate.dtype;
  const int64_t inter = experts[0].gate.rows;
  if (dtype != DType::kBF16 && dtype != DType::kF32) return false;
  for (const ExpertTensors& e : experts) {
    for (const Tensor* t : {&e.gate, &e.up, &e.down}) {
      if (t->dtype != dtype || t->data == nullptr) return false;
    }
    if (e.gate.rows != inter || e.gate.cols != hidden || e.up.rows != inter ||
        e.up.cols != hidden || e.down.rows != hidden || e.down.cols != inter) {
      return false;
    }
  }
  return true;
}

}  // namespace mla::cuda
