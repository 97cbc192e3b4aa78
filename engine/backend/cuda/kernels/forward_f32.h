// The kernels behind CudaBackend's operations (engine/backend/backend.h): the backend seam
// keeps activations in fp32 [rows, cols] strided views, so these kernels read and write fp32
// where the older bf16 kernels of pointwise.h read bf16. Each mirrors the CPU backend's
// function of the same name (engine/backend/cpu/pointwise.cc, cpu_backend.cc) in fp32 math.
//
// Declarations only (plain C++, includable anywhere); the kernels live in forward_f32.cu
// and validate their shapes first. Pointers are device pointers.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_FORWARD_F32_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_FORWARD_F32_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

// A device fp32 matrix: rows × cols, row r at data + r · stride.
struct F32Matrix {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
};

// out[t] = table[ids[t]] as fp32; table is bf16 (table_bf16) or fp32 (table_f32),
// [vocab, table_stride]. An id outside [0, vocab) gives a zero row (the model checks ids
// on the host before a step, so this only keeps a bad id from reading out of bounds).
struct EmbedF32Params {
  const int32_t* ids = nullptr;  // [out.rows]
  const bf16_t* table_bf16 = nullptr;
  const float* table_f32 = nullptr;
  int64_t vocab = 0;
  int64_t table_stride = 0;
  F32Matrix out;
};
absl::Status LaunchEmbedF32(const EmbedF32Params& p, CudaStream stream);

// out = weight ⊙ x / sqrt(mean(x²) + eps) per row; the sum of squares in fp64 as on the
// CPU. out may alias x. weight: fp32 or bf16 [x.cols].
struct RmsNormF32Params {
  F32Matrix x;
  const float* weight_f32 = nullptr;
  const bf16_t* weight_bf16 = nullptr;
  float eps = 0.0f;
  F32Matrix out;
};
absl::Status LaunchRmsNormF32(const RmsNormF32Params& p, CudaStream stream);

// y += x (same shape).
absl::Status LaunchAddF32(const F32Matrix& x, const F32Matrix& y, CudaStream stream);
// Every element of t = value.
absl::Status LaunchFillF32(const F32Matrix& t, float value, CudaStream stream);
// out = silu(gate) ⊙ up (same shapes).
absl::Status LaunchSiluMulF32(const F32Matrix& gate, const F32Matrix& up, const F32Matrix& out,
                              CudaStream stream);

// out = weight ⊙ (x − mean) / sqrt(var + eps) + bias per row (torch's LayerNorm; mean and
// variance in fp64 as on the CPU). out may alias x. weight and bias: fp32 or bf16 [x.cols].
struct LayerNormF32Params {
  F32Matrix x;
  const float* weight_f32 = nullptr;
  const bf16_t* weight_bf16 = nullptr;
  const float* bias_f32 = nullptr;
  const bf16_t* bias_bf16 = nullptr;
  float eps = 0.0f;
  F32Matrix out;
};
absl::Status LaunchLayerNormF32(const LayerNormF32Params& p, CudaStream stream);

// Rotates pairs of `heads` vectors per row of x (vector v of row t starts at
// x.data + t · x.stride + v · head_stride) by row t's angles cos/sin [x.rows, half]: the
// interleaved pairs (x[2i], x[2i + 1]), or with `halves` the pairs (x[i], x[i + half]) of
// transformers' rotate_half (the V3.2 indexer's layout).
struct RopeF32Params {
  F32Matrix cos, sin;
  F32Matrix x;  // cols: unused (the vectors are described by heads and head_stride)
  int heads = 0;
  int64_t head_stride = 0;
  bool halves = false;
};
absl::Status LaunchRopeF32(const RopeF32Params& p, CudaStream stream);

// out[r, c] = bf16(x[r, c]), out dense [x.rows, x.cols]: the GEMM input conversion.
absl::Status LaunchToBf16(const F32Matrix& x, bf16_t* out, CudaStream stream);

// out[r, c] = float(x[r · cols + c]) for a dense bf16 [out.rows, out.cols]: the split-KV
// decode kernel's bf16 output back into an fp32 activation.
absl::Status LaunchFromBf16(const bf16_t* x, const F32Matrix& out, CudaStream stream);

// Writes step rows into one layer's latent cache (a row per slot, slot = block ·
// block_size + offset) in its element layout (engine/kv_cache/cache_row.h, mirrored by
// kernels/cache_row.cuh): bf16 [c | k_pe], or with cache_fp8 DeepSeek's FP8 layout, c
// quantized per group of 128 exactly as the host quantizes it. The caller checks the
// slots against the cache on the host first.
struct CacheWriteF32Params {
  F32Matrix latent;                // [T, L]
  F32Matrix k_pe;                  // [T, R]
  const int64_t* slots = nullptr;  // [T]
  void* cache = nullptr;           // One layer: [slots, CacheRowBytes] bytes.
  bool cache_fp8 = false;
};
absl::Status LaunchCacheWriteF32(const CacheWriteF32Params& p, CudaStream stream);

// Writes step rows of DeepSeek-V3.2 indexer keys into one layer's key array at slots[t],
// in the layout of engine/kv_cache/index_key_row.h: bf16 rows, or with `fp8` each key's
// e4m3 codes and scale in its block's region of block_size keys, bit for bit the host's
// EncodeIndexKey. The caller checks the slots on the host first.
absl::Status LaunchIndexKeyWriteF32(const F32Matrix& keys, const int64_t* slots, void* cache,
                                    bool fp8, int block_size, CudaStream stream);

// Absorbed MLA over the paged bf16 cache for every query row of a step, decode rows and
// prefill chunks alike (the function of engine/backend/cpu/mla_attention.h): row r belongs
// to sequence row_seq[r], sits at position q_pos0[s] + r − cu_seqlens_q[s] and sees keys
// [0, position]. q [T, heads · (L + R)] fp32, out [T, heads · L], lse [T, heads] (natural
// log; a row that sees no key gets out = 0 and lse = −inf). Limits: L + R ≤ kMlaF32MaxWidth,
// L ≤ kMlaF32MaxLatent.
inline constexpr int kMlaF32MaxLatent = 1024;
inline constexpr int kMlaF32MaxWidth = 1152;
struct MlaAttentionF32Params {
  int64_t num_rows = 0;
  int heads = 0;
  int latent = 0;  // L
  int rope = 0;    // R
  int block_size = 0;
  int64_t max_blocks = 0;
  float softmax_scale = 0.0f;
  const void* cache = nullptr;            // [num_blocks, block_size] rows, bf16 or fp8
  bool cache_fp8 = false;                 // The row layout (CacheWriteF32Params).
  const int32_t* block_table = nullptr;   // [batch, max_blocks]
  const int32_t* q_pos0 = nullptr;        // [batch]
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1]
  const int32_t* row_seq = nullptr;       // [num_rows]
  // [batch] or null: rows of sequences marked nonzero are skipped (left as they are), for
  // the sequences that DecompressedAttention computes.
  const uint8_t* skip_seq = nullptr;
  // DeepSeek-V3.2 sparse attention when set: row r attends only to the positions
  // selected[r · topk ...] (IndexerTopK's output; -1 and positions the row may not see are
  // skipped, since the host cannot check a device-written selection without a sync). A
  // row with none gets out = 0 and lse = −inf.
  const int32_t* selected = nullptr;
  int topk = 0;
  const float* q = nullptr;
  float* out = nullptr;
  float* lse = nullptr;
};
absl::Status LaunchMlaAttentionF32(const MlaAttentionF32Params& p, CudaStream stream);

// Attention-sharpness sums of one query row per head over keys [0, num_keys) of one
// sequence (engine/backend/cpu/attention_probe.h): with m the max score, stats[h] =
// {m, Z = Σ e^(s−m), A = Σ e^(s−m) · s}, from which the host computes entropy and max weight.
struct ProbeF32Params {
  int heads = 0;
  int latent = 0;
  int rope = 0;
  int block_size = 0;
  int64_t num_keys = 0;
  float softmax_scale = 0.0f;
  const void* cache = nullptr;  // As in MlaAttentionF32Params.
  bool cache_fp8 = false;
  const int32_t* blocks = nullptr;  // The sequence's block ids.
  const float* q = nullptr;         // [heads, L + R]
  float* stats = nullptr;           // [heads, 3]
};
absl::Status LaunchProbeF32(const ProbeF32Params& p, CudaStream stream);

// out[r] = x[sorted_pairs[r] / top_k] for r < out.rows: token rows in expert order.
absl::Status LaunchGatherRowsF32(const F32Matrix& x, const int32_t* sorted_pairs, int top_k,
                                 const F32Matrix& out, CudaStream stream);
// out[t] += Σ_j weights[t, j] · expert_out[pair_rows[t · top_k + j]] for t < out.rows.
absl::Status LaunchCombineExpertsF32(const F32Matrix& expert_out, const int32_t* pair_rows,
                                     const float* weights, int top_k, const F32Matrix& out,
                                     CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_FORWARD_F32_H_
