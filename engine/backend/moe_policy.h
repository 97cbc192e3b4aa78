// How a MoE layer picks its experts, as plain data: the model fills it from its
// config.json (engine/model/moe_config.h), the backends' routers follow it.
//   scores = softmax(logits) or sigmoid(logits)
//   choice = scores (+ bias when use_bias), experts outside the topk_group best groups → −inf
//   experts = the top_k choices (larger first, lower index on ties)
//   weights = scores[experts], / their sum when normalize, × scaling
#ifndef MLA_ENGINE_BACKEND_MOE_POLICY_H_
#define MLA_ENGINE_BACKEND_MOE_POLICY_H_

namespace mla {

// How a group of experts is ranked when selection is group-limited.
enum class MoeGroupScore {
  kNone,     // greedy: no group limit
  kMax,      // group_limited_greedy (V2): the group's best score
  kSumTop2,  // noaux_tc (V3): the sum of the group's two best (biased) scores
};

struct MoeRoutingPolicy {
  int num_experts = 0;
  int top_k = 0;
  bool sigmoid = false;  // scoring_func: softmax when false
  MoeGroupScore group_score = MoeGroupScore::kNone;
  int n_group = 1;     // divides num_experts
  int topk_group = 1;  // [1, n_group]
  bool normalize = false;
  float scaling = 1.0f;
  bool use_bias = false;  // e_score_correction_bias (noaux_tc)
};

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_MOE_POLICY_H_
