// Next-token selection from one row of logits.
//
// Greedy (temperature 0): the argmax, lowest index on ties; the Rng is not used.
// Otherwise, in vLLM V0's order (V1 moved min-p before top-k/top-p; only top-p combined
// with min-p can tell the two apart):
//   1. temperature: p ∝ exp((logit - max) / T);
//   2. top-k: keep the k most likely tokens (exactly k: equal logits by lower id);
//   3. top-p: keep the smallest prefix, most likely first (equal logits by lower id),
//      whose mass reaches top_p of the mass left after top-k (never fewer than one token);
//   4. min-p: drop tokens whose probability is below min_p × the largest probability;
//   5. renormalise over the kept tokens and draw by inverse CDF: with u = rng.NextDouble(),
//      walk the kept tokens in ascending id order and return the first whose cumulative
//      weight exceeds u × total.
// Exactly one Rng output is consumed per non-greedy call, whatever the filters keep, so a
// sequence's stream position depends only on how many non-greedy tokens it sampled.
// Cost for a 129,280-token vocabulary: a few passes over the logits (one expf each); top-k
// uses a bounded heap and top-p a mass histogram plus a quickselect, never a full sort.
//
// Reproducibility: the bit stream (rng.h) and the order of every operation are fixed;
// weights use the C library's expf, so two machines can disagree only when u lands
// within an ulp of a cumulative boundary.
//
// Logits: NaN counts as -inf (never chosen). If some logits are +inf, they share all the
// probability mass equally. If all are NaN or -inf: INVALID_ARGUMENT.
#ifndef MLA_ENGINE_SAMPLING_SAMPLER_H_
#define MLA_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sampling/rng.h"
#include "engine/sampling/sampling_params.h"

namespace mla {

// Returns the chosen token id. INVALID_ARGUMENT for invalid params, empty logits, or
// logits without a single finite or +inf value.
absl::StatusOr<int32_t> Sample(std::span<const float> logits, const SamplingParams& params,
                               Rng& rng);

struct TokenProbability {
  int32_t token_id;
  double probability;
};

// The distribution Sample draws from after all filters: every token it can return
// (nonzero probability), ascending id, probabilities summing to 1. Greedy gives the
// argmax with probability 1. Same errors as Sample. For tests, debugging and
// "processed" logprobs; Sample itself does not build this list.
absl::StatusOr<std::vector<TokenProbability>> SamplingDistribution(std::span<const float> logits,
                                                                   const SamplingParams& params);

// Top-p of a full-vocabulary row (top-k off) known only by its best tokens, for a sampler
// that keeps the row elsewhere (the CUDA backend draws on the device): the RankKey
// (top_k.h) of the last token of Sample's top-p prefix, kKeepAllRanks when top_p is 1,
// or std::nullopt when the prefix reaches past the candidates (only the full row can
// tell then). `ids` and `logits` are the candidates in any order, and every other token
// ranks after all of them (TopKIndices picks such a set); `vocab_size` is the row's
// length, `max` its largest logit (finite) and `total` the sum over the whole row of
// exp((logit - max) / temperature). Sample keeps exactly the tokens ranking at or before
// the boundary whose weight exp((logit - max) / temperature) is at least min_p, when
// `total` is the sum Sample computes; a total summed in another order can move the
// boundary only where the prefix's mass lies within rounding of top_p × total.
inline constexpr uint64_t kKeepAllRanks = ~uint64_t{0};
std::optional<uint64_t> TopPBoundaryOfCandidates(std::span<const int32_t> ids,
                                                 std::span<const float> logits, int64_t vocab_size,
                                                 float max, double total,
                                                 const SamplingParams& params);

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_SAMPLER_H_
