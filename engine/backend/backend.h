// The seam between the DeepSeek forward pass and the device it runs on. The model
// (engine/model/deepseek_model.h) writes its computation once as a sequence of named
// operations on this interface; each backend (engine/backend/cpu, engine/backend/cuda)
// owns the memory those operations touch — weights, the paged latent cache, activations —
// and runs them. Nothing here names a device.
//
// Why a virtual interface and not a compile-time template: every operation is coarse (a
// GEMM over all tokens of a step, one layer's attention), so a virtual call costs well
// under a microsecond against tens of microseconds of work at the smallest decode step;
// one binary chooses its device at run time (--device=auto); and the orchestration stays
// in one .cc file that is compiled once instead of once per backend.
//
// Errors are sticky, as on a GPU stream: compute operations return nothing, a failing
// operation (a bad shape, a cache slot out of range, an unimplemented op) records the
// first error, and TakeError() reports it; the model checks after each layer. On the CPU
// every operation is synchronous; on a device the host only enqueues.
#ifndef MLA_ENGINE_BACKEND_BACKEND_H_
#define MLA_ENGINE_BACKEND_BACKEND_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/moe_policy.h"
#include "engine/backend/op_profile.h"
#include "engine/common/attention_sharpness.h"
#include "engine/common/tensor.h"
#include "engine/kv_cache/cache_layout.h"
#include "engine/sampling/logit_adjustments.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/rng.h"
#include "engine/sampling/sampling_params.h"

namespace mla {

// A 2-D strided view of backend memory: rows × cols elements of `dtype`, row r starting
// r · stride elements after `data`. The model passes these around and never dereferences
// them (on a GPU `data` is a device address).
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  bool empty() const { return rows == 0 || cols == 0; }
  // Rows [first, first + count).
  Tensor Rows(int64_t first, int64_t count) const;
  // Columns [first, first + count) of every row (same stride): one head of a [T, H·d]
  // activation, the k_pe part of a cache row.
  Tensor Cols(int64_t first, int64_t count) const;
};

// One routed expert's SiLU MLP: down · (silu(gate · x) ⊙ up · x).
struct ExpertTensors {
  Tensor gate, up, down;
};

// The host-side description of one forward step's tokens, shared by every layer: the
// backend uploads it once per step (BeginStep). Sequences with no tokens are left out.
struct StepBatch {
  int64_t num_tokens = 0;             // T: rows of every activation this step.
  int64_t batch = 0;                  // Sequences with tokens.
  int64_t max_blocks = 0;             // Row length of block_table.
  std::vector<int32_t> block_table;   // [batch, max_blocks], 0-padded.
  std::vector<int32_t> seq_lens;      // [batch] keys valid after this step's writes.
  std::vector<int32_t> q_pos0;        // [batch] position of the sequence's first new token.
  std::vector<int32_t> cu_seqlens_q;  // [batch + 1] row offsets of each sequence's tokens.
  std::vector<int64_t> slots;         // [T] cache slot (block · block_size + offset).
  // [batch], or empty for none: sequences whose attention DecompressedAttention computes
  // this step (long prefill chunks); MlaAttention leaves their rows as they are.
  std::vector<uint8_t> decompress;
};

// One logits row to turn into a token (or to score, for prompt logprobs).
struct RowSampling {
  int64_t row = 0;
  // Sample with these parameters and this generator; null when the row is only scored.
  const SamplingParams* params = nullptr;
  Rng* rng = nullptr;
  int32_t score_token = -1;  // >= 0: no sampling, report this token's logprob.
  int top_logprobs = -1;     // >= 0: report the chosen/scored token's logprob and top-N.
  // The sequence's tokens so far, for params->adjusts_logits() (logit_adjustments.h);
  // then required.
  const TokenHistory* history = nullptr;
};

struct RowSample {
  absl::Status status;  // Sampling errors (e.g. all logits NaN) are per row.
  int32_t token = -1;
  bool has_logprobs = false;
  TokenLogprobs logprobs;
};

// The most scratch a device backend's DecompressedAttention holds for the keys it
// up-projects at once (engine/backend/cuda/host/decompress_plan.h); its per-row softmax
// state comes on top (4 · rows · heads · (v_head_dim + 2) bytes).
inline constexpr int64_t kMaxDecompressedChunkBytes = int64_t{64} << 20;

// The most scratch a device backend's IndexerTopK holds for the indexer's scores of a group
// of rows and their top-k candidates (DeepSeek-V3.2; the group shrinks as contexts grow,
// down to one row).
inline constexpr int64_t kMaxIndexerScoreBytes = int64_t{64} << 20;

// The most scratch a device backend's SparseMlaAttention holds for a group of prefill rows
// on its split-KV kernels (bf16 q and output, partial results; DeepSeek-V3.2).
inline constexpr int64_t kMaxSparsePrefillBytes = int64_t{64} << 20;

// A device's own memory, for sizing the cache from a fraction of it.
struct DeviceMemoryStatus {
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;
};

struct BackendMemory {
  int64_t weight_bytes = 0;     // Held by the backend (0 when it reads the host copy).
  int64_t cache_bytes = 0;      // Latent cache storage.
  int64_t workspace_bytes = 0;  // Activations and kernel scratch.
};

// What BeginGraphRegion asks of the model (see there).
enum class GraphRegion {
  kEager,      // issue the region's operations as usual
  kCapturing,  // issue them; the backend records them, then EndGraphRegion
  kReplayed,   // issue none: the backend has replayed its recording of them
};

class Backend {
 public:
  virtual ~Backend() = default;

  // The device as the API and the metrics name it: "cpu", "cuda:0".
  virtual std::string DeviceName() const = 0;
  // A line for the log: "cpu (2 threads, avx2)".
  virtual std::string Describe() const = 0;

  // --- Memory -------------------------------------------------------------------------
  // Makes a weight available to the operations; the returned view stays valid for the
  // backend's life. `host` must stay valid too (the CPU backend reads it in place).
  virtual absl::StatusOr<Tensor> AddWeight(std::string_view name, const MatrixView& host) = 0;
  // The latent cache: `num_blocks` blocks of `layout` in every layer.
  virtual absl::Status AllocateCache(const CacheLayout& layout, int32_t num_blocks) = 0;
  virtual const CacheLayout& cache_layout() const = 0;
  virtual int32_t cache_num_blocks() const = 0;
  // Copies cache block `block`, every layer, to or from host bytes (the disk tier of the
  // prefix cache): cache_layout().bytes_per_block() bytes, layer 0's block first, then
  // (V3.2) each layer's indexer keys in layer order.
  // INVALID_ARGUMENT for a block out of range or a size that differs.
  virtual absl::Status ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) = 0;
  virtual absl::Status WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) = 0;
  // Activation `slot` (a number the model chooses) as an fp32 [rows, cols] tensor. The
  // buffer grows when needed and is reused across steps; its contents are undefined.
  virtual Tensor Activation(int slot, int64_t rows, int64_t cols) = 0;
  virtual BackendMemory Memory() const = 0;
  // Total and free bytes of a device with memory of its own; nullopt for host memory,
  // where the cache is sized by an explicit budget instead.
  virtual std::optional<DeviceMemoryStatus> DeviceMemory() const { return std::nullopt; }

  // --- Transfers ----------------------------------------------------------------------
  virtual void Upload(std::span<const float> host, Tensor dst, Op op) = 0;
  virtual void Download(const Tensor& src, std::span<float> host, Op op) = 0;

  // --- Per-step state -----------------------------------------------------------------
  // Makes `batch` the current step's layout for WriteCache and MlaAttention.
  virtual void BeginStep(const StepBatch& batch) = 0;

  // A replayable region (CUDA graphs; optional, the default and the CPU backend never
  // record). The model brackets the operations of a step from the first layer to lm_head
  // when they depend on nothing but the step's device state, which BeginStep, Upload and
  // Embed set before the region: a step of decode rows whose logits are all wanted, with
  // no telemetry. The backend keys a recording by every host value the region's launches
  // bake in (rows, batch, block-table width, its attention plan) and by `variant`, the
  // model's own host decisions inside the region (which operations it issues for a step of
  // the same shape: V3.2's dense or sparse attention), so a later step with the same key
  // replays it on new tokens, positions and block tables. The protocol:
  //   kEager      -> issue the operations.
  //   kCapturing  -> issue them, then call EndGraphRegion(complete), complete = false when
  //                  the model stopped early (an error); when it returns true nothing ran
  //                  (the recording failed or was incomplete), so issue them again, eagerly.
  //   kReplayed   -> issue none; the region's activations hold what the operations would
  //                  have written.
  // Errors while recording do not stick: the eager re-issue reports them.
  virtual GraphRegion BeginGraphRegion(uint32_t /*variant*/) { return GraphRegion::kEager; }
  virtual bool EndGraphRegion(bool /*complete*/) { return false; }

  // --- Operations (out may alias x only where said) -----------------------------------
  // out[t] = table[tokens[t]] as fp32.
  virtual void Embed(const Tensor& table, std::span<const int32_t> tokens, Tensor out, Op op) = 0;
  // out[t] = weight ⊙ x[t] / sqrt(mean(x[t]²) + eps); out may alias x. weight: [1, cols].
  virtual void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out, Op op) = 0;
  // y = x · wᵀ (w is [out, in], bf16 or f32; x, y fp32) with fp32 accumulation.
  virtual void Gemm(const Tensor& x, const Tensor& w, Tensor y, Op op) = 0;
  // dst = src (same shape; strided views allowed).
  virtual void Copy(const Tensor& src, Tensor dst, Op op) = 0;
  // Every element of t = value.
  virtual void Fill(Tensor t, float value, Op op) = 0;
  // y += x, element-wise.
  virtual void Add(const Tensor& x, Tensor y, Op op) = 0;
  // out = silu(gate) ⊙ up.
  virtual void SiluMul(const Tensor& gate, const Tensor& up, Tensor out, Op op) = 0;
  // Rotates interleaved pairs of `heads` vectors per row of x (each `head_stride` apart,
  // starting at x's first column, rope width cos.cols · 2) by row t's angles cos/sin [T, R/2].
  virtual void Rope(const Tensor& cos, const Tensor& sin, Tensor x, int heads, int64_t head_stride,
                    Op op) = 0;
  // Stores the step's latent rows [T, L] and k_pe rows [T, R] into cache `layer` at the
  // step's slots.
  virtual void WriteCache(int layer, const Tensor& latent, const Tensor& k_pe, Op op) = 0;
  // Absorbed MLA over the paged cache for every sequence of the step (decode rows and
  // prefill chunks alike, causal): q [T, heads · (L + R)], out [T, heads · L],
  // lse [T, heads] (natural log). See engine/backend/cpu/mla_attention.h for the math.
  virtual void MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q, Tensor out,
                            Tensor lse, Op op) = 0;
  // Decompressed attention (engine/backend/cpu/decompressed_attention.h has the math), for
  // the step's sequences marked in StepBatch::decompress, whose rows it writes (the others
  // are left as they are): per head, k_nope and v up-projected from the cached latents
  // through kv_b [heads · (nope + v), L] (kv_b_proj), then causal attention of
  // q [T, heads · (nope + R)] (RoPE applied) against [k_nope | k_pe] with v as values:
  // out [T, heads · v], W_UV already applied. Cheaper than MlaAttention for chunks of many
  // rows (see engine/model/attention_path.h). Only when SupportsDecompressedAttention().
  // A device backend up-projects the keys of a long sequence chunk by chunk and keeps each
  // chunk's scratch under kMaxDecompressedChunkBytes, so that a memory plan can bound it.
  virtual bool SupportsDecompressedAttention() const = 0;
  virtual void DecompressedAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                                     const Tensor& kv_b, Tensor out, Op op) = 0;
  // Routed experts: routes each row of router_logits [T, E] by `policy` (bias [1, E] when
  // policy.use_bias), runs every chosen expert's SiLU MLP over its rows and adds the
  // weighted results into out [T, hidden]. experts: E entries of {gate, up, down}.
  virtual void MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits,
                          const Tensor& bias, std::span<const ExpertTensors> experts,
                          const Tensor& x, Tensor out, Op op) = 0;
  // --- DeepSeek-V3.2 sparse attention (DSA) ------------------------------------------
  // out[t] = weight ⊙ (x[t] − mean) / sqrt(var + eps) + bias (torch LayerNorm, fp32);
  // weight and bias [1, cols]; out may alias x. The indexer's k_norm.
  virtual void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                         Tensor out, Op op) = 0;
  // As Rope, but rotating the pairs (x[i], x[i + R/2]) of each vector (the half-split
  // layout of transformers' rotate_half, which the V3.2 indexer uses).
  virtual void RopeHalves(const Tensor& cos, const Tensor& sin, Tensor x, int heads,
                          int64_t head_stride, Op op) = 0;
  // Stores the step's indexer keys [T, index_key_dim] into cache `layer`'s indexer
  // component at the step's slots (in the layout's index_dtype: engine/kv_cache/
  // index_key_row.h), like WriteCache for the latent.
  virtual void WriteIndexKeys(int layer, const Tensor& keys, Op op) = 0;
  // The lightning indexer and its top-k, per step row t (causal: the row at position p
  // sees keys 0..p of its sequence):
  //   I[t, s] = Σ_h (weight_scale · w[t, h]) · relu(scale · q[t, h]·k_s)      (fp32)
  // q [T, heads · index_key_dim], w [T, heads]; selected [T, topk] (dtype kI32) gets the
  // min(topk, p + 1) best positions in ascending order (ties: the lower position), then -1.
  // With FP8 keys k_s is the dequantized key (its scale applied after the weighted sum).
  virtual void IndexerTopK(int layer, int heads, float scale, float weight_scale, const Tensor& q,
                           const Tensor& w, Tensor selected, Op op) = 0;
  // MlaAttention restricted to each row's selected positions (selected as IndexerTopK
  // writes it; -1 entries are ignored). A row whose selection is all its visible keys
  // computes dense MLA's function.
  virtual void SparseMlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                                  const Tensor& selected, Tensor out, Tensor lse, Op op) = 0;

  // Attention sharpness of one query row (q_row [1, heads · (L + R)]) of step sequence
  // `seq` against its first num_keys keys in `layer` (telemetry; engine/common/
  // attention_sharpness.h).
  virtual absl::StatusOr<AttentionSharpness> ProbeAttention(int layer, int64_t seq,
                                                            int64_t num_keys, const Tensor& q_row,
                                                            int heads, float softmax_scale,
                                                            Op op) = 0;
  // Samples or scores logits rows [rows, vocab]; out has one entry per `rows` entry.
  virtual void Sample(const Tensor& logits, std::span<const RowSampling> rows,
                      std::span<RowSample> out, Op op) = 0;

  // --- Errors and timing --------------------------------------------------------------
  // The first error since the last call (OK when none), cleared.
  virtual absl::Status TakeError() = 0;
  // Per named operation timing (off by default; see op_profile.h).
  OpProfiler& profiler() { return profiler_; }

 protected:
  OpProfiler profiler_;
};

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_BACKEND_H_
