#include "engine/backend/cpu/mla_split_plan.h"

#include <algorithm>
#include <tuple>

namespace mla::cpu {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Appends the items of one row group, cut into key splits when it is too much work for
// one item.
void PlanRowGroup(int32_t seq_index, const MlaSeqWork& seq, int64_t row_begin, int64_t row_end,
                  int64_t cost, int64_t target, const MlaSplitOptions& options,
                  MlaSplitPlan* plan) {
  const int64_t extent = seq.q_pos0 + row_end;  // Keys the last row sees.
  int64_t splits = 1;
  int64_t chunk = extent;
  if (options.split_kv && cost > target) {
    splits = std::min(CeilDiv(cost, target), extent / options.min_keys_per_split);
    if (splits > 1) {
      const int64_t align = options.key_align;
      chunk = CeilDiv(CeilDiv(extent, splits), align) * align;
      splits = CeilDiv(extent, chunk);
    }
  }
  const int64_t rows = row_end - row_begin;
  plan->max_item_rows = std::max(plan->max_item_rows, rows);
  MlaWorkItem item;
  item.seq = seq_index;
  item.row_begin = static_cast<int32_t>(row_begin);
  item.row_end = static_cast<int32_t>(row_end);
  if (splits <= 1) {
    item.key_end = extent;
    item.cost = cost;
    plan->items.push_back(item);
    return;
  }
  MlaCombineGroup group;
  group.seq = seq_index;
  group.row_begin = item.row_begin;
  group.row_end = item.row_end;
  group.partial_row = plan->num_partial_rows;
  group.num_splits = static_cast<int32_t>(splits);
  plan->combines.push_back(group);
  plan->combine_rows += rows;
  for (int64_t s = 0; s < splits; ++s) {
    item.key_begin = s * chunk;
    item.key_end = std::min(extent, (s + 1) * chunk);
    item.partial_row = group.partial_row + s * rows;
    item.cost = MlaVisiblePairs(seq, row_begin, row_end, item.key_begin, item.key_end);
    plan->items.push_back(item);
  }
  plan->num_partial_rows += splits * rows;
}

}  // namespace

int64_t MlaVisiblePairs(const MlaSeqWork& seq, int64_t row_begin, int64_t row_end,
                        int64_t key_begin, int64_t key_end) {
  if (key_end <= key_begin || row_end <= row_begin) return 0;
  // Row i sees keys below limit_i = q_pos0 + i + 1. Rows with key_begin < limit_i <
  // key_end see (limit_i - key_begin) keys of the range, rows from then on all of it.
  const int64_t partial_begin = std::max(row_begin, key_begin - seq.q_pos0);
  const int64_t full_begin = std::max(row_begin, key_end - seq.q_pos0 - 1);
  const int64_t partial_end = std::min(row_end, full_begin);
  int64_t pairs = 0;
  if (partial_end > partial_begin) {
    const int64_t n = partial_end - partial_begin;
    const int64_t first = seq.q_pos0 + partial_begin + 1 - key_begin;
    pairs += n * first + n * (n - 1) / 2;
  }
  if (row_end > full_begin) pairs += (row_end - full_begin) * (key_end - key_begin);
  return pairs;
}

void PlanMlaSplits(absl::Span<const MlaSeqWork> seqs, const MlaSplitOptions& raw_options,
                   MlaSplitPlan* plan) {
  plan->items.clear();
  plan->combines.clear();
  plan->num_partial_rows = 0;
  plan->combine_rows = 0;
  plan->max_item_rows = 0;
  MlaSplitOptions options = raw_options;
  options.num_workers = std::max<int64_t>(1, options.num_workers);
  options.items_per_worker = std::max<int64_t>(1, options.items_per_worker);
  options.min_keys_per_split = std::max<int64_t>(1, options.min_keys_per_split);
  options.key_align = std::max<int64_t>(1, options.key_align);

  int64_t total = 0;
  for (const MlaSeqWork& seq : seqs) {
    total += MlaVisiblePairs(seq, 0, seq.n_q, 0, seq.q_pos0 + seq.n_q);
  }
  if (total == 0) return;
  // Aim for items of equal work, a few per worker, so that dynamic scheduling can even
  // out what the cost model misses.
  const int64_t target =
      std::max<int64_t>(1, CeilDiv(total, options.num_workers * options.items_per_worker));
  for (size_t j = 0; j < seqs.size(); ++j) {
    const MlaSeqWork& seq = seqs[j];
    int64_t row = 0;
    while (row < seq.n_q) {
      // Greedy: grow the group while it stays within the target (at least one row).
      int64_t end = row + 1;
      int64_t cost = seq.q_pos0 + row + 1;
      while (end < seq.n_q && cost + seq.q_pos0 + end + 1 <= target) {
        cost += seq.q_pos0 + end + 1;
        ++end;
      }
      PlanRowGroup(static_cast<int32_t>(j), seq, row, end, cost, target, options, plan);
      row = end;
    }
  }
  std::sort(plan->items.begin(), plan->items.end(), [](const MlaWorkItem& a, const MlaWorkItem& b) {
    return std::tie(b.cost, a.seq, a.row_begin, a.key_begin) <
           std::tie(a.cost, b.seq, b.row_begin, b.key_begin);
  });
}

}  // namespace mla::cpu
