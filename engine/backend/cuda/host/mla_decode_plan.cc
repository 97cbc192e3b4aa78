#include "engine/backend/cuda/host/mla_decode_plan.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace mla::cuda {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t Columns(const MlaDecodePlanOptions& o, int64_t head_tiles) {
  return std::max<int64_t>(1, o.num_sms / std::max<int64_t>(1, head_tiles));
}

absl::Status CheckOptions(absl::Span<const int32_t> seq_lens, const MlaDecodePlanOptions& o) {
  if (o.num_sms < 1) return absl::InvalidArgumentError("num_sms must be >= 1");
  if (o.num_heads < 1) return absl::InvalidArgumentError("num_heads must be >= 1");
  if (o.q_rows_per_seq < 1) return absl::InvalidArgumentError("q_rows_per_seq must be >= 1");
  if (o.rows_per_cta < 1) return absl::InvalidArgumentError("rows_per_cta must be >= 1");
  if (o.block_size < 1) return absl::InvalidArgumentError("block_size must be >= 1");
  if (o.max_blocks_per_seq < 0) {
    return absl::InvalidArgumentError("max_blocks_per_seq must be >= 0");
  }
  if (seq_lens.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("too many sequences");
  }
  const int64_t capacity = int64_t{o.max_blocks_per_seq} * o.block_size;
  for (size_t j = 0; j < seq_lens.size(); ++j) {
    if (seq_lens[j] < 0 || seq_lens[j] > capacity) {
      return absl::InvalidArgumentError(absl::StrCat(
          "seq_lens[", j, "] = ", seq_lens[j], " is outside [0, ", capacity,
          "] (max_blocks_per_seq ", o.max_blocks_per_seq, " × block_size ", o.block_size, ")"));
    }
    // Query row i of a sequence of n tokens sits at position n - s_q + i: fewer than s_q
    // tokens would put rows before the sequence's start.
    if (seq_lens[j] > 0 && seq_lens[j] < o.q_rows_per_seq) {
      return absl::InvalidArgumentError(absl::StrCat("seq_lens[", j, "] = ", seq_lens[j],
                                                     " is shorter than q_rows_per_seq ",
                                                     o.q_rows_per_seq));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PlanMlaDecode(absl::Span<const int32_t> seq_lens, const MlaDecodePlanOptions& o,
                           MlaDecodePlan* plan) {
  if (absl::Status s = CheckOptions(seq_lens, o); !s.ok()) return s;
  const int32_t batch = static_cast<int32_t>(seq_lens.size());
  // seq_start[j]: index of sequence j's first block in the concatenated block list.
  std::vector<int64_t> seq_start(batch + 1, 0);
  for (int32_t j = 0; j < batch; ++j) {
    seq_start[j + 1] = seq_start[j] + CeilDiv(seq_lens[j], o.block_size);
  }
  const int64_t total = seq_start[batch];
  plan->total_blocks = total;
  plan->num_head_tiles =
      static_cast<int32_t>(CeilDiv(int64_t{o.q_rows_per_seq} * o.num_heads, o.rows_per_cta));
  // One column of CTAs per part; more parts than blocks would only add empty parts.
  const int64_t columns = Columns(o, plan->num_head_tiles);
  plan->num_parts = static_cast<int32_t>(std::max<int64_t>(1, std::min(columns, total)));
  plan->parts.assign(plan->num_parts, MlaDecodePart{});
  std::vector<int32_t> pieces(batch, 0);  // Parts that touch each sequence so far.

  int32_t seq = 0;  // Sequence holding the current block; only moves forward.
  for (int32_t p = 0; p < plan->num_parts && total > 0; ++p) {
    // Floor division makes every run floor(total/parts) or that plus one blocks long.
    const int64_t g0 = total * p / plan->num_parts;
    const int64_t g1 = total * (p + 1) / plan->num_parts;
    MlaDecodePart& part = plan->parts[p];
    while (seq_start[seq + 1] <= g0) ++seq;  // Skips empty sequences too.
    part.begin_seq = seq;
    part.begin_block = static_cast<int32_t>(g0 - seq_start[seq]);
    part.begin_split = pieces[seq];
    int32_t last = seq;
    while (seq_start[last + 1] < g1) ++last;  // Sequence holding block g1 - 1.
    part.end_seq = last;
    part.end_block = static_cast<int32_t>(g1 - seq_start[last]);
    for (int32_t j = seq; j <= last; ++j) {
      if (seq_start[j + 1] > seq_start[j]) ++pieces[j];
    }
  }
  plan->split_offsets.assign(batch + 1, 0);
  for (int32_t j = 0; j < batch; ++j)
    plan->split_offsets[j + 1] = plan->split_offsets[j] + pieces[j];
  return absl::OkStatus();
}

int64_t MaxPartialSlots(int64_t batch, const MlaDecodePlanOptions& o) {
  const int64_t tiles = CeilDiv(int64_t{o.q_rows_per_seq} * o.num_heads, o.rows_per_cta);
  return std::max<int64_t>(0, batch) + Columns(o, tiles) - 1;
}

int64_t SparsePrefillGroupRows(int latent, int rope, const MlaDecodePlanOptions& o,
                               int64_t budget_bytes) {
  const int64_t heads = std::max(o.num_heads, 1);
  const int64_t per_row = heads * (2 * int64_t{latent + rope} + 2 * int64_t{latent});
  const int64_t per_slot = heads * 4 * (int64_t{latent} + 1);
  // MaxPartialSlots(rows) = rows + (its columns − 1): the columns do not depend on rows.
  const int64_t extra_slots = MaxPartialSlots(0, o);
  const int64_t room = budget_bytes - extra_slots * per_slot;
  return std::max<int64_t>(1, room / (per_row + per_slot));
}

std::vector<MlaDecodePiece> ListMlaDecodePieces(const MlaDecodePlan& plan,
                                                absl::Span<const int32_t> seq_lens,
                                                int block_size) {
  std::vector<MlaDecodePiece> out;
  for (int32_t p = 0; p < static_cast<int32_t>(plan.parts.size()); ++p) {
    const MlaDecodePart& part = plan.parts[p];
    for (int32_t j = part.begin_seq; j <= part.end_seq; ++j) {
      const int32_t blocks = static_cast<int32_t>(CeilDiv(seq_lens[j], block_size));
      const MlaDecodePieceRange r = MlaPieceOf(part, j, blocks);
      if (r.block_begin < r.block_end) out.push_back({p, j, r.block_begin, r.block_end, r.split});
    }
  }
  return out;
}

}  // namespace mla::cuda
