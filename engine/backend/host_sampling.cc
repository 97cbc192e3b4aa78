#include "engine/backend/host_sampling.h"

#include <vector>

#include "engine/sampling/logit_adjustments.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampler.h"

namespace mla {

void SampleHostRow(std::span<const float> logits, const RowSampling& r, RowSample& out) {
  if (r.score_token >= 0) {
    out.token = r.score_token;
  } else {
    std::span<const float> row = logits;
    if (r.params->adjusts_logits()) {
      if (r.history == nullptr) {
        out.status =
            absl::InvalidArgumentError("sampling: penalties and logit_bias need the history");
        return;
      }
      // The adjusted copy is sampled; the logprobs below stay the model's.
      thread_local std::vector<float> adjusted;
      adjusted.assign(logits.begin(), logits.end());
      ApplyLogitAdjustments(*r.params, *r.history, adjusted);
      row = adjusted;
    }
    absl::StatusOr<int32_t> token = Sample(row, *r.params, *r.rng);
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
