// Hooks through which the engine reports what it does (metrics, logs) without knowing
// who listens. Called on the engine loop thread: implementations must be cheap and must
// not block or call back into the engine.
#ifndef MLA_ENGINE_ENGINE_OBSERVER_H_
#define MLA_ENGINE_ENGINE_OBSERVER_H_

#include <cstdint>
#include <string>

#include "engine/request.h"

namespace mla {

// One engine step (one forward pass over a batch).
struct StepStats {
  int64_t prefill_tokens = 0;  // Tokens of (re)prefill chunks.
  int64_t decode_tokens = 0;   // Sequences that decoded one token.
  int num_sequences = 0;
  double seconds = 0.0;        // Scheduling + forward + sampling.
};

// A finished request, with the latencies users ask for.
struct RequestStats {
  std::string request_id;
  std::string api;  // GenerationRequest::api: which front end submitted it.
  FinishReason reason = FinishReason::kNone;
  bool failed = false;  // The engine failed it (reason kAbort with an error).
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int preemptions = 0;
  double queue_seconds = 0.0;     // Arrival to first admission.
  double prefill_seconds = 0.0;   // First admission to first token.
  double ttft_seconds = 0.0;      // Arrival to first token.
  double decode_seconds = 0.0;    // First token to finish.
  double e2e_seconds = 0.0;       // Arrival to finish.
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepStats& step) {}
  // A generated token after the first: the time since the sequence's previous token.
  virtual void OnInterTokenLatency(double seconds) {}
  virtual void OnRequestFinished(const RequestStats& request) {}
  // One probed row of one layer (attention telemetry; only when it is on).
  virtual void OnAttentionProbe(const AttentionSharpness& probe) {}
  // Blocks of a prompt loaded from the disk tier before its prefill: `tokens` tokens in
  // `seconds` (reads, checks and copies into the cache).
  virtual void OnDiskTierLoad(int64_t tokens, double seconds) {}
};

}  // namespace mla

#endif  // MLA_ENGINE_ENGINE_OBSERVER_H_
