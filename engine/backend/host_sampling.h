// Sampling and scoring of one logits row on the host, shared by the backends: the CPU
// backend calls it on its own memory, the CUDA backend on the rows it downloads (those its
// device paths cannot decide, cuda_sampling.cc).
#ifndef MLA_ENGINE_BACKEND_HOST_SAMPLING_H_
#define MLA_ENGINE_BACKEND_HOST_SAMPLING_H_

#include <span>

#include "engine/backend/backend.h"

namespace mla {

// Samples (or scores r.score_token) from `logits` as `r` asks and fills `out`: the token,
// its logprob and the top-N when r.top_logprobs >= 0, or a per-row error status.
void SampleHostRow(std::span<const float> logits, const RowSampling& r, RowSample& out);

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_HOST_SAMPLING_H_
