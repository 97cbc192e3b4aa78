// Log-probabilities for the API's logprobs option.
//
// The engine reports log-probabilities of the model's RAW next-token distribution:
// log_softmax of the logits before temperature, top-k, top-p and min-p. They describe
// the model, not the sampler, so they are comparable across requests with different
// settings and greedy requests still get meaningful values (vLLM's default as well).
#ifndef MLA_ENGINE_SAMPLING_LOGPROBS_H_
#define MLA_ENGINE_SAMPLING_LOGPROBS_H_

#include <cstdint>
#include <span>
#include <vector>

namespace mla {

struct TokenLogprob {
  int32_t token_id;
  float logprob;
};

// A token's logprob with its most likely alternatives.
struct TokenLogprobs {
  int32_t token_id = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};

// log_softmax in fp32 with the maximum subtracted and the sum accumulated in double.
// NaN logits count as -inf (logprob -inf). When some logits are +inf they share all the
// mass (each gets -log(count)). When every logit is NaN or -inf there is no distribution
// and every entry is NaN.
std::vector<float> LogSoftmax(std::span<const float> logits);
// LogSoftmax's entry for one logit from the row's statistics, when `max` (the largest
// logit, NaN as -inf) is finite and log_sum = log Σ exp(x − max): what a device backend
// that computed those statistics itself returns for the tokens it reports.
float LogprobFromLogSum(float logit, float max, double log_sum);

// The min(n, size) most likely tokens, most likely first, equal logprobs by lower id.
// NaN ranks last. n <= 0 gives an empty vector.
std::vector<TokenLogprob> TopN(std::span<const float> logprobs, int n);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_LOGPROBS_H_
