// The engine loop's step: admission, batch building, the forward pass, sampling and
// streaming. Runs on the loop thread only.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/common/log.h"
#include "engine/engine.h"
#include "engine/sampling/sampler.h"
#include "engine/sequence.h"

namespace mla {
namespace {

double Seconds(absl::Time from, absl::Time to) {
  return (from == absl::InfiniteFuture() || to == absl::InfiniteFuture())
             ? 0.0
             : absl::ToDoubleSeconds(to - from);
}

TokenLogprobs MakeLogprobs(std::span<const float> logits, int32_t token, int top_n) {
  std::vector<float> lp = LogSoftmax(logits);
  TokenLogprobs out;
  out.token_id = token;
  out.logprob = lp[token];
  out.top = TopN(lp, top_n);
  return out;
}

bool Contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

void Engine::ApplyAborts() {
  std::vector<std::unique_ptr<Sequence>> aborted_waiting;
  std::vector<Sequence*> aborted_running;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (live_[(*it)->request.request_id]) {
        aborted_waiting.push_back(std::move(*it));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& seq : running_) {
      if (live_[seq->request.request_id]) aborted_running.push_back(seq.get());
    }
  }
  for (auto& seq : aborted_waiting) Finish(*seq, FinishReason::kAbort);
  for (Sequence* seq : aborted_running) Finish(*seq, FinishReason::kAbort);
}

void Engine::AdmitWaiting() {
  absl::MutexLock lock(&mu_);
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running) {
    Sequence& seq = *waiting_.front();
    // Reserve blocks for the whole generation so that a running sequence never runs out
    // of cache mid-stream (preemption replaces this reservation later).
    const int64_t need = seq.table.BlocksNeeded(seq.max_total);
    if (!blocks_.CanAllocate(need)) break;  // FIFO: wait for blocks to come back.
    if (absl::Status s = seq.table.Append(seq.max_total, blocks_); !s.ok()) break;
    seq.scheduled = absl::Now();
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  running_count_.store(static_cast<int32_t>(running_.size()));
  blocks_used_.store(blocks_.num_used());
}

bool Engine::Step() {
  ApplyAborts();
  AdmitWaiting();
  if (running_.empty()) return false;
  // Decodes first (one token each), then prefill chunks within the token budget, so
  // that a long prompt is prefilled in pieces between the other sequences' decodes.
  int64_t budget = options_.max_batch_tokens;
  std::vector<Sequence*> batch;
  for (auto& seq : running_) {
    if (seq->prefilling()) continue;
    seq->chunk = 1;
    budget -= 1;
    batch.push_back(seq.get());
  }
  for (auto& seq : running_) {
    if (!seq->prefilling() || budget <= 0) continue;
    seq->chunk = std::min(seq->prompt_len() - seq->num_computed, budget);
    budget -= seq->chunk;
    batch.push_back(seq.get());
  }
  std::vector<SequenceChunk> chunks;
  for (Sequence* seq : batch) {
    SequenceChunk c;
    c.tokens = std::span<const int32_t>(seq->tokens.data() + seq->num_computed, seq->chunk);
    c.start_pos = seq->num_computed;
    c.table = &seq->table;
    c.all_logits = seq->prefilling() && seq->request.prompt_logprobs >= 0;
    chunks.push_back(c);
  }
  absl::StatusOr<std::vector<float>> logits = model_->Forward(chunks, cache_);
  if (!logits.ok()) {
    LogError("forward step failed: ", logits.status().message());
    for (Sequence* seq : batch) Finish(*seq, FinishReason::kAbort, std::string(logits.status().message()));
  } else {
    ProcessStep(batch, *logits);
  }
  PublishLoad();
  return true;
}

void Engine::ProcessStep(std::vector<Sequence*>& batch, const std::vector<float>& logits) {
  const int vocab = info_.config.vocab_size;
  int64_t row = 0;
  for (Sequence* seq : batch) {
    const bool all = seq->prefilling() && seq->request.prompt_logprobs >= 0;
    const int64_t rows = all ? seq->chunk : 1;
    if (all) {
      // Row j predicts the token after position num_computed + j.
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t next = seq->num_computed + j + 1;
        if (next >= seq->prompt_len()) break;
        seq->prompt_logprobs.push_back(
            MakeLogprobs(std::span<const float>(logits.data() + (row + j) * vocab, vocab),
                         seq->tokens[next], seq->request.prompt_logprobs));
      }
    }
    seq->num_computed += seq->chunk;
    const std::span<const float> last(logits.data() + (row + rows - 1) * vocab, vocab);
    row += rows;
    if (seq->prefilling()) continue;
    absl::StatusOr<int32_t> token = Sample(last, seq->request.sampling, seq->rng);
    if (!token.ok()) {
      Finish(*seq, FinishReason::kAbort, std::string(token.status().message()));
      continue;
    }
    if (seq->first_token == absl::InfiniteFuture()) seq->first_token = absl::Now();
    seq->tokens.push_back(*token);
    GenerationOutput out;
    out.request_id = seq->request.request_id;
    out.tokens.push_back(*token);
    if (seq->request.logprobs > 0) {
      out.logprobs.push_back(MakeLogprobs(last, *token, seq->request.logprobs));
    }
    FinishReason reason = FinishReason::kNone;
    if (!seq->request.ignore_eos && Contains(info_.config.eos_token_ids, *token)) {
      reason = FinishReason::kStop;
    } else if (Contains(seq->request.stop_token_ids, *token)) {
      reason = FinishReason::kStop;
    } else if (static_cast<int64_t>(seq->tokens.size()) >= seq->max_total) {
      reason = FinishReason::kLength;
    }
    if (reason != FinishReason::kNone) {
      Finish(*seq, reason, "", std::move(out));
    } else {
      if (!seq->first_output_sent) out.prompt_logprobs = std::move(seq->prompt_logprobs);
      seq->first_output_sent = true;
      seq->on_output(std::move(out));
    }
  }
  // Drop the finished sequences (Finish released their blocks).
  std::erase_if(running_, [](const std::unique_ptr<Sequence>& s) { return s->done; });
}

void Engine::Finish(Sequence& seq, FinishReason reason, std::string error,
                    GenerationOutput out) {
  if (seq.done) return;
  seq.done = true;
  const absl::Time now = absl::Now();
  out.request_id = seq.request.request_id;
  out.finished = true;
  out.reason = reason;
  out.error = std::move(error);
  if (!seq.first_output_sent) out.prompt_logprobs = std::move(seq.prompt_logprobs);
  out.prompt_tokens = static_cast<int32_t>(seq.prompt_len());
  out.completion_tokens = static_cast<int32_t>(std::max<int64_t>(seq.generated(), 0));
  out.queue_seconds = Seconds(seq.arrival, seq.scheduled == absl::InfiniteFuture() ? now : seq.scheduled);
  out.time_to_first_token_seconds = Seconds(seq.arrival, seq.first_token);
  out.total_seconds = Seconds(seq.arrival, now);
  if (absl::Status s = seq.table.Release(blocks_); !s.ok()) {
    LogError("releasing the blocks of ", seq.request.request_id, ": ", s.message());
  }
  // Published before the callback, so that a caller who saw the end sees the blocks back.
  blocks_used_.store(blocks_.num_used());
  {
    absl::MutexLock lock(&mu_);
    live_.erase(seq.request.request_id);
  }
  seq.on_output(std::move(out));
}

void Engine::PublishLoad() {
  std::erase_if(running_, [](const std::unique_ptr<Sequence>& s) { return s->done; });
  running_count_.store(static_cast<int32_t>(running_.size()));
  blocks_used_.store(blocks_.num_used());
}

}  // namespace mla
