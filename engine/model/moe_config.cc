#include "engine/model/moe_config.h"

namespace mla {

MoeRoutingPolicy MoeRoutingFromConfig(const ModelConfig& c) {
  MoeRoutingPolicy p;
  p.num_experts = c.n_routed_experts;
  p.top_k = c.num_experts_per_tok;
  p.sigmoid = c.scoring_func == ScoringFunc::kSigmoid;
  switch (c.topk_method) {
    case TopkMethod::kGreedy:
      p.group_score = MoeGroupScore::kNone;
      break;
    case TopkMethod::kGroupLimitedGreedy:
      p.group_score = MoeGroupScore::kMax;
      break;
    case TopkMethod::kNoauxTc:
      p.group_score = MoeGroupScore::kSumTop2;
      break;
  }
  if (p.group_score != MoeGroupScore::kNone) {
    p.n_group = c.n_group;
    p.topk_group = c.topk_group;
  }
  p.normalize = c.norm_topk_prob && c.num_experts_per_tok > 1;
  // V3 (noaux_tc) always scales; V2 only when it does not normalize.
  const bool scale = c.topk_method == TopkMethod::kNoauxTc || !p.normalize;
  p.scaling = scale ? static_cast<float>(c.routed_scaling_factor) : 1.0f;
  p.use_bias = c.topk_method == TopkMethod::kNoauxTc;
  return p;
}

}  // namespace mla
