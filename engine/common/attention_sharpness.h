// Attention sharpness of one query row in one layer, averaged over heads (telemetry; the
// backends compute it, see Backend::ProbeAttention).
#ifndef MLA_ENGINE_COMMON_ATTENTION_SHARPNESS_H_
#define MLA_ENGINE_COMMON_ATTENTION_SHARPNESS_H_

#include <cstdint>

namespace mla {

struct AttentionSharpness {
  int layer = 0;
  int64_t context_tokens = 0;  // Keys the row attends to.
  double entropy = 0.0;        // Mean over heads, nats.
  double max_weight = 0.0;     // Mean over heads of each head's largest weight.
};

}  // namespace mla

#endif  // MLA_ENGINE_COMMON_ATTENTION_SHARPNESS_H_
