#include "engine/backend/host_sampling.h"

#include <vector>

#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampler.h"

namespace mla {

void SampleHostRow(std::span<const float> logits, const RowSampling& r, RowSample& out) {
  if (r.score_token >= 0) {
    out.token = r.score_token;
  } else {
    absl::StatusOr<int32_t> token = Sample(logits, *r.params, *r.rng);
    if (!token.ok()) {
      out.status = token.status();
      return;
    }
    out.token = *token;
  }
  if (r.top_logprobs >= 0) {
    const std::vector<float> lp = LogSoftmax(logits);
    out.has_logprobs = true;
    out.logprobs.token_id = out.token;
    out.logprobs.logprob = lp[out.token];
    out.logprobs.top = TopN(lp, r.top_logprobs);
  }
}

}  // namespace mla
