// One live request inside the engine: plain state, owned by the scheduler once submitted
// (nano-vllm's Sequence). The scheduler and the engine loop thread alone touch it.
#ifndef MLA_ENGINE_SCHEDULER_SEQUENCE_H_
#define MLA_ENGINE_SCHEDULER_SEQUENCE_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "engine/kv_cache/block_table.h"
#include "engine/request.h"
#include "engine/sampling/logit_adjustments.h"
#include "engine/sampling/rng.h"

namespace mla {

struct Sequence {
  Sequence(GenerationRequest r, OutputCallback cb, int block_size, absl::Time now)
      : request(std::move(r)),
        on_output(std::move(cb)),
        table(block_size),
        rng(request.sampling.seed),
        tokens(request.prompt),
        arrival(now) {
    if (request.sampling.adjusts_logits()) history.SetPrompt(request.prompt);
  }

  uint64_t serial = 0;  // Engine::Submit's serial of this submission.

  int64_t prompt_len() const { return static_cast<int64_t>(request.prompt.size()); }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t generated() const { return num_tokens() - prompt_len(); }
  // Tokens not yet in the cache. A decoding sequence has exactly one (its last sampled
  // token); more means a (re)prefill: the prompt, or prompt + generated after preemption.
  int64_t uncomputed() const { return num_tokens() - num_computed; }
  bool prefilling() const { return uncomputed() > 1; }

  GenerationRequest request;
  OutputCallback on_output;
  BlockTable table;
  Rng rng;
  std::vector<int32_t> tokens;  // Prompt then generated tokens.
  // What the request's penalties look at; filled only when it has some.
  TokenHistory history;
  int64_t num_computed = 0;          // Tokens whose latents are in the cache.
  int64_t max_total = 0;             // prompt + max_tokens (capped by the context).
  int64_t cached_prompt_tokens = 0;  // Served from the prefix cache at first admission.

  // Scheduling state.
  uint64_t arrival_order = 0;   // Submission order: FIFO within a priority.
  uint64_t admitted_order = 0;  // Last admission: the most recent is preempted first.
  int64_t waited_steps = 0;     // Steps spent waiting since (re)queued.
  int preemptions = 0;          // Times this sequence gave its blocks back.
  int64_t chunk = 0;            // Tokens scheduled in the current step.
  bool admitted_once = false;
  uint64_t passed_over_step = 0;  // Scheduler step that deferred its admission (0: none).
  // Scheduler::AwaitsSharedPrefill's memo, so that a long wait compares each token once:
  // tokens [0, equal) equal those of the running sequence with this serial (and the next
  // one differs when `ended`).
  struct PrefixProbe {
    uint64_t serial = 0;
    int64_t equal = 0;
    bool ended = false;
  } prefix_probe;

  // Output state.
  bool first_output_sent = false;
  bool done = false;                                // Finished; dropped after the step.
  int64_t prompt_logprobs_upto = 0;                 // Prompt positions already scored.
  std::vector<TokenLogprobs> prompt_logprobs;       // Collected over prefill chunks.
  std::vector<AttentionSharpness> attention_stats;  // When the request asked for them.
  std::vector<LayerIndexerRecall> indexer_recall;   // When the request set a watch.

  absl::Time arrival;
  absl::Time scheduled = absl::InfiniteFuture();
  absl::Time first_token = absl::InfiniteFuture();
  absl::Time last_token = absl::InfiniteFuture();
};

}  // namespace mla

#endif  // MLA_ENGINE_SCHEDULER_SEQUENCE_H_
