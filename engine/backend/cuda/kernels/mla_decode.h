// Paged, absorbed MLA decode with split-KV on CUDA (the function of engine/backend/cpu/
// mla_attention.h for s_q query rows per sequence, FlashMLA's decode interface).
//
// For sequence j with n = seq_lens[j] cached tokens and query row i < s_q (position
// n - s_q + i), head h, q = [q_lat (L) | q_pe (R)]:
//   score_t = (q_lat·c_t + q_pe·k_pe_t) · softmax_scale   for t < n - s_q + 1 + i
//   out     = Σ_t softmax(score)_t · c_t                  (V is the latent itself)
//   lse     = log Σ_t exp(score_t)                        (natural log)
// A row that sees no key (an empty sequence) gets out = 0 and lse = -inf.
//
// Sparse attention (DeepSeek-V3.2, `selected`): each sequence's one query row attends to
// the positions its selection lists instead of 0 .. n − 1: the first min(topk, n) entries
// of selected[j] (the indexer's, ascending, each below n), each key row gathered through
// the block table. The plan must then count min(topk, n) keys per sequence. The
// CUDA-core and the mma kernels (kSimt, kMma, kMmaKSplit) gather; for the others a
// selection runs kMma. With `seq_of`, the "sequences" of a call are query rows of a
// prefill (each with its own selection and n = the keys it sees), row j reading the
// block-table row seq_of[j].
//
// Two kernels: the split kernel runs a [num_head_tiles, num_parts] grid over the plan of
// host/mla_decode_plan.h. Each CTA takes kMlaDecodeRowsPerCta query rows (s_q × heads
// folded; 64 for the 64-row kernels, MlaDecodeRowsPerCta) and walks its part's cache blocks with an
// online softmax, writing either the final output (a sequence that one part covers) or a partial
// output and LSE (a split sequence). The combine kernel merges partials: lse = log Σ exp(lse_s −
// max) + max, out = Σ exp(lse_s − lse) · out_s. Keys are read only below each row's limit, and
// cache slots at or past seq_lens[j] are never read, so unused slots may hold anything.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/mla_decode_metadata.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

// Limits of these kernels: L ≤ kMlaMaxLatent (DeepSeek: 512), R ≤ kMlaMaxRope (DeepSeek: 64),
// both even.
inline constexpr int kMlaMaxLatent = 512;
inline constexpr int kMlaMaxRope = 128;
// The ring and 64-row kernels' limit on L + R: three 64-key blocks of such rows (or the q
// tile and two blocks) fill the 227 KiB of shared memory a CTA may have (DeepSeek's 576:
// 216 KiB).
inline constexpr int kMlaRingMaxWidth = 576;

// Which split kernel runs (the combine kernel is shared):
// - kSimt: CUDA cores (mla_decode.cu), any shape this header allows;
// - kMma: tensor cores (mla_decode_mma.cu: mma.sync m16n8k16, bf16 in, fp32 sums), when
//   kv_lora_rank is a multiple of 8 and kv_lora_rank + rope_dim of 16 (DeepSeek: 512 + 64);
// - kMmaKSplit: the same widths, q's fragments in registers with the row's k-steps split
//   over the warps and V through ldmatrix (fewer instructions per block; opt-in until a
//   device has measured it against kMma);
// - kMmaRing: kMma's math with one CTA of 8 warps per SM keeping two cache blocks in flight
//   while it computes a third (mla_decode_ring.cu), for rows of at most kMlaRingMaxWidth
//   values; caches it does not take (MlaDecodeRingTakesCache: FP8 rows whose parts are not
//   16-byte aligned), a pool not 16-byte aligned or a device with less shared memory per
//   CTA run kMma instead (opt-in until a device has measured it);
// - kMmaRows64: kMma's math for 64 query rows per CTA (mla_decode_rows64.cu: 8 warps, a
//   block read once per 64 rows, for many heads), bf16 caches and the ring's widths, else
//   kMma (opt-in until a device has measured it);
// - kMmaWgmma: kMmaRows64 with both products as wgmma (mla_decode_rows64_wgmma.cu,
//   sm_90a only), for DeepSeek's widths (MlaDecodeWgmmaSupports) and bf16 caches; where it
//   cannot run, kMmaRows64's rules apply (opt-in until a device has run it);
// - kAuto: MLA_CUDA_DECODE_KERNEL from the environment (simt, mma, mma_ksplit, mma_ring,
//   mma_rows64 or mma_wgmma); unset, mma where it takes the shape (measured faster on an
//   H200), simt otherwise. A tensor-core kernel named for widths it does not take falls
//   back to the next one that does (mma_wgmma → mma_rows64 → mma → simt; mma_ring and
//   mma_ksplit → mma → simt).
enum class MlaDecodeKernel : int {
  kAuto = 0,
  kSimt = 1,
  kMma = 2,
  kMmaKSplit = 3,
  kMmaRing = 4,
  kMmaRows64 = 5,
  kMmaWgmma = 6,
};

struct MlaDecodeParams {
  int batch = 0;
  int q_rows_per_seq = 1;  // s_q
  int num_heads = 0;
  int kv_lora_rank = 0;  // L
  int rope_dim = 0;      // R
  int block_size = kMlaBlockSize;
  int64_t num_blocks = 0;
  int max_blocks_per_seq = 0;
  float softmax_scale = 0.0f;
  MlaDecodeKernel kernel = MlaDecodeKernel::kAuto;
  int num_parts = 0;          // MlaDecodePlan::num_parts
  int num_partial_slots = 0;  // MlaDecodePlan::num_partial_slots()

  const bf16_t* q = nullptr;  // [batch, s_q, num_heads, L + R]
  // [num_blocks, block_size] rows: bf16 [L + R], or with kv_fp8 DeepSeek's FP8 rows
  // (kernels/cache_row.cuh), dequantized to bf16 pairs as a block is loaded.
  const void* kv_cache = nullptr;
  bool kv_fp8 = false;
  const int32_t* block_table = nullptr;    // [batch, max_blocks_per_seq]
  const int32_t* seq_lens = nullptr;       // [batch]
  const MlaDecodePart* parts = nullptr;    // [num_parts]       (MlaDecodePlan::parts)
  const int32_t* split_offsets = nullptr;  // [batch + 1]       (MlaDecodePlan::split_offsets)
  float* partial_out = nullptr;            // [num_partial_slots, s_q · num_heads, L]
  float* partial_lse = nullptr;            // [num_partial_slots, s_q · num_heads]
  bf16_t* out = nullptr;                   // [batch, s_q, num_heads, L]
  float* lse = nullptr;                    // [batch, s_q, num_heads]
  // Sparse attention (above): null, or [batch, topk] positions with s_q = 1.
  const int32_t* selected = nullptr;
  int topk = 0;
  // With a selection: null, or [batch] the block_table row of each sequence j (then
  // seq_lens[j] is the number of keys j sees, not its table's length).
  const int32_t* seq_of = nullptr;
};

// Shapes and pointers (the plan's seq_lens checks happen in PlanMlaDecode).
absl::Status ValidateMlaDecodeParams(const MlaDecodeParams& p);

// Launches the split kernel and the combine kernel on `stream`.
absl::Status LaunchMlaDecode(const MlaDecodeParams& p, CudaStream stream);

// Whether the tensor-core split kernels take these widths, and the ring and 64-row kernels
// (rows of at most kMlaRingMaxWidth values).
bool MlaDecodeMmaSupports(int kv_lora_rank, int rope_dim);
bool MlaDecodeRingSupports(int kv_lora_rank, int rope_dim);
// The wgmma build of the 64-row kernel: L = 512 (one 256-column tile per half), R = 64.
bool MlaDecodeWgmmaSupports(int kv_lora_rank, int rope_dim);
// Whether the ring kernel takes a cache of these widths (MlaDecodeRingSupports) and element
// type: bf16 rows, or FP8 rows whose codes, scales and k_pe all start 16-byte aligned
// (DeepSeek's 656-byte rows), copied as they are and dequantized in shared memory.
bool MlaDecodeRingTakesCache(int kv_lora_rank, int rope_dim, bool kv_fp8);

// The kernel asked for by `wanted` (never kAuto in the result):
// INVALID_ARGUMENT when a tensor-core kernel is asked for widths it does not take, or
// MLA_CUDA_DECODE_KERNEL names no kernel.
// `environment` is that variable's value (nullptr: unset); the other overload reads it
// once per process.
absl::StatusOr<MlaDecodeKernel> ResolveMlaDecodeKernel(MlaDecodeKernel wanted, int kv_lora_rank,
                                                       int rope_dim, const char* environment);
absl::StatusOr<MlaDecodeKernel> ResolveMlaDecodeKernel(MlaDecodeKernel wanted, int kv_lora_rank,
                                                       int rope_dim);

// How many CTAs of the split kernel that `kernel` resolves to one multiprocessor of the
// current device holds at once for these widths: shared memory decides it (the CUDA-core
// kernel: 2 on an H100 / H200 at DeepSeek's 576). The plan's num_sms is the multiprocessors
// times this: with one CTA per multiprocessor its loads and its math never overlap.
// `kv_fp8`: the cache's element type, which decides which of the opt-in kernels runs.
absl::StatusOr<int> MlaDecodeCtasPerSm(int kv_lora_rank, int rope_dim,
                                       MlaDecodeKernel kernel = MlaDecodeKernel::kAuto,
                                       bool kv_fp8 = false);

// Query rows per CTA of the split kernel that runs for these widths, kernel and cache:
// the plan's MlaDecodePlanOptions::rows_per_cta (64 for kMmaRows64 or kMmaWgmma where they
// run, else kMlaDecodeRowsPerCta). Any value gives correct results; this one the intended
// grid (a call whose q or cache is not 16-byte aligned runs kMma on it: correct, a larger
// grid).
absl::StatusOr<int> MlaDecodeRowsPerCta(int kv_lora_rank, int rope_dim,
                                        MlaDecodeKernel kernel = MlaDecodeKernel::kAuto,
                                        bool kv_fp8 = false);

// The MLA_CUDA_DECODE_KERNEL name of the split kernel that runs for these widths, kernel
// and cache on the current device (an opt-in kernel may hand the cache to another), for
// benchmarks' labels.
absl::StatusOr<std::string> MlaDecodeSplitName(int kv_lora_rank, int rope_dim,
                                               MlaDecodeKernel kernel = MlaDecodeKernel::kAuto,
                                               bool kv_fp8 = false);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_H_
