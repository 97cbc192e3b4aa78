// Continuous batching: the waiting and running queues, the token budget of each step,
// chunked prefill, priorities with a starvation bound, and preemption when the latent
// cache runs out of blocks. Knows sequences and asks the BlockManager for blocks; it
// never runs the model (the engine does), so it can be tested with a fake one.
#ifndef MLA_ENGINE_SCHEDULER_SCHEDULER_H_
#define MLA_ENGINE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/kv_cache/block_manager.h"
#include "engine/scheduler/sequence.h"

namespace mla {

struct SchedulerConfig {
  int64_t max_batch_tokens = 512;  // Tokens per step (decodes count one each).
  int max_running = 64;            // Sequences holding blocks at once.
  // A request that has waited this many steps is admitted before any priority order.
  int64_t starvation_steps = 256;
  // A sequence preempted this often is protected: it is the last choice of victim.
  int protect_after_preemptions = 2;
};

// One sequence's share of a step: tokens[num_computed, num_computed + num_tokens).
struct ScheduledChunk {
  Sequence* seq;
  int64_t num_tokens;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager* blocks);

  // Queues a new sequence (arrival order is assigned here).
  void Add(std::unique_ptr<Sequence> seq);

  // Builds the next step, in this order: (1) one decode token for every running sequence
  // that has finished its prefill, growing its blocks and preempting when the cache is
  // full; (2) prefill chunks of running sequences; (3) admission of waiting sequences
  // (highest effective priority first, prefix-cache hits skip their cached tokens), all
  // within max_batch_tokens. Sets each scheduled sequence's `chunk`.
  std::vector<ScheduledChunk> Schedule();

  // Removes a sequence (waiting or running) by request id, releasing its blocks; null
  // when no such sequence is queued.
  std::unique_ptr<Sequence> Extract(const std::string& request_id);
  // Removes and returns every sequence marked done, releasing their blocks.
  std::vector<std::unique_ptr<Sequence>> TakeDone();

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  bool empty() const { return running_.empty() && waiting_.empty(); }
  int64_t num_preemptions() const { return num_preemptions_; }
  const std::vector<std::unique_ptr<Sequence>>& running() const { return running_; }
  const std::vector<std::unique_ptr<Sequence>>& waiting() const { return waiting_; }

 private:
  bool Protected(const Sequence& s) const {
    return s.preemptions >= config_.protect_after_preemptions;
  }
  // Index of the waiting sequence to admit next, of those not passed over this step
  // (none if all were).
  std::optional<size_t> NextWaiting() const;
  // A waiting sequence whose prompt shares at least one full block with a running
  // sequence that has not computed that shared part yet waits for it: admitted once those
  // blocks are in the prefix cache, it computes only the rest instead of the whole prompt
  // alongside (the choices of one OpenAI request, a system prompt many clients send at
  // once). The running one is scheduled ahead of admissions, so the wait is its prefill.
  bool AwaitsSharedPrefill(Sequence& seq) const;
  // Index of the running sequence to preempt: lowest priority, then most recently
  // admitted; protected sequences only when nothing else is left.
  size_t PickVictim() const;
  void Preempt(size_t running_index, std::vector<ScheduledChunk>& batch, int64_t& budget);
  // Grows `seq`'s blocks to hold all its tokens, preempting others (or itself) as needed.
  // False when `seq` itself was preempted.
  bool ReserveDecode(Sequence* seq, std::vector<ScheduledChunk>& batch, int64_t& budget);
  void AdmitWaiting(std::vector<ScheduledChunk>& batch, int64_t& budget);

  SchedulerConfig config_;
  BlockManager* blocks_;
  std::vector<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  uint64_t next_arrival_ = 0;
  uint64_t next_admission_ = 0;
  uint64_t steps_ = 0;  // Schedule calls: stamps Sequence::passed_over_step.
  int64_t num_preemptions_ = 0;
};

}  // namespace mla

#endif  // MLA_ENGINE_SCHEDULER_SCHEDULER_H_
