// Host-side parts of the MoE kernels (plain C++, built with or without CUDA): the routing
// policy fields and the shape checks.
#include "engine/backend/cuda/kernels/moe_routing.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/kernels/check_util.h"

namespace mla::cuda {

using internal::Invalid;
using internal::NeedPointer;
using internal::NeedPointers;

MoeRoutingParams MoeRoutingFromPolicy(const MoeRoutingPolicy& policy) {
  MoeRoutingParams p;
  static_cast<MoeRoutingPolicy&>(p) = policy;
  return p;
}

absl::Status ValidateMoeRoutingParams(const MoeRoutingParams& p) {
  constexpr const char* k = "MoeRouting";
  if (p.num_tokens < 0) return Invalid(k, "num_tokens must be >= 0");
  if (p.num_experts < 1 || p.num_experts > kMoeMaxExperts) {
    return Invalid(
        k, absl::StrCat("num_experts must be in [1, ", kMoeMaxExperts, "], got ", p.num_experts));
  }
  if (p.top_k < 1 || p.top_k > kMoeMaxTopK || p.top_k > p.num_experts) {
    return Invalid(k, absl::StrCat("top_k must be in [1, min(num_experts, ", kMoeMaxTopK,
                                   ")], got ", p.top_k));
  }
  if (p.n_group < 1 || p.n_group > kMoeMaxGroups || p.num_experts % p.n_group != 0) {
    return Invalid(k, absl::StrCat("n_group must divide num_experts and be <= ", kMoeMaxGroups,
                                   ", got ", p.n_group));
  }
  if (p.topk_group < 1 || p.topk_group > p.n_group) {
    return Invalid(k, absl::StrCat("topk_group must be in [1, n_group], got ", p.topk_group));
  }
  if (p.logits_stride < p.num_experts) return Invalid(k, "logits_stride must be >= num_experts");
  if (!(p.scaling > 0.0f)) return Invalid(k, "scaling must be > 0");
  const bool work = p.num_tokens > 0;
  return NeedPointers(k, work,
                      {{p.logits, "logits"}, {p.expert_ids, "expert_ids"}, {p.weights, "weights"}});
}

absl::Status ValidateMoePlanParams(const MoePlanParams& p) {
  constexpr const char* k = "MoePlan";
  if (p.num_tokens < 0 || p.top_k < 1 || p.num_experts < 1) {
    return Invalid(k, "need num_tokens >= 0, top_k >= 1 and num_experts >= 1");
  }
  if (p.num_tokens > INT32_MAX / p.top_k) {
    return Invalid(k, "num_tokens · top_k must fit in int32");
  }
  // Counts and offsets are written even for zero tokens.
  if (absl::Status s = NeedPointers(k, true, {{p.counts, "counts"}, {p.offsets, "offsets"}});
      !s.ok()) {
    return s;
  }
  const bool work = p.num_tokens > 0;
  return NeedPointers(
      k, work,
      {{p.expert_ids, "expert_ids"}, {p.sorted_pairs, "sorted_pairs"}, {p.pair_rows, "pair_rows"}});
}

absl::Status ValidateMoePermuteParams(const MoePermuteParams& p) {
  constexpr const char* k = "MoePermute";
  if (p.num_tokens < 0 || p.top_k < 1 || p.hidden < 1) {
    return Invalid(k, "need num_tokens >= 0, top_k >= 1 and hidden >= 1");
  }
  if (p.num_rows != p.num_tokens * p.top_k) {
    return Invalid(k, "num_rows must be num_tokens · top_k");
  }
  if (p.num_rows > INT32_MAX) return Invalid(k, "num_rows must fit in int32");
  if (p.x_stride < p.hidden) return Invalid(k, "x_stride must be >= hidden");
  const bool work = p.num_rows > 0;
  return NeedPointers(k, work, {{p.x, "x"}, {p.sorted_pairs, "sorted_pairs"}, {p.out, "out"}});
}

absl::Status ValidateMoeUnpermuteParams(const MoeUnpermuteParams& p) {
  constexpr const char* k = "MoeUnpermute";
  if (p.num_tokens < 0 || p.top_k < 1 || p.hidden < 1) {
    return Invalid(k, "need num_tokens >= 0, top_k >= 1 and hidden >= 1");
  }
  if (p.num_tokens > INT32_MAX / p.top_k) return Invalid(k, "num_tokens · top_k must fit in int32");
  const bool work = p.num_tokens > 0;
  return NeedPointers(k, work,
                      {{p.expert_out, "expert_out"},
                       {p.pair_rows, "pair_rows"},
                       {p.weights, "weights"},
                       {p.out, "out"}});
}

}  // namespace mla::cuda
