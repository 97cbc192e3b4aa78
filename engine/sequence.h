// One live request inside the engine: plain state, owned by the loop thread once
// admitted (nano-vllm's Sequence).
#ifndef MLA_ENGINE_SEQUENCE_H_
#define MLA_ENGINE_SEQUENCE_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "engine/kv_cache/block_table.h"
#include "engine/request.h"
#include "engine/sampling/rng.h"

namespace mla {

struct Sequence {
  Sequence(GenerationRequest r, OutputCallback cb, int block_size, absl::Time now)
      : request(std::move(r)), on_output(std::move(cb)), table(block_size),
        rng(request.sampling.seed), arrival(now) {
    tokens = request.prompt;
  }

  int64_t prompt_len() const { return static_cast<int64_t>(request.prompt.size()); }
  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len(); }
  bool prefilling() const { return num_computed < prompt_len(); }

  GenerationRequest request;
  OutputCallback on_output;
  BlockTable table;          // Blocks reserved for prompt + max_tokens.
  Rng rng;
  std::vector<int32_t> tokens;  // Prompt then generated tokens.
  int64_t num_computed = 0;     // Tokens whose latents are in the cache.
  int64_t max_total = 0;        // prompt + max_tokens (capped by the context).
  int64_t chunk = 0;            // Tokens scheduled in the current step.
  bool first_output_sent = false;
  bool done = false;            // Finished; removed from running_ after the step.
  std::vector<TokenLogprobs> prompt_logprobs;  // Collected over prefill chunks.

  absl::Time arrival;
  absl::Time scheduled = absl::InfiniteFuture();
  absl::Time first_token = absl::InfiniteFuture();
};

}  // namespace mla

#endif  // MLA_ENGINE_SEQUENCE_H_
