// A request's adjustments of a logits row before sampling: min_tokens, logit bias and the
// repetition, frequency and presence penalties, in vLLM's order:
//   0. min_tokens: while fewer tokens than min_tokens were generated, the sequence's stop
//      tokens (its stop_token_ids, and the model's EOS ids unless ignore_eos) get -inf;
//   1. logit_bias: logit[t] += bias_t;
//   2. repetition penalty r (transformers' RepetitionPenaltyLogitsProcessor, vLLM): for
//      every token t of the prompt or of the output so far, each once,
//      logit[t] = logit[t] > 0 ? logit[t] / r : logit[t] · r;
//   3. frequency f and presence p (OpenAI's definition): for every token t of the output
//      so far, logit[t] -= f · count_t + p, count_t its occurrences in the output.
// Then the sampler (sampler.h) filters and draws from the adjusted row, greedy included.
// Reported logprobs stay the model's (the row before these steps), as vLLM reports them
// by default.
#ifndef MLA_ENGINE_SAMPLING_LOGIT_ADJUSTMENTS_H_
#define MLA_ENGINE_SAMPLING_LOGIT_ADJUSTMENTS_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/sampling/sampling_params.h"

namespace mla {

// The tokens a sequence's penalties look at. Kept per sequence by the engine and fed as
// tokens are generated (a preempted sequence keeps it: its output does not change).
class TokenHistory {
 public:
  // The prompt's distinct tokens, for the repetition penalty.
  void SetPrompt(std::span<const int32_t> prompt);
  // The tokens that end the sequence, which min_tokens holds back.
  void SetStopTokens(std::vector<int32_t> tokens) { stop_tokens_ = std::move(tokens); }
  void AddOutput(int32_t token) {
    ++output_counts_[token];
    ++num_output_;
  }

  std::span<const int32_t> prompt_tokens() const { return prompt_tokens_; }
  std::span<const int32_t> stop_tokens() const { return stop_tokens_; }
  int64_t num_output() const { return num_output_; }
  const absl::flat_hash_map<int32_t, int32_t>& output_counts() const { return output_counts_; }

 private:
  std::vector<int32_t> prompt_tokens_;  // Sorted, distinct.
  std::vector<int32_t> stop_tokens_;
  absl::flat_hash_map<int32_t, int32_t> output_counts_;
  int64_t num_output_ = 0;
};

// Applies steps 0-3 to `logits` in place. Token ids outside the row are skipped (the
// engine refuses them before a request runs). Costs O(distinct tokens of prompt and
// output + bias entries), never a pass over the vocabulary.
void ApplyLogitAdjustments(const SamplingParams& params, const TokenHistory& history,
                           std::span<float> logits);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_LOGIT_ADJUSTMENTS_H_
