#include "server/proto_convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mla {

void FillModelInfo(const EngineInfo& info, const TextSupport& text, v1::ModelInfo* out) {
  const ModelConfig& c = info.config;
  out->set_model_name(info.model_name);
  out->set_architecture(c.architecture);
  out->set_model_type(c.model_type);
  out->set_hidden_size(c.hidden_size);
  out->set_num_hidden_layers(c.num_hidden_layers);
  out->set_num_attention_heads(c.num_attention_heads);
  out->set_q_lora_rank(c.q_lora_rank);
  out->set_kv_lora_rank(c.kv_lora_rank);
  out->set_qk_nope_head_dim(c.qk_nope_head_dim);
  out->set_qk_rope_head_dim(c.qk_rope_head_dim);
  out->set_v_head_dim(c.v_head_dim);
  out->set_vocab_size(c.vocab_size);
  out->set_max_context(static_cast<int32_t>(info.max_context));
  out->set_weight_dtype(info.weight_dtype);
  out->set_device(info.device);
  out->set_kv_block_size(info.kv_block_size);
  out->set_kv_num_blocks(info.kv_num_blocks);
  out->set_kv_cache_dtype(info.cache_dtype);
  out->set_indexer_key_dtype(info.index_key_dtype);
  out->set_kv_bytes_per_token(info.kv_bytes_per_token);
  out->set_mha_bytes_per_token(info.mha_bytes_per_token);
  out->set_n_routed_experts(c.n_routed_experts);
  out->set_num_experts_per_tok(c.num_experts_per_tok);
  out->set_n_shared_experts(c.n_shared_experts);
  out->set_has_tokenizer(text.tokenizer() != nullptr);
  out->set_has_chat_template(text.has_chat_template());
}

}  // namespace mla

namespace mla {
namespace {

constexpr size_t kMaxRequestIdBytes = 128;
constexpr size_t kMaxCacheSaltBytes = 256;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

void FillLogprobs(const TokenLogprobs& in, v1::TokenLogprob* out) {
  out->set_token_id(in.token_id);
  out->set_logprob(in.logprob);
  for (const TokenLogprob& t : in.top) {
    out->add_top_token_ids(t.token_id);
    out->add_top_logprobs(t.logprob);
  }
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStopSequence:
      return v1::FINISH_REASON_STOP_SEQUENCE;
    case FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

absl::Status ValidateStopStrings(const v1::SamplingParams& s, const TextSupport& text) {
  if (s.stop().empty()) return absl::OkStatus();
  if (s.stop_size() > kMaxStopStrings) {
    return Invalid("sampling.stop", absl::StrCat("at most ", kMaxStopStrings, " strings"));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    const std::string field = absl::StrCat("sampling.stop[", i, "]");
    if (s.stop(i).empty()) return Invalid(field, "must not be empty");
    if (s.stop(i).size() > kMaxStopStringBytes) {
      return Invalid(field, absl::StrCat("longer than ", kMaxStopStringBytes, " bytes"));
    }
  }
  if (text.tokenizer() == nullptr) return TextSupport::NoTokenizer("sampling.stop");
  return absl::OkStatus();
}

}  // namespace

void FillLoad(const EngineLoad& load, v1::Load* out) {
  out->set_num_requests_running(load.running);
  out->set_num_requests_waiting(load.waiting);
  out->set_kv_blocks_total(load.cache.blocks_total);
  out->set_kv_blocks_used(load.cache.blocks_used);
  out->set_kv_blocks_free(load.cache.blocks_free);
  out->set_kv_bytes_total(load.cache.bytes_total);
  out->set_kv_bytes_used(load.cache.bytes_used);
  out->set_kv_blocks_cached_free(load.cache.blocks_cached_free);
  out->set_kv_cache_dtype(load.cache_dtype);
  out->set_kv_bytes_per_token(load.kv_bytes_per_token);
  out->set_kv_disk_enabled(load.disk_enabled);
  out->set_kv_disk_blocks(load.disk.blocks);
  out->set_kv_disk_bytes(load.disk.bytes);
  out->set_kv_disk_hit_tokens(load.disk_hit_tokens);
  out->set_kv_disk_write_failures(load.disk.write_failures);
  out->set_kv_disk_corrupt_skipped(load.disk.corrupt_skipped);
}

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const TextSupport& text) {
  GenerationRequest r;
  if (request.request_id().size() > kMaxRequestIdBytes) {
    return Invalid("request_id", absl::StrCat("longer than ", kMaxRequestIdBytes, " bytes"));
  }
  if (request.cache_salt().size() > kMaxCacheSaltBytes) {
    return Invalid("cache_salt", absl::StrCat("longer than ", kMaxCacheSaltBytes, " bytes"));
  }
  r.request_id = request.request_id();
  r.cache_salt = request.cache_salt();
  r.attention_stats = request.attention_stats();
  if (request.has_indexer_watch()) {
    const v1::PositionRange& w = request.indexer_watch();
    if (w.begin() < 0 || w.end() < w.begin()) {
      return Invalid("indexer_watch", absl::StrCat("must satisfy 0 <= begin <= end, got [",
                                                   w.begin(), ", ", w.end(), ")"));
    }
    r.indexer_watch_begin = w.begin();
    r.indexer_watch_end = w.end();
  }
  r.priority = request.priority();
  MLA_ASSIGN_OR_RETURN(r.prompt, text.PromptIds(request));
  const v1::SamplingParams& s = request.sampling();
  r.sampling.temperature = s.temperature();
  r.sampling.top_k = s.top_k();
  r.sampling.top_p = s.top_p() == 0.0f ? 1.0f : s.top_p();
  r.sampling.min_p = s.min_p();
  r.sampling.seed = s.seed();
  r.sampling.presence_penalty = s.presence_penalty();
  r.sampling.frequency_penalty = s.frequency_penalty();
  r.sampling.repetition_penalty = s.repetition_penalty() == 0.0f ? 1.0f : s.repetition_penalty();
  // Sorted by id: the map's order is unspecified, and the request should not depend on it.
  r.sampling.logit_bias.assign(s.logit_bias().begin(), s.logit_bias().end());
  std::sort(r.sampling.logit_bias.begin(), r.sampling.logit_bias.end());
  r.sampling.min_tokens = s.min_tokens();
  r.has_seed = s.has_seed();
  if (s.max_tokens() < 0) return Invalid("sampling.max_tokens", "must be >= 0");
  r.max_tokens = s.max_tokens();
  MLA_RETURN_IF_ERROR(ValidateStopStrings(s, text));
  r.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  r.ignore_eos = s.ignore_eos();
  r.logprobs = request.logprobs();
  r.prompt_logprobs = request.has_prompt_logprobs() ? request.prompt_logprobs() : -1;
  return r;
}

v1::GenerateResponse ToGenerateResponse(const GenerationOutput& o) {
  v1::GenerateResponse m;
  m.set_request_id(o.request_id);
  for (int32_t t : o.tokens) m.add_token_ids(t);
  for (const TokenLogprobs& l : o.logprobs) FillLogprobs(l, m.add_logprobs());
  for (const TokenLogprobs& l : o.prompt_logprobs) FillLogprobs(l, m.add_prompt_logprobs());
  if (o.finished) {
    v1::Finished* f = m.mutable_finished();
    f->set_reason(ToProto(o.reason));
    f->mutable_usage()->set_prompt_tokens(o.prompt_tokens);
    f->mutable_usage()->set_cached_prompt_tokens(o.cached_prompt_tokens);
    f->mutable_usage()->set_completion_tokens(o.completion_tokens);
    f->mutable_timings()->set_queue_seconds(o.queue_seconds);
    f->mutable_timings()->set_time_to_first_token_seconds(o.time_to_first_token_seconds);
    f->mutable_timings()->set_total_seconds(o.total_seconds);
    for (const AttentionSharpness& a : o.attention_stats) {
      v1::AttentionStat* stat = f->add_attention_stats();
      stat->set_layer(a.layer);
      stat->set_context_tokens(a.context_tokens);
      stat->set_entropy(static_cast<float>(a.entropy));
      stat->set_max_weight(static_cast<float>(a.max_weight));
    }
    for (const LayerIndexerRecall& r : o.indexer_recall) {
      v1::IndexerRecall* rec = f->add_indexer_recall();
      rec->set_layer(r.layer);
      rec->set_selected(r.selected);
      rec->set_watched(r.watched);
    }
  }
  return m;
}

}  // namespace mla
