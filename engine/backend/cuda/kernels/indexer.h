// DeepSeek-V3.2's lightning indexer on the device: every step row's scores over the keys
// it may see, then their top-k, as the CPU backend's IndexerTopK computes them
// (engine/backend/cpu/indexer.h):
//   I[t, s] = Σ_h (weight_scale · w[t, h]) · relu(scale · q[t, h]·k_s)      (fp32)
// selected[t] gets the min(topk, visible) best positions in ascending order (ties: the
// lower position), then -1.
//
// Declarations only (plain C++, includable anywhere); the kernels live in indexer.cu: the
// scores as tensor-core products per (tile of rows, chunks of 64 keys) where the widths
// allow, else one warp per key (heads summed in order, as the CPU does); one CTA per row
// for the selection (a radix select on the scores' bits, then the selected positions
// compacted in order, each warp a contiguous segment).
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_INDEXER_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_INDEXER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/common/bf16.h"

namespace mla::cuda {

// q of one row stays in shared memory: heads · dim ≤ this (DeepSeek-V3.2: 64 · 128).
inline constexpr int kIndexerMaxQ = 8192;

// The most step rows one tensor-core CTA scores together (IndexerF32Params::row_tile).
inline constexpr int kIndexerMaxRowTile = 4;

// How the scores are computed: kAuto takes tensor cores (m16n8k16, q rounded to bf16)
// where index_key_dim is a multiple of 16 (DeepSeek-V3.2: 128) and the keys are aligned
// (IndexerUsesTensorCores), CUDA cores (fp32 q, the
// CPU's dot products up to their order) otherwise; kSimt always the latter.
enum class IndexerKernel { kAuto, kSimt };

struct IndexerF32Params {
  int64_t num_rows = 0;  // Rows of this launch: step rows first_row .. first_row + num_rows.
  int64_t first_row = 0;
  int heads = 0;
  int dim = 0;  // index_key_dim
  int block_size = 0;
  int64_t max_blocks = 0;  // Row length of block_table.
  int topk = 0;
  float scale = 0.0f;
  float weight_scale = 0.0f;
  // One layer's keys: [num_blocks] block regions in the layout of
  // engine/kv_cache/index_key_row.h: bf16 [block_size, dim], or with keys_fp8 e4m3 codes
  // [block_size, dim] then fp32 scales [block_size] (each key's weighted sum is multiplied
  // by its scale, as on the CPU).
  const void* keys = nullptr;
  bool keys_fp8 = false;
  const int32_t* block_table = nullptr;   // [batch, max_blocks]
  const int32_t* q_pos0 = nullptr;        // [batch]
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1]
  const int32_t* row_seq = nullptr;       // [step rows]
  const float* q = nullptr;               // [step rows, heads · dim]
  const float* w = nullptr;               // [step rows, heads]
  // Scratch [num_rows, scores_stride]: scores_stride ≥ the most keys a row of the launch
  // sees.
  float* scores = nullptr;
  int64_t scores_stride = 0;
  int32_t* selected = nullptr;  // [step rows, topk]
  IndexerKernel kernel = IndexerKernel::kAuto;
  // Step rows one tensor-core CTA scores together (1..kIndexerMaxRowTile): the rows of one
  // sequence in a tile share each key load, so a prefill chunk reads its keys a quarter as
  // often at 4; decode rows (each its own sequence) gain nothing and take 1.
  int row_tile = 1;
  // 64-key chunks one tensor-core CTA scores (its tile's q converted once for all); 0 lets
  // the launch choose (one while the grid is small, up to 4 as it grows).
  int key_chunks_per_cta = 0;
  // Scratch of IndexerSelectScratchBytes(num_rows, scores_stride, topk) for the split
  // selection (few rows over many keys); null, or a launch the rule does not split, selects
  // with one CTA per row.
  void* select_scratch = nullptr;
};

// The split selection: a launch of at most this many rows whose rows may see at least
// 8 · topk keys splits each row's selection into segments of at least 4 · topk keys (at
// most kIndexerMaxSelectSegments), each kept to its top-k by its own CTA, then merges the
// candidates in one CTA per row: a decode row over 128K keys with top 2,048 runs on 16
// multiprocessors and the last CTA reads a quarter of the scores. Larger launches keep
// the device busy with one CTA per row and take no scratch.
inline constexpr int64_t kIndexerSplitSelectMaxRows = 128;
inline constexpr int kIndexerMaxSelectSegments = 32;
int IndexerSelectSegments(int64_t num_rows, int64_t scores_stride, int topk);
// Bytes of IndexerF32Params::select_scratch a launch needs (0: it selects unsplit).
int64_t IndexerSelectScratchBytes(int64_t num_rows, int64_t scores_stride, int topk);

// Whether the scores of `p` run on tensor cores (q rounded to bf16): dim a multiple of 16
// and every key aligned for the kernel's vector loads (16 bytes for bf16, 8 for FP8 codes:
// an even block_size).
bool IndexerUsesTensorCores(const IndexerF32Params& p);

// Scores and selects rows first_row .. first_row + num_rows of the step.
absl::Status LaunchIndexerTopK(const IndexerF32Params& p, CudaStream stream);

// The selection alone, from scores the caller wrote (row r of the launch at
// scores + r · scores_stride, its first Visible(row) entries read): for tests of the
// selection on chosen scores. keys, block_table, q and w are not read.
absl::Status LaunchIndexerSelect(const IndexerF32Params& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_INDEXER_H_
