// Routed-expert plumbing on the device: router scores → top-k experts and weights, the
// gather of token rows into expert order and the weighted sum back (declarations only; see
// pointwise.h for the convention; the checks live in moe_routing.cc, the kernels in
// moe_routing.cu). The permutation itself is planned on the host (host/moe_plan.h).
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MOE_ROUTING_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MOE_ROUTING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/common/bf16.h"
#include "engine/backend/moe_policy.h"

namespace mla::cuda {

// Limits of the routing kernel (one warp per token, scores in shared memory).
inline constexpr int kMoeMaxExperts = 512;
inline constexpr int kMoeMaxTopK = 32;
inline constexpr int kMoeMaxGroups = 32;

// The CPU backend's RouteToken (engine/backend/cpu/pointwise.h) for every token:
//   scores = softmax(logits) or sigmoid(logits)
//   choice = scores (+ bias when given), experts outside the topk_group best groups → −inf
//   experts = the top_k choices (larger first, lower index on ties)
//   weights = scores[experts], / their sum when normalize, × scaling
// Fill the policy fields with MoeRoutingFromPolicy.
// The policy fields (num_experts, top_k, sigmoid, group_score, n_group, topk_group,
// normalize, scaling) come from the base.
struct MoeRoutingParams : MoeRoutingPolicy {
  int64_t num_tokens = 0;
  const float* logits = nullptr;  // [num_tokens, logits_stride], the first num_experts used
  int64_t logits_stride = 0;
  const float* bias = nullptr;    // [num_experts] or null: e_score_correction_bias
  int32_t* expert_ids = nullptr;  // [num_tokens, top_k]
  float* weights = nullptr;       // [num_tokens, top_k]
};

// The policy fields from `policy` (the pointers and num_tokens stay unset). Pass the
// layer's e_score_correction_bias as `bias` when policy.use_bias.
MoeRoutingParams MoeRoutingFromPolicy(const MoeRoutingPolicy& policy);

// The permutation plan of host/moe_plan.h built on the device from the routing kernel's
// expert_ids, so that no copy to the host is needed: identical to PlanMoePermutation's
// (stable by pair). Two kernels, one warp per expert: count, then place. Ids outside
// [0, num_experts) are never placed (their rows stay unwritten); num_invalid, when set,
// receives how many there were.
struct MoePlanParams {
  int64_t num_tokens = 0;
  int top_k = 0;
  int num_experts = 0;
  const int32_t* expert_ids = nullptr;  // [num_tokens, top_k]
  int32_t* counts = nullptr;            // [num_experts]
  int32_t* offsets = nullptr;           // [num_experts + 1]
  int32_t* sorted_pairs = nullptr;      // [num_tokens · top_k]
  int32_t* pair_rows = nullptr;         // [num_tokens · top_k]
  int32_t* num_invalid = nullptr;       // [1], optional
};

// out[r] = x[sorted_pairs[r] / top_k]: token rows in expert order (host/moe_plan.h).
struct MoePermuteParams {
  int64_t num_rows = 0;  // num_tokens · top_k
  int64_t num_tokens = 0;
  int top_k = 0;
  int hidden = 0;
  const bf16_t* x = nullptr;  // [num_tokens, x_stride]
  int64_t x_stride = 0;
  const int32_t* sorted_pairs = nullptr;  // [num_rows]
  bf16_t* out = nullptr;                  // [num_rows, hidden]
};

// out[t] = shared[t] + Σ_j weights[t, j] · expert_out[pair_rows[t · top_k + j]] in fp32,
// rounded to bf16 once (the CPU engine's MoE combine; shared is the shared experts'
// output, optional, and may alias out).
struct MoeUnpermuteParams {
  int64_t num_tokens = 0;
  int top_k = 0;
  int hidden = 0;
  const bf16_t* expert_out = nullptr;  // [num_tokens · top_k, hidden], permuted rows
  const int32_t* pair_rows = nullptr;  // [num_tokens · top_k]
  const float* weights = nullptr;      // [num_tokens, top_k]
  const bf16_t* shared = nullptr;      // [num_tokens, hidden] or null
  bf16_t* out = nullptr;               // [num_tokens, hidden]
};

absl::Status ValidateMoeRoutingParams(const MoeRoutingParams& p);
absl::Status ValidateMoePlanParams(const MoePlanParams& p);
absl::Status ValidateMoePermuteParams(const MoePermuteParams& p);
absl::Status ValidateMoeUnpermuteParams(const MoeUnpermuteParams& p);

absl::Status LaunchMoeRouting(const MoeRoutingParams& p, CudaStream stream);
absl::Status LaunchMoePlan(const MoePlanParams& p, CudaStream stream);
absl::Status LaunchMoePermute(const MoePermuteParams& p, CudaStream stream);
absl::Status LaunchMoeUnpermute(const MoeUnpermuteParams& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MOE_ROUTING_H_
