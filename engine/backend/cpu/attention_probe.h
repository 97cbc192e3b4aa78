// Attention-sharpness telemetry: how peaked is the attention of one query row? For the
// distribution p = softmax(scale · score) over a row's keys, per head:
//   entropy    H = -Σ p_s log p_s            (nats; 0 = all weight on one key, log n = flat)
//   max weight   = max_s p_s
// Scores are recomputed from the cached latents exactly as the attention kernels define
// them (engine/backend/cpu/mla_attention.h), in one streaming pass with an online
// log-sum-exp: with m the running max, Z = Σ e^(s-m) and A = Σ e^(s-m)·s,
//   H = m + log Z - A / Z   and   max weight = 1 / Z.
// It costs about one extra QK pass for the probed row, which is why the engine probes
// only sampled rows (see EngineOptions::attention_probe_every).
#ifndef MLA_ENGINE_BACKEND_CPU_ATTENTION_PROBE_H_
#define MLA_ENGINE_BACKEND_CPU_ATTENTION_PROBE_H_

#include <cstdint>

#include <span>

#include "absl/status/statusor.h"
#include "engine/common/attention_sharpness.h"
#include "engine/kv_cache/latent_cache.h"

namespace mla {

// q_abs_row: [heads, L + R] absorbed query of the row (as the kernels take it); the row
// attends to keys [0, num_keys) of the sequence whose blocks are `block_ids`, in `layer`.
// num_keys must be >= 1 and fit in the blocks; block ids must be below the cache's.
absl::StatusOr<AttentionSharpness> ProbeAttentionRow(const LatentCache& cache, int layer,
                                                     std::span<const int32_t> block_ids,
                                                     int64_t num_keys,
                                                     const float* q_abs_row, int heads,
                                                     float softmax_scale);

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_CPU_ATTENTION_PROBE_H_
