#include "engine/engine.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "engine/common/log.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/sequence.h"

namespace mla {
namespace {

constexpr int kMaxLogprobs = 20;

std::string WeightDtypeName(const ModelWeights& w) {
  return w.dtype == DType::kBF16 ? "bf16" : "f32";
}

// The model directory's tokenizer, or null when it has no tokenizer.json(.xz). Token ids
// the tokenizer knows must be valid model ids: a larger tokenizer vocabulary would let
// text prompts index past the embedding table.
absl::StatusOr<std::unique_ptr<const Tokenizer>> LoadModelTokenizer(const std::string& dir,
                                                                    int64_t vocab_size) {
  namespace fs = std::filesystem;
  std::string json = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::exists(json)) json += ".xz";
  if (!fs::exists(json)) {
    LogInfo("no tokenizer.json in ", dir, ": serving token ids only");
    return std::unique_ptr<const Tokenizer>();
  }
  const std::string config = (fs::path(dir) / "tokenizer_config.json").string();
  MLA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                       Tokenizer::Load(json, fs::exists(config) ? config : ""));
  if (tokenizer->vocab_size() > vocab_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        json, " has ", tokenizer->vocab_size(), " token ids (up to ", tokenizer->vocab_size() - 1,
        ") but the model's vocab_size (config.json) is ", vocab_size));
  }
  LogInfo("tokenizer: ", json, " (", tokenizer->vocab_size(), " tokens)");
  return std::unique_ptr<const Tokenizer>(std::move(tokenizer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  RunnerOptions ro;
  ro.model_dir = options.model_dir;
  ro.device = options.device;
  ro.threads = options.threads;
  ro.kv_cache_bytes = options.kv_cache_bytes;
  ro.block_size = options.block_size;
  ro.cache_dtype = options.cache_dtype;
  ro.index_key_dtype = options.index_key_dtype;
  ro.device_memory_fraction = options.device_memory_fraction;
  ro.device_cache_cap_bytes = options.device_cache_cap_bytes;
  ro.max_batch_tokens = options.max_batch_tokens;
  ro.max_batch_seqs = options.max_running;
  MLA_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(ro));
  if (options.warmup) {
    const absl::Time start = absl::Now();
    absl::StatusOr<int64_t> rows = runner->Warmup(options.max_batch_tokens, options.max_running);
    if (!rows.ok()) {
      return absl::Status(rows.status().code(),
                          absl::StrCat("warm-up step: ", rows.status().message()));
    }
    LogInfo("warm-up: a prefill step of ", *rows, " tokens and a decode step in ",
            absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))),
            "; workspace ", runner->workspace_bytes() >> 20, " MiB");
  }
  const ModelConfig& c = runner->config();
  MLA_ASSIGN_OR_RETURN(std::unique_ptr<const Tokenizer> tokenizer,
                       LoadModelTokenizer(options.model_dir, c.vocab_size));
  const CacheLayout& layout = runner->cache_layout();
  EngineInfo info;
  info.config = c;
  info.model_name = std::filesystem::path(options.model_dir).lexically_normal().filename().string();
  if (info.model_name.empty()) {
    info.model_name = std::filesystem::path(options.model_dir)
                          .lexically_normal()
                          .parent_path()
                          .filename()
                          .string();
  }
  info.device = runner->device();
  info.weight_dtype = WeightDtypeName(runner->weights());
  info.weight_bytes = runner->weight_bytes();
  info.cache_dtype = CacheDTypeName(layout.dtype());
  if (layout.index_key_dim() > 0) {
    info.index_key_dtype = CacheDTypeName(layout.index_dtype());
  } else if (options.index_key_dtype.has_value()) {
    LogWarning("--indexer_key_dtype has no effect: ", c.architecture,
               " has no DeepSeek-V3.2 lightning indexer");
  }
  info.kv_block_size = layout.block_size();
  info.kv_num_blocks = runner->num_cache_blocks();
  info.kv_bytes_per_token = layout.bytes_per_token();
  info.mha_bytes_per_token =
      EquivalentMhaBytesPerToken({c.num_hidden_layers, c.num_attention_heads, c.qk_nope_head_dim,
                                  c.qk_rope_head_dim, c.v_head_dim, 2});
  info.max_context = std::min<int64_t>(c.max_position_embeddings,
                                       int64_t{info.kv_num_blocks} * layout.block_size());
  LogInfo("KV cache: ", info.kv_num_blocks, " blocks of ", layout.block_size(), " tokens, ",
          layout.bytes_per_token(), " bytes/token",
          layout.index_key_dim() > 0
              ? absl::StrCat(" with ", CacheDTypeName(layout.index_dtype()), " indexer keys")
              : std::string(),
          " (MHA would need ", info.mha_bytes_per_token, "), ",
          (int64_t{info.kv_num_blocks} * layout.bytes_per_block()) >> 20, " MiB");
  auto engine = std::unique_ptr<Engine>(new Engine(options, std::move(runner), std::move(info)));
  engine->tokenizer_ = std::move(tokenizer);
  return engine;
}

Engine::Engine(const EngineOptions& options, std::unique_ptr<ModelRunner> runner, EngineInfo info)
    : options_(options),
      runner_(std::move(runner)),
      info_(std::move(info)),
      blocks_(BlockManagerConfig{runner_->num_cache_blocks(), runner_->cache_layout().block_size(),
                                 runner_->cache_layout().bytes_per_block(),
                                 options.enable_prefix_caching}),
      scheduler_({options.max_batch_tokens, options.max_running, options.starvation_steps},
                 &blocks_) {
  OpenDiskTier();
  {
    absl::MutexLock lock(&mu_);
    load_.cache = blocks_.stats();
    load_.workspace_bytes = runner_->workspace_bytes();  // The warm-up's, if it ran.
    load_.cache_dtype = info_.cache_dtype;
    load_.kv_bytes_per_token = info_.kv_bytes_per_token;
  }
  loop_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  loop_.join();
  // The loop has exited: finish whatever is left so every caller sees an end.
  TakeIncoming();
  std::vector<std::string> ids;
  for (const auto* list : {&scheduler_.running(), &scheduler_.waiting()}) {
    for (const auto& seq : *list) ids.push_back(seq->request.request_id);
  }
  for (const std::string& id : ids) {
    std::unique_ptr<Sequence> seq = scheduler_.Extract(id);
    if (seq) Finish(*seq, FinishReason::kAbort, "the engine is shutting down");
  }
}

absl::Status Engine::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = info_.config;
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids.ids[", i, "]: ", r.prompt[i],
                                                     " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
  }
  if (absl::Status s = ValidateSamplingParams(r.sampling); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.", s.message()));
  }
  if (r.max_tokens < 0) return absl::InvalidArgumentError("sampling.max_tokens: must be >= 0");
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + std::max(r.max_tokens, 1);
  if (total > c.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", r.prompt.size(), " tokens) + max_tokens (", std::max(r.max_tokens, 1),
        ") exceeds the model's context of ", c.max_position_embeddings, " tokens"));
  }
  const int64_t capacity = int64_t{info_.kv_num_blocks} * info_.kv_block_size;
  if (total > capacity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt (", r.prompt.size(), " tokens) + max_tokens (", std::max(r.max_tokens, 1),
        ") can never fit in the KV cache of ", capacity, " tokens (", info_.kv_num_blocks,
        " blocks of ", info_.kv_block_size, "); raise --kv_cache_mib"));
  }
  if (r.logprobs < 0 || r.logprobs > kMaxLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs: must be in [0, ", kMaxLogprobs, "]"));
  }
  if (r.prompt_logprobs < -1 || r.prompt_logprobs > kMaxLogprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt_logprobs: must be -1 (off) or in [0, ", kMaxLogprobs, "]"));
  }
  for (int32_t t : r.stop_token_ids) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop_token_ids: ", t, " is outside the vocabulary"));
    }
  }
  if (r.max_tokens > 0 && r.sampling.min_tokens > r.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.min_tokens: ", r.sampling.min_tokens,
                                                   " is above max_tokens (", r.max_tokens, ")"));
  }
  for (const auto& [t, bias] : r.sampling.logit_bias) {
    if (t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sampling.logit_bias: token ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Engine::Submit(GenerationRequest request, OutputCallback on_output,
                                           uint64_t* serial) {
  MLA_RETURN_IF_ERROR(Validate(request));
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  const int64_t room = info_.max_context - prompt;
  const int64_t max_new =
      request.max_tokens == 0 ? room : std::min<int64_t>(request.max_tokens, room);
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("the engine is shutting down");
  bool assigned = false;
  const int waiting = static_cast<int>(live_.size()) - load_.running;
  if (waiting >= options_.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the waiting queue is full (", waiting,
                     " requests, --max_waiting=", options_.max_waiting, "); retry later"));
  }
  while (request.request_id.empty() || live_.contains(request.request_id)) {
    if (!request.request_id.empty() && !assigned) break;  // A caller's duplicate: refused below.
    request.request_id = absl::StrCat("req-", ++next_id_);
    assigned = true;
  }
  if (live_.contains(request.request_id)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id '", request.request_id, "' is already live"));
  }
  if (!request.has_seed) request.sampling.seed = absl::ToUnixNanos(absl::Now()) ^ (next_id_ << 32);
  auto seq = std::make_unique<Sequence>(std::move(request), std::move(on_output),
                                        info_.kv_block_size, absl::Now());
  seq->max_total = prompt + max_new;
  if (seq->request.sampling.min_tokens > 0) {
    std::vector<int32_t> stops = seq->request.stop_token_ids;
    if (!seq->request.ignore_eos) {
      stops.insert(stops.end(), info_.config.eos_token_ids.begin(),
                   info_.config.eos_token_ids.end());
    }
    seq->history.SetStopTokens(std::move(stops));
  }
  seq->serial = ++next_serial_;
  if (serial != nullptr) *serial = seq->serial;
  const std::string id = seq->request.request_id;
  live_[id] = Live{seq->serial, FinishReason::kNone};
  incoming_.push_back(std::move(seq));
  return id;
}

bool Engine::Abort(const std::string& request_id, FinishReason reason, uint64_t serial) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(request_id);
  if (it == live_.end() || (serial != 0 && it->second.serial != serial)) return false;
  if (it->second.abort == FinishReason::kNone) it->second.abort = reason;
  return true;
}

int Engine::NumLive() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(live_.size());
}

EngineLoad Engine::GetLoad() const {
  absl::MutexLock lock(&mu_);
  return load_;
}

void Engine::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !incoming_.empty() || !idle_;
      };
      mu_.Await(absl::Condition(&has_work));
      if (stop_) return;
    }
    Step();
  }
}

}  // namespace mla
