// Work planning for the CPU MLA attention: which (sequence, query rows, key range) pieces
// run in parallel, and which pieces' partial results must be merged afterwards.
//
// Query rows of a sequence are independent, so long prefill chunks are first cut into
// groups of rows. A group whose keys alone are too much work for one thread (a long
// decode, the usual case) is also cut along its keys ("split-KV"): each split yields a
// partial output and log-sum-exp that a combine step merges. Plain host code with no
// knowledge of the data, so that it can be tested on its own.
#ifndef MLA_ENGINE_BACKEND_CPU_MLA_SPLIT_PLAN_H_
#define MLA_ENGINE_BACKEND_CPU_MLA_SPLIT_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace mla::cpu {

// The query rows of one sequence: n_q rows at positions q_pos0 .. q_pos0 + n_q - 1. Row i
// attends causally to keys [0, q_pos0 + i].
struct MlaSeqWork {
  int64_t n_q = 0;
  int64_t q_pos0 = 0;
};

struct MlaSplitOptions {
  int64_t num_workers = 1;           // Threads that will take items.
  int64_t items_per_worker = 2;      // Granularity: more items balance better, cost more merges.
  bool split_kv = true;              // false: never cut a row group's keys.
  int64_t min_keys_per_split = 512;  // A split below this costs more to merge than it saves.
  int64_t key_align = 64;            // Split boundaries are multiples of this.
};

// Rows [row_begin, row_end) of sequence `seq` against keys [key_begin, key_end). A row i
// sees only the keys of this range below q_pos0 + i + 1 (possibly none).
struct MlaWorkItem {
  int32_t seq = 0;
  int32_t row_begin = 0;
  int32_t row_end = 0;
  int64_t key_begin = 0;
  int64_t key_end = 0;
  // -1: the item covers all keys of its rows and writes the final output. Otherwise the
  // first of (row_end - row_begin) rows of the partial-result buffers it writes.
  int64_t partial_row = -1;
  int64_t cost = 0;  // (query row, visible key) pairs: the work per head.
};

// A row group that was split along its keys: its splits wrote partial rows
// partial_row + s·(row_end - row_begin) for s < num_splits, in key order.
struct MlaCombineGroup {
  int32_t seq = 0;
  int32_t row_begin = 0;
  int32_t row_end = 0;
  int64_t partial_row = 0;
  int32_t num_splits = 0;
};

struct MlaSplitPlan {
  std::vector<MlaWorkItem> items;  // Costliest first: the order workers should take them.
  std::vector<MlaCombineGroup> combines;
  int64_t num_partial_rows = 0;  // Rows of partial output (each num_heads × L) needed.
  int64_t combine_rows = 0;      // Σ over combines of (row_end - row_begin).
  int64_t max_item_rows = 0;     // Largest row_end - row_begin over items.
};

// (row, visible key) pairs of rows [row_begin, row_end) within keys [key_begin, key_end).
int64_t MlaVisiblePairs(const MlaSeqWork& seq, int64_t row_begin, int64_t row_end,
                        int64_t key_begin, int64_t key_end);

// Fills `plan` (its vectors are reused, so a plan kept across calls stops allocating).
// Sequences with n_q == 0 get no items. Every (row, visible key) pair of every sequence
// is covered by exactly one item. Options are clamped to sane values (>= 1).
void PlanMlaSplits(absl::Span<const MlaSeqWork> seqs, const MlaSplitOptions& options,
                   MlaSplitPlan* plan);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_MLA_SPLIT_PLAN_H_
