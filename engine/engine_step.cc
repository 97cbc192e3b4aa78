// The engine loop's step: hand new requests to the scheduler, apply aborts, run the
// scheduled batch through the model, sample and stream. Runs on the loop thread only.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/common/log.h"
#include "engine/engine.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/sequence.h"

namespace mla {
namespace {

double Seconds(absl::Time from, absl::Time to) {
  return (from == absl::InfiniteFuture() || to == absl::InfiniteFuture())
             ? 0.0
             : absl::ToDoubleSeconds(to - from);
}

bool Contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Wants logits for every token of the chunk: prompt logprobs of positions not yet scored.
bool WantsAllLogits(const Sequence& seq) {
  return seq.request.prompt_logprobs >= 0 && seq.prompt_logprobs_upto < seq.prompt_len() - 1;
}

}  // namespace

CacheStats Engine::CacheStatsNow() const {
  CacheStats stats = blocks_.stats();
  stats.preemptions = scheduler_.num_preemptions();
  return stats;
}

void Engine::TakeIncoming() {
  std::deque<std::unique_ptr<Sequence>> incoming;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(incoming_);
  }
  for (auto& seq : incoming) {
    LoadFromDiskTier(*seq);
    scheduler_.Add(std::move(seq));
  }
}

void Engine::ApplyAborts() {
  std::vector<std::pair<std::string, FinishReason>> aborts;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, live] : live_) {
      if (live.abort != FinishReason::kNone) aborts.emplace_back(id, live.abort);
    }
  }
  for (const auto& [id, reason] : aborts) {
    std::unique_ptr<Sequence> seq = scheduler_.Extract(id);
    if (seq) Finish(*seq, reason);
  }
}

void Engine::PublishQueueCounts() {
  absl::MutexLock lock(&mu_);
  PublishQueueCountsLocked();
}

void Engine::PublishQueueCountsLocked() {
  load_.running = scheduler_.num_running();
  load_.waiting = scheduler_.num_waiting() + static_cast<int32_t>(incoming_.size());
}

void Engine::Step() {
  const absl::Time start = absl::Now();
  TakeIncoming();
  ApplyAborts();
  std::vector<ScheduledChunk> batch = scheduler_.Schedule();
  PublishQueueCounts();
  StepStats step;
  for (const ScheduledChunk& c : batch) {
    (c.seq->prefilling() ? step.prefill_tokens : step.decode_tokens) += c.num_tokens;
  }
  step.num_sequences = static_cast<int>(batch.size());
  if (!batch.empty()) {
    std::vector<RowOwner> owners;
    const StepInput input = MakeStepInput(batch, owners);
    absl::StatusOr<StepOutput> output = runner_->Execute(input);
    if (!output.ok()) {
      LogError("forward step failed: ", output.status().message());
      for (const ScheduledChunk& c : batch) {
        Finish(*c.seq, FinishReason::kAbort, std::string(output.status().message()));
      }
    } else {
      RecordAttentionProbes(batch, output->probes);
      RecordIndexerRecall(batch, output->indexer_recall);
      UpdateFromOutput(batch, owners, *output);
    }
  }
  scheduler_.TakeDone();
  if (options_.observer != nullptr && !batch.empty()) {
    step.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    options_.observer->OnStep(step);
  }
  absl::MutexLock lock(&mu_);
  PublishQueueCountsLocked();
  load_.cache = CacheStatsNow();
  load_.workspace_bytes = runner_->workspace_bytes();
  load_.attention_probed_rows = runner_->probed_rows();
  if (disk_tier_) {
    load_.disk = disk_tier_->stats();
    load_.disk_enabled = !load_.disk.disabled;
    load_.disk_hit_tokens = disk_hit_tokens_.load(std::memory_order_relaxed);
  }
  idle_ = scheduler_.empty();
}

StepInput Engine::MakeStepInput(const std::vector<ScheduledChunk>& batch,
                                std::vector<RowOwner>& owners) {
  // Telemetry off costs this one comparison per step.
  const bool sampled =
      options_.attention_probe_every > 0 && steps_++ % options_.attention_probe_every == 0;
  int sampled_rows = 0;
  StepInput input;
  int64_t row = 0;  // First logits row of the current chunk.
  for (size_t i = 0; i < batch.size(); ++i) {
    Sequence& seq = *batch[i].seq;
    const int64_t n = batch[i].num_tokens;
    const bool all = WantsAllLogits(seq);
    SequenceChunk chunk{std::span<const int32_t>(seq.tokens.data() + seq.num_computed, n),
                        seq.num_computed, &seq.table, all};
    const bool produces_token = n == seq.uncomputed();
    // Only a row that produces a token is probed: a decode row or a prompt's last one.
    if (produces_token && seq.generated() <= 0) {  // The prompt's last row.
      chunk.watch_begin = seq.request.indexer_watch_begin;
      chunk.watch_end = seq.request.indexer_watch_end;
    }
    if (produces_token) {
      if (seq.request.attention_stats) {
        chunk.probe_attention = true;
      } else if (sampled && sampled_rows < options_.attention_probe_max_rows) {
        chunk.probe_attention = true;
        ++sampled_rows;
      }
    }
    input.chunks.push_back(chunk);
    if (n == 0) continue;
    const int64_t rows = all ? n : 1;
    if (all) {
      // Row j predicts the token after position num_computed + j.
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t next = seq.num_computed + j + 1;
        if (next >= seq.prompt_len()) break;
        if (next <= seq.prompt_logprobs_upto) continue;  // Scored before a preemption.
        RowSampling r;
        r.row = row + j;
        r.score_token = seq.tokens[next];
        r.top_logprobs = seq.request.prompt_logprobs;
        input.rows.push_back(r);
        owners.push_back({i, next});
      }
    }
    if (produces_token) {
      RowSampling r;
      r.row = row + rows - 1;
      r.params = &seq.request.sampling;
      r.rng = &seq.rng;
      r.history = &seq.history;
      r.top_logprobs = seq.request.logprobs > 0 ? seq.request.logprobs : -1;
      input.rows.push_back(r);
      owners.push_back({i, -1});
    }
    row += rows;
  }
  return input;
}

void Engine::RecordAttentionProbes(const std::vector<ScheduledChunk>& batch,
                                   const std::vector<ChunkAttentionProbe>& probes) {
  for (const ChunkAttentionProbe& p : probes) {
    if (options_.observer != nullptr) options_.observer->OnAttentionProbe(p.sharpness);
    Sequence& seq = *batch[p.chunk].seq;
    if (seq.request.attention_stats && seq.attention_stats.size() < kMaxAttentionStats) {
      seq.attention_stats.push_back(p.sharpness);
    }
  }
}

void Engine::RecordIndexerRecall(const std::vector<ScheduledChunk>& batch,
                                 const std::vector<ChunkIndexerRecall>& recall) {
  for (const ChunkIndexerRecall& r : recall) {
    batch[r.chunk].seq->indexer_recall.push_back({r.layer, r.selected, r.watched});
  }
}

void Engine::UpdateFromOutput(const std::vector<ScheduledChunk>& batch,
                              const std::vector<RowOwner>& owners, const StepOutput& output) {
  size_t k = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Sequence& seq = *batch[i].seq;
    for (; k < owners.size() && owners[k].chunk == i && owners[k].prompt_pos >= 0; ++k) {
      seq.prompt_logprobs.push_back(output.samples[k].logprobs);
      seq.prompt_logprobs_upto = owners[k].prompt_pos;
    }
    seq.num_computed += batch[i].num_tokens;
    committed_.clear();
    blocks_.CommitFullBlocks(seq.table, seq.tokens, seq.num_computed, seq.request.cache_salt,
                             disk_tier_ ? &committed_ : nullptr);
    SaveToDiskTier(seq, committed_);
    if (k < owners.size() && owners[k].chunk == i) EmitToken(seq, output.samples[k++]);
  }
}

void Engine::EmitToken(Sequence& seq, const RowSample& sample) {
  if (!sample.status.ok()) {
    Finish(seq, FinishReason::kAbort, std::string(sample.status.message()));
    return;
  }
  const int32_t token = sample.token;
  const absl::Time now = absl::Now();
  if (seq.first_token == absl::InfiniteFuture()) {
    seq.first_token = now;
  } else if (options_.observer != nullptr) {
    options_.observer->OnInterTokenLatency(absl::ToDoubleSeconds(now - seq.last_token));
  }
  seq.last_token = now;
  seq.tokens.push_back(token);
  if (seq.request.sampling.adjusts_logits()) seq.history.AddOutput(token);
  GenerationOutput out;
  out.request_id = seq.request.request_id;
  out.serial = seq.serial;
  out.tokens.push_back(token);
  if (seq.request.logprobs > 0) out.logprobs.push_back(sample.logprobs);
  FinishReason reason = FinishReason::kNone;
  if (!seq.request.ignore_eos && Contains(info_.config.eos_token_ids, token)) {
    reason = FinishReason::kStop;
  } else if (Contains(seq.request.stop_token_ids, token)) {
    reason = FinishReason::kStop;
  } else if (seq.num_tokens() >= seq.max_total) {
    reason = FinishReason::kLength;
  }
  if (reason != FinishReason::kNone) {
    Finish(seq, reason, "", std::move(out));
    return;
  }
  if (!seq.first_output_sent) out.prompt_logprobs = std::move(seq.prompt_logprobs);
  seq.first_output_sent = true;
  seq.on_output(std::move(out));
}

void Engine::Finish(Sequence& seq, FinishReason reason, std::string error, GenerationOutput out) {
  if (seq.done) return;
  seq.done = true;
  const absl::Time now = absl::Now();
  out.request_id = seq.request.request_id;
  out.serial = seq.serial;
  out.finished = true;
  out.reason = reason;
  out.error = std::move(error);
  if (!seq.first_output_sent) out.prompt_logprobs = std::move(seq.prompt_logprobs);
  out.attention_stats = std::move(seq.attention_stats);
  out.indexer_recall = std::move(seq.indexer_recall);
  out.prompt_tokens = static_cast<int32_t>(seq.prompt_len());
  out.cached_prompt_tokens = static_cast<int32_t>(seq.cached_prompt_tokens);
  out.completion_tokens = static_cast<int32_t>(std::max<int64_t>(seq.generated(), 0));
  out.queue_seconds = Seconds(seq.arrival, std::min(seq.scheduled, now));
  out.time_to_first_token_seconds = Seconds(seq.arrival, seq.first_token);
  out.total_seconds = Seconds(seq.arrival, now);
  if (absl::Status s = blocks_.Release(seq.table); !s.ok()) {
    LogError("releasing the blocks of ", LogQuoted(seq.request.request_id), ": ", s.message());
  }
  if (options_.observer != nullptr) {
    RequestStats r;
    r.request_id = seq.request.request_id;
    r.api = seq.request.api;
    r.reason = reason;
    r.failed = !out.error.empty();
    r.prompt_tokens = out.prompt_tokens;
    r.cached_prompt_tokens = out.cached_prompt_tokens;
    r.completion_tokens = out.completion_tokens;
    r.preemptions = seq.preemptions;
    r.queue_seconds = out.queue_seconds;
    r.ttft_seconds = out.time_to_first_token_seconds;
    r.prefill_seconds = Seconds(seq.scheduled, seq.first_token);
    r.decode_seconds = Seconds(seq.first_token, now);
    r.e2e_seconds = out.total_seconds;
    options_.observer->OnRequestFinished(r);
  }
  {
    // Published before the callback, so that a caller who saw the end sees the blocks back.
    absl::MutexLock lock(&mu_);
    live_.erase(seq.request.request_id);
    load_.cache = CacheStatsNow();
  }
  seq.on_output(std::move(out));
}

}  // namespace mla
