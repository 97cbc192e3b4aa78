// The engine: owns the model, the latent KV cache and one loop thread that batches the
// live requests into forward steps and streams their tokens to callbacks.
#ifndef MLA_ENGINE_ENGINE_H_
#define MLA_ENGINE_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine_info.h"
#include "engine/engine_observer.h"
#include "engine/kv_cache/block_manager.h"
#include "engine/kv_cache/disk_tier.h"
#include "engine/request.h"
#include "engine/runner/model_runner.h"
#include "engine/scheduler/scheduler.h"
#include "engine/tokenizer/tokenizer.h"

namespace mla {

struct EngineOptions {
  std::string model_dir;
  int64_t kv_cache_bytes = int64_t{1} << 30;  // Latent cache budget, all layers.
  // On a GPU: the share of its memory for weights, workspace and cache (RunnerOptions).
  double device_memory_fraction = 0.0;
  int64_t device_cache_cap_bytes = 0;  // > 0: caps that cache (RunnerOptions).
  int block_size = 64;                 // Tokens per cache block.
  // The latent cache's element layout: bf16, or DeepSeek's FP8 layout (656 instead of
  // 1,152 bytes per token and layer; accuracy cost measured in docs/LONG_CONTEXT.md).
  CacheDType cache_dtype = CacheDType::kBF16;
  // DeepSeek-V3.2's indexer keys: bf16, or FP8 with a scale per key (132 instead of 256
  // bytes per token and layer); unset follows cache_dtype.
  std::optional<CacheDType> index_key_dtype;
  int64_t max_batch_tokens = 512;     // Tokens per forward step (prefill chunking).
  int max_running = 64;               // Sequences in a step.
  int max_waiting = 1024;             // Queued requests before RESOURCE_EXHAUSTED.
  bool enable_prefix_caching = true;  // Share cached prompt prefixes (per cache_salt).
  int64_t starvation_steps = 256;     // Steps after which a waiting request jumps the queue.
  int threads = 0;                    // CPU threads; 0 = all cores.
  // Run a throwaway prefill step of max_batch_tokens rows and a step of up to max_running
  // sequences at start-up (ModelRunner::Warmup), so that the first request does not pay
  // for buffers and first calls. Off by default: on the CPU it costs more start-up than
  // it saves (docs/BENCHMARKS.md, "Start-up warm-up"); the server turns it on for CUDA.
  bool warmup = false;
  std::string device = "cpu";  // The runner's backend: cpu or cuda.
  // Attention-sharpness telemetry: every N-th engine step (0 = off) probes the rows that
  // produce a token of up to attention_probe_max_rows sequences, reported to the observer.
  // Requests asking for attention_stats are probed at every token whatever this says.
  int attention_probe_every = 0;
  int attention_probe_max_rows = 4;
  // Disk tier of the prefix cache (engine/kv_cache/disk_tier.h): full prefix blocks are
  // written under this directory (empty = off) within kv_disk_bytes, and a request whose
  // prefix the pool lacks loads them from there before its prefill.
  std::string kv_disk_dir;
  int64_t kv_disk_bytes = int64_t{16} << 30;
  // Receives step and request statistics (metrics); may be null. Must outlive the engine.
  EngineObserver* observer = nullptr;
};

struct EngineLoad {
  int32_t running = 0;
  int32_t waiting = 0;
  CacheStats cache;             // Blocks, bytes, prefix-cache counters, evictions, preemptions.
  int64_t workspace_bytes = 0;  // Activation buffers the forward pass holds.
  int64_t attention_probed_rows = 0;  // Rows probed by attention telemetry so far.
  DiskTierStats disk;                 // Disk tier figures (all zero when it is off).
  bool disk_enabled = false;          // A tier was configured and is not disabled.
  int64_t disk_hit_tokens = 0;        // Prompt tokens loaded from the tier.
  std::string cache_dtype;            // CacheDTypeName of the cache layout.
  int64_t kv_bytes_per_token = 0;     // All layers.
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();  // Aborts live requests (their callbacks see kAbort) and joins the loop.

  // Validates and queues a request. Errors: INVALID_ARGUMENT naming the field,
  // ALREADY_EXISTS for a live request_id, RESOURCE_EXHAUSTED when it could never fit in
  // the cache or the waiting queue is full. On success `on_output` will be called until
  // an output with finished = true. Returns the request id (assigned when empty) and sets
  // *serial, when given, to the submission's serial (never 0; every output carries it).
  absl::StatusOr<std::string> Submit(GenerationRequest request, OutputCallback on_output,
                                     uint64_t* serial = nullptr);
  // Aborts a live request at the next step boundary; false when no live request has the id
  // (or, with serial != 0, when the live one is another submission: a caller that aborts
  // late, after its request ended, cannot kill a new request that reused the id).
  // `reason` is the finish reason it reports: kAbort, or kStopSequence when the caller
  // matched a stop string in the text (the engine sees token ids only).
  bool Abort(const std::string& request_id, FinishReason reason = FinishReason::kAbort,
             uint64_t serial = 0);

  EngineLoad GetLoad() const;
  // Requests submitted and not yet finished (exact, unlike the per-step GetLoad()).
  int NumLive() const;
  const EngineInfo& info() const { return info_; }
  // The model directory's tokenizer.json (or tokenizer.json.xz) with its
  // tokenizer_config.json; null when the directory has none.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }

 private:
  // Which sequence a sampled or scored logits row of a step belongs to.
  struct RowOwner {
    size_t chunk;             // Index in the step's batch.
    int64_t prompt_pos = -1;  // >= 0: a prompt-logprob row scoring this prompt position.
  };

  Engine(const EngineOptions& options, std::unique_ptr<ModelRunner> runner, EngineInfo info);
  absl::Status Validate(const GenerationRequest& r) const;
  void Loop();
  void Step();  // One scheduling + forward step.
  void TakeIncoming();
  // Disk tier (engine_tier.cc): opens it; loads the blocks of `seq`'s prompt that the
  // pool lacks and the tier holds into the pool as cached blocks (so that admission
  // counts them as cached tokens); queues newly committed blocks for writing.
  void OpenDiskTier();
  void LoadFromDiskTier(const Sequence& seq);
  void SaveToDiskTier(const Sequence& seq,
                      const std::vector<BlockManager::CommittedBlock>& committed);
  CacheStats CacheStatsNow() const;  // Block manager's stats plus the scheduler's preemptions.
  void ApplyAborts();
  // The step contract's second half: everything after the forward pass — prompt
  // logprobs, computed-token counts, full blocks into the prefix cache, the sampled token
  // appended and streamed, finished sequences ended and their blocks freed.
  void UpdateFromOutput(const std::vector<ScheduledChunk>& batch,
                        const std::vector<RowOwner>& owners, const StepOutput& output);
  // The runner's input for this step's batch: chunks (rows to probe for attention
  // telemetry marked) and the logits rows to sample or score, with their owners.
  StepInput MakeStepInput(const std::vector<ScheduledChunk>& batch, std::vector<RowOwner>& owners);
  void RecordIndexerRecall(const std::vector<ScheduledChunk>& batch,
                           const std::vector<ChunkIndexerRecall>& recall);
  void RecordAttentionProbes(const std::vector<ScheduledChunk>& batch,
                             const std::vector<ChunkAttentionProbe>& probes);
  void EmitToken(Sequence& seq, const RowSample& sample);
  // Ends a sequence: streams its last output (`out` plus finish data), frees its blocks.
  void Finish(Sequence& seq, FinishReason reason, std::string error = "",
              GenerationOutput out = GenerationOutput());
  // Publishes the scheduler's running and waiting counts to load_. Submit counts the
  // waiting requests as the live ones less the running ones, so they go out as soon as a
  // batch is scheduled, before its tokens: a request submitted in answer to another's
  // first token would otherwise find that one counted as waiting and be refused with a
  // queue that has room.
  void PublishQueueCounts();
  void PublishQueueCountsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const EngineOptions options_;
  std::unique_ptr<ModelRunner> runner_;  // The model on its device, with the cache storage.
  EngineInfo info_;
  std::unique_ptr<const Tokenizer> tokenizer_;  // Set once in Create; may be null.
  BlockManager blocks_;                         // Loop thread only.
  Scheduler scheduler_;                         // Loop thread only.

  mutable absl::Mutex mu_;
  // Submitted but not yet handed to the scheduler (Submit runs on gRPC threads).
  std::deque<std::unique_ptr<Sequence>> incoming_ ABSL_GUARDED_BY(mu_);
  // Live requests by id: the submission's serial and the abort asked for (kNone: none).
  struct Live {
    uint64_t serial = 0;
    FinishReason abort = FinishReason::kNone;
  };
  std::unordered_map<std::string, Live> live_ ABSL_GUARDED_BY(mu_);
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool idle_ ABSL_GUARDED_BY(mu_) = true;  // The scheduler holds no sequence.
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  EngineLoad load_ ABSL_GUARDED_BY(mu_);  // Published during and after every step.
  int64_t steps_ = 0;                     // Loop thread only.
  std::unique_ptr<DiskTier> disk_tier_;   // Null when off. Used by the loop thread.
  std::atomic<int64_t> disk_hit_tokens_{0};
  std::vector<BlockManager::CommittedBlock> committed_;  // Loop thread scratch.
  std::thread loop_;
};

}  // namespace mla

#endif  // MLA_ENGINE_ENGINE_H_
