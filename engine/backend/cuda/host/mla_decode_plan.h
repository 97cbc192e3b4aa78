// Split-KV planning for the CUDA MLA decode kernel (what FlashMLA's get_mla_metadata does),
// in plain C++ so that it is tested on any machine.
//
// Every (sequence, cache block) pair is one unit of work for every head tile. The plan
// concatenates the blocks of all sequences, cuts the list into num_parts runs whose lengths
// differ by at most one block, and gives each run to one column of CTAs. A sequence whose
// blocks fall into several runs is "split": each run writes a partial output and log-sum-exp
// into its own slot, and the combine kernel merges them. At most num_parts - 1 sequences are
// split, because only a run boundary splits a sequence.
#ifndef MLA_ENGINE_BACKEND_CUDA_HOST_MLA_DECODE_PLAN_H_
#define MLA_ENGINE_BACKEND_CUDA_HOST_MLA_DECODE_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/backend/cuda/kernels/mla_decode_metadata.h"

namespace mla::cuda {

struct MlaDecodePlanOptions {
  // CTAs that run at the same time (multiprocessors × resident CTAs per multiprocessor).
  int num_sms = 0;
  int num_heads = 0;
  int q_rows_per_seq = 1;  // s_q: 1 for decode, more when verifying speculative tokens.
  int rows_per_cta = kMlaDecodeRowsPerCta;
  int block_size = kMlaBlockSize;
  int max_blocks_per_seq = 0;  // Row length of the block table; every sequence must fit.
};

struct MlaDecodePlan {
  int32_t num_head_tiles = 0;  // ceil(q_rows_per_seq · num_heads / rows_per_cta)
  int32_t num_parts = 0;       // Grid dimension y; parts.size().
  int64_t total_blocks = 0;
  std::vector<MlaDecodePart> parts;  // [num_parts], uploaded as is
  // [batch + 1], uploaded as is: sequence j has split_offsets[j+1] - split_offsets[j] pieces
  // (0 when empty, 1 when one part covers it). A split sequence's piece s writes partial
  // slot split_offsets[j] + s.
  std::vector<int32_t> split_offsets;

  int32_t NumSplits(int64_t seq) const { return split_offsets[seq + 1] - split_offsets[seq]; }
  // Partial slots (each q_rows_per_seq · num_heads rows of kv_lora_rank floats) to allocate.
  int32_t num_partial_slots() const { return split_offsets.empty() ? 0 : split_offsets.back(); }
};

// Fills `plan` (vectors are reused). INVALID_ARGUMENT when an option is out of range or a
// length is negative or does not fit max_blocks_per_seq blocks.
absl::Status PlanMlaDecode(absl::Span<const int32_t> seq_lens, const MlaDecodePlanOptions& options,
                           MlaDecodePlan* plan);

// The most partial slots a plan for `batch` sequences can need with these options: one
// piece per sequence, and one more for each part boundary that falls inside a sequence
// (at most num_parts - 1, and num_parts never exceeds the columns of CTAs the options
// allow). Buffers sized to it need not move when the plan's own count changes from step
// to step, which a recorded CUDA graph requires.
int64_t MaxPartialSlots(int64_t batch, const MlaDecodePlanOptions& options);

// Query rows of a sparse prefill (DeepSeek-V3.2: each row its own "sequence" with its own
// selection) that one launch of the split-KV kernels takes so that its bf16 q
// (heads · (latent + rope)) and bf16 output (heads · latent) per row and its partial
// results (MaxPartialSlots · heads · (latent + 1) fp32) fit `budget_bytes`; at least 1.
int64_t SparsePrefillGroupRows(int latent, int rope, const MlaDecodePlanOptions& options,
                               int64_t budget_bytes);

// One part's share of one sequence, as the kernel reads it from the plan.
struct MlaDecodePiece {
  int32_t part = 0;
  int32_t seq = 0;
  int32_t block_begin = 0;
  int32_t block_end = 0;
  int32_t split = 0;
};

// The non-empty pieces of every part, in the order the kernel visits them (for tests and
// diagnostics).
std::vector<MlaDecodePiece> ListMlaDecodePieces(const MlaDecodePlan& plan,
                                                absl::Span<const int32_t> seq_lens,
                                                int block_size = kMlaBlockSize);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_HOST_MLA_DECODE_PLAN_H_
