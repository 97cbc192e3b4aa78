// The MoE routing policy (engine/backend/moe_policy.h) a config.json asks for.
#ifndef MLA_ENGINE_MODEL_MOE_CONFIG_H_
#define MLA_ENGINE_MODEL_MOE_CONFIG_H_

#include "engine/backend/moe_policy.h"
#include "engine/model/config.h"

namespace mla {

MoeRoutingPolicy MoeRoutingFromConfig(const ModelConfig& config);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_MOE_CONFIG_H_
