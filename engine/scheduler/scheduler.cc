#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <tuple>

#include "absl/time/clock.h"
#include "engine/common/log.h"

namespace mla {

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager* blocks)
    : config_(config), blocks_(blocks) {}

void Scheduler::Add(std::unique_ptr<Sequence> seq) {
  seq->arrival_order = next_arrival_++;
  waiting_.push_back(std::move(seq));
}

std::optional<size_t> Scheduler::NextWaiting() const {
  // Effective order: starving first, then protected (thrash guard), then priority, then
  // arrival. Preempted sequences keep their arrival order and so come back early.
  auto key = [this](const Sequence& s) {
    return std::make_tuple(s.waited_steps >= config_.starvation_steps, Protected(s),
                           s.request.priority, -static_cast<int64_t>(s.arrival_order));
  };
  std::optional<size_t> best;
  for (size_t i = 0; i < waiting_.size(); ++i) {
    if (waiting_[i]->passed_over_step == steps_) continue;
    if (!best || key(*waiting_[i]) > key(*waiting_[*best])) best = i;
  }
  return best;
}

bool Scheduler::AwaitsSharedPrefill(Sequence& seq) const {
  const int64_t block = blocks_->block_size();
  // Prompt logprobs take no cache hits; the last token is always computed.
  if (!blocks_->prefix_caching_enabled() || seq.request.prompt_logprobs >= 0 ||
      seq.num_tokens() <= block) {
    return false;
  }
  for (const auto& r : running_) {
    // Only a prefill still short of a block it shares is worth waiting for: decoding
    // sequences (nearly all of them) cost nothing here.
    if (r->request.cache_salt != seq.request.cache_salt || !r->prefilling()) continue;
    const int64_t need = (r->num_computed / block + 1) * block;
    if (need > std::min(r->num_tokens(), seq.num_tokens() - 1)) continue;
    Sequence::PrefixProbe& probe = seq.prefix_probe;
    // Serial 0 (a sequence the engine did not submit) never memoizes.
    if (probe.serial != r->serial || r->serial == 0) probe = {r->serial, 0, false};
    if (!probe.ended && probe.equal < need) {
      const auto end = seq.tokens.begin() + need;
      const auto first =
          std::mismatch(seq.tokens.begin() + probe.equal, end, r->tokens.begin() + probe.equal);
      probe.equal = first.first - seq.tokens.begin();
      probe.ended = first.first != end;
    }
    if (probe.equal >= need) return true;
  }
  return false;
}

size_t Scheduler::PickVictim() const {
  auto key = [this](const Sequence& s) {
    // Smallest key is preempted: unprotected before protected, low priority first,
    // most recently admitted first.
    return std::make_tuple(Protected(s), s.request.priority,
                           -static_cast<int64_t>(s.admitted_order));
  };
  size_t victim = 0;
  for (size_t i = 1; i < running_.size(); ++i) {
    if (key(*running_[i]) < key(*running_[victim])) victim = i;
  }
  return victim;
}

void Scheduler::Preempt(size_t index, std::vector<ScheduledChunk>& batch, int64_t& budget) {
  std::unique_ptr<Sequence> seq = std::move(running_[index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  for (auto it = batch.begin(); it != batch.end(); ++it) {
    if (it->seq == seq.get()) {
      budget += it->num_tokens;
      batch.erase(it);
      break;
    }
  }
  if (absl::Status s = blocks_->Release(seq->table); !s.ok()) {
    LogError("preempting ", LogQuoted(seq->request.request_id), ": ", s.message());
  }
  // Recompute later: the tokens (generated ones included) are kept and never re-sent.
  seq->num_computed = 0;
  seq->chunk = 0;
  seq->waited_steps = 0;
  ++seq->preemptions;
  ++num_preemptions_;
  LogDebug("preempted ", LogQuoted(seq->request.request_id), " (", seq->num_tokens(), " tokens, ",
           seq->preemptions, " times)");
  waiting_.push_back(std::move(seq));
}

bool Scheduler::ReserveDecode(Sequence* seq, std::vector<ScheduledChunk>& batch, int64_t& budget) {
  while (seq->table.num_tokens() < seq->num_tokens()) {
    if (blocks_->Append(seq->table, seq->num_tokens() - seq->table.num_tokens()).ok()) break;
    const size_t victim = PickVictim();
    const bool self = running_[victim].get() == seq;
    Preempt(victim, batch, budget);
    if (self) return false;
  }
  return true;
}

void Scheduler::AdmitWaiting(std::vector<ScheduledChunk>& batch, int64_t& budget) {
  // Passed over at most max_running times a step, as many as it may admit: each pass
  // scans the queue, so a crowd of copies of one prompt costs no more than admissions.
  int passes = 0;
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < config_.max_running) {
    const std::optional<size_t> next = NextWaiting();
    if (!next) break;
    const size_t index = *next;
    Sequence& seq = *waiting_[index];
    if (AwaitsSharedPrefill(seq)) {
      seq.passed_over_step = steps_;
      if (++passes >= config_.max_running) break;
      continue;
    }
    const std::string& salt = seq.request.cache_salt;
    // Strict order: when the best candidate does not fit, nobody behind it jumps ahead,
    // so a long request is never starved by a stream of short ones.
    // Prompt logprobs need the logits of every prompt position: no prefix-cache hits then
    // (matching one token can never hit, the last token always being computed).
    std::span<const int32_t> match(seq.tokens);
    if (seq.request.prompt_logprobs >= 0 && seq.prompt_logprobs_upto < seq.prompt_len() - 1) {
      match = match.first(1);
    }
    // All or nothing: a refusal leaves the table and the pool unchanged.
    absl::StatusOr<int64_t> cached = blocks_->Allocate(seq.table, match, seq.num_tokens(), salt);
    if (!cached.ok()) break;
    seq.num_computed = *cached;
    if (!seq.admitted_once) {
      seq.admitted_once = true;
      seq.cached_prompt_tokens = *cached;
      seq.prompt_logprobs_upto = std::max<int64_t>(seq.prompt_logprobs_upto, 0);
      seq.scheduled = absl::Now();
    }
    seq.admitted_order = ++next_admission_;
    seq.chunk = std::min(seq.uncomputed(), budget);
    budget -= seq.chunk;
    batch.push_back({&seq, seq.chunk});
    running_.push_back(std::move(waiting_[index]));
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(index));
  }
}

std::vector<ScheduledChunk> Scheduler::Schedule() {
  ++steps_;
  for (auto& seq : waiting_) ++seq->waited_steps;
  std::vector<ScheduledChunk> batch;
  int64_t budget = config_.max_batch_tokens;
  // Oldest admissions first, so that under pressure the newest give way.
  std::vector<Sequence*> order;
  for (auto& seq : running_) order.push_back(seq.get());
  std::sort(order.begin(), order.end(), [](const Sequence* a, const Sequence* b) {
    return a->admitted_order < b->admitted_order;
  });
  // (1) Decodes, then (2) prefill chunks of admitted sequences.
  for (bool decode : {true, false}) {
    for (Sequence* seq : order) {
      if (budget <= 0) break;
      if (seq->prefilling() == decode || seq->uncomputed() == 0) continue;
      const bool still_running = std::any_of(running_.begin(), running_.end(),
                                             [&](const auto& r) { return r.get() == seq; });
      if (!still_running) continue;  // Preempted by an earlier decode this step.
      if (decode && !ReserveDecode(seq, batch, budget)) continue;
      seq->chunk = decode ? 1 : std::min(seq->uncomputed(), budget);
      budget -= seq->chunk;
      batch.push_back({seq, seq->chunk});
    }
  }
  // (3) Admission.
  AdmitWaiting(batch, budget);
  return batch;
}

std::unique_ptr<Sequence> Scheduler::Extract(const std::string& request_id) {
  for (auto* list : {&waiting_, &running_}) {
    for (auto it = list->begin(); it != list->end(); ++it) {
      if ((*it)->request.request_id != request_id) continue;
      std::unique_ptr<Sequence> seq = std::move(*it);
      list->erase(it);
      if (absl::Status s = blocks_->Release(seq->table); !s.ok()) {
        LogError("releasing ", LogQuoted(request_id), ": ", s.message());
      }
      return seq;
    }
  }
  return nullptr;
}

std::vector<std::unique_ptr<Sequence>> Scheduler::TakeDone() {
  std::vector<std::unique_ptr<Sequence>> done;
  for (auto* list : {&running_, &waiting_}) {
    for (auto it = list->begin(); it != list->end();) {
      if ((*it)->done) {
        if (absl::Status s = blocks_->Release((*it)->table); !s.ok()) {
          LogError("releasing ", LogQuoted((*it)->request.request_id), ": ", s.message());
        }
        done.push_back(std::move(*it));
        it = list->erase(it);
      } else {
        ++it;
      }
    }
  }
  return done;
}

}  // namespace mla
