// What callers hand the engine and what it streams back. Plain data, no gRPC.
#ifndef MLA_ENGINE_REQUEST_H_
#define MLA_ENGINE_REQUEST_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/common/attention_sharpness.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampling_params.h"

namespace mla {

struct GenerationRequest {
  std::string request_id;  // Unique among live requests; the engine assigns one if empty.
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  bool has_seed = false;   // false: the engine picks sampling.seed.
  int32_t max_tokens = 0;  // 0: up to the model's context.
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int32_t logprobs = 0;          // Top alternatives per generated token; 0 = off.
  int32_t prompt_logprobs = -1;  // -1 = off; >= 0 top alternatives per prompt token.
  int32_t priority = 0;
  std::string cache_salt;
  // Return the attention sharpness of every generated token, per layer, with the final
  // output (costs about one extra QK pass per token; capped, see kMaxAttentionStats).
  bool attention_stats = false;
  // The front end that submitted it ("grpc", "openai"): a label for the observer's
  // metrics only; the engine treats every request alike.
  std::string api = "grpc";
  // DeepSeek-V3.2 telemetry: prompt positions [indexer_watch_begin, indexer_watch_end)
  // (e.g. a needle's tokens) whose selection by the lightning indexer, in every layer,
  // for the row that produces the first token is reported with the final output. Empty:
  // off. Dense-attention models report nothing.
  int64_t indexer_watch_begin = 0;
  int64_t indexer_watch_end = 0;
};

// How many watched positions one layer's indexer selected (GenerationRequest's watch).
struct LayerIndexerRecall {
  int32_t layer = 0;
  int64_t selected = 0;  // Watched positions the indexer kept.
  int64_t watched = 0;   // Watched positions the row could see.
};

// Most attention-sharpness records one request gets back (tokens x layers).
inline constexpr size_t kMaxAttentionStats = 8192;

enum class FinishReason { kNone, kStop, kLength, kStopSequence, kAbort };

// One message of a request's output stream.
struct GenerationOutput {
  std::string request_id;
  uint64_t serial = 0;  // The submission's serial (Engine::Submit): aborts name it.
  std::vector<int32_t> tokens;                   // New tokens since the last output.
  std::vector<TokenLogprobs> logprobs;           // One per token when logprobs > 0.
  std::vector<TokenLogprobs> prompt_logprobs;    // Once, with the first output.
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
  std::string error;  // Set when the engine failed the request (reason kAbort).
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_seconds = 0.0;
  double time_to_first_token_seconds = 0.0;
  double total_seconds = 0.0;
  // With the final output, when the request asked for attention_stats: one record per
  // generated token and layer, in order, at most kMaxAttentionStats.
  std::vector<AttentionSharpness> attention_stats;
  // With the final output, when the request set an indexer watch on a V3.2 model: one
  // record per layer.
  std::vector<LayerIndexerRecall> indexer_recall;
};

// Receives a request's outputs on the engine thread, in order; must not block.
using OutputCallback = std::function<void(GenerationOutput)>;

}  // namespace mla

#endif  // MLA_ENGINE_REQUEST_H_
