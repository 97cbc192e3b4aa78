// Token permutation for the routed experts (plain C++, tested anywhere).
//
// Routing gives every token top_k (expert, weight) pairs; pair p = t · top_k + j is the
// j-th choice of token t. The plan sorts the pairs by expert, keeping token order inside an
// expert (the order the CPU engine visits them), so that expert e owns the contiguous rows
// [offsets[e], offsets[e+1]) of the permuted activations and its GEMMs read one block:
//   permuted row r holds token sorted_pairs[r] / top_k   (kernels/moe_routing.h gathers)
//   pair p's expert output is at row pair_rows[p]          (the unpermute kernel reads it)
#ifndef MLA_ENGINE_BACKEND_CUDA_HOST_MOE_PLAN_H_
#define MLA_ENGINE_BACKEND_CUDA_HOST_MOE_PLAN_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/backend/backend.h"

namespace mla::cuda {

struct MoePlan {
  int num_experts = 0;
  int top_k = 0;
  int64_t num_tokens = 0;
  std::vector<int32_t> counts;        // [num_experts] pairs routed to each expert
  std::vector<int32_t> offsets;       // [num_experts + 1] exclusive prefix sum of counts
  std::vector<int32_t> sorted_pairs;  // [num_tokens · top_k] pair placed at each row
  std::vector<int32_t> pair_rows;     // [num_tokens · top_k] the inverse permutation

  int64_t num_rows() const { return static_cast<int64_t>(sorted_pairs.size()); }
  int32_t TokenOfRow(int64_t row) const { return sorted_pairs[row] / top_k; }
};

// Fills `plan` (vectors are reused) from expert_ids [num_tokens, top_k]. INVALID_ARGUMENT
// when the sizes disagree, an id is outside [0, num_experts) or the pairs overflow int32.
absl::Status PlanMoePermutation(absl::Span<const int32_t> expert_ids, int64_t num_tokens, int top_k,
                                int num_experts, MoePlan* plan);

// How MoeExperts runs the experts' GEMMs: through the grouped kernel (kernels/
// grouped_gemm.h: two launches per matrix kind, no host wait) or one cuBLASLt GEMM per
// used expert (tensor cores, but a host wait for the expert counts and three launches per
// expert). Tests force either; the backend runs kAuto.
enum class GroupedExperts { kAuto, kAlways, kNever };
// "auto", "always" or "never" (the MLA_CUDA_GROUPED_EXPERTS values); INVALID_ARGUMENT
// naming the value otherwise.
absl::StatusOr<GroupedExperts> ParseGroupedExperts(std::string_view value);

// kAuto's limit on a step's token-expert pairs. The grouped kernel sums on CUDA cores and
// reads each weight once per 8 rows, which suits decode steps, where the GEMMs are a few
// rows each and the per-expert path pays about 3 · 64 launches per layer; above some
// batch the tensor cores win. 512 pairs is batch 85 at V2-Lite's top-6: an estimate from
// the arithmetic (at 512 pairs, about 9 GFLOP per V2-Lite layer on the CUDA cores against
// a 1.1 GB weight read), not yet a measurement.
inline constexpr int64_t kGroupedMaxPairs = 512;

// True when MoeExperts takes the grouped kernel for a step of `pairs` pairs: `mode` allows
// it, and the experts are uniform: every gate and up [inter, hidden], every down
// [hidden, inter], all bf16 or all fp32 (the dtypes the kernel reads).
bool UseGroupedExperts(std::span<const ExpertTensors> experts, int64_t hidden, int64_t pairs,
                       GroupedExperts mode);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_HOST_MOE_PLAN_H_
