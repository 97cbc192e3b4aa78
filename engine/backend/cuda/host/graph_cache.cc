#include "engine/backend/cuda/host/graph_cache.h"

namespace mla::cuda {

int64_t BlockTableWidth(int64_t max_blocks) {
  int64_t width = kMinBlockTableWidth;
  while (width < max_blocks) width *= 2;
  return width;
}

StepGraphKey DecodeStepKey(int64_t rows, int64_t batch, int64_t max_blocks,
                           const MlaDecodePlan* split_plan, GroupedExperts grouped) {
  StepGraphKey k;
  k.rows = rows;
  k.batch = batch;
  k.table_width = BlockTableWidth(max_blocks);
  k.split_kv = split_plan != nullptr;
  if (k.split_kv) k.plan_parts = split_plan->num_parts;
  k.grouped = grouped;
  return k;
}

StepGraphCache::Decision StepGraphCache::Decide(const StepGraphKey& key, int64_t generation) {
  Decision d;
  if (auto it = graphs_.find(key); it != graphs_.end()) {
    if (it->second.generation == generation) {
      d.action = Action::kReplay;
      d.exec = it->second.exec;
      return d;
    }
    d.stale.push_back(it->second.exec);  // points into buffers that have moved
    graphs_.erase(it);
  }
  if (auto failed = failed_.find(key); failed != failed_.end() && failed->second == generation) {
    return d;
  }
  auto [seen, fresh] = seen_.try_emplace(key, generation);
  if (fresh || seen->second != generation) {
    seen->second = generation;
    return d;
  }
  if (graphs_.size() >= max_graphs_) {
    for (void* exec : TakeAll()) d.stale.push_back(exec);
  }
  d.action = Action::kRecord;
  return d;
}

void StepGraphCache::Recorded(const StepGraphKey& key, int64_t generation, void* exec) {
  graphs_[key] = {exec, generation};
}

void StepGraphCache::Failed(const StepGraphKey& key, int64_t generation) {
  failed_[key] = generation;
}

std::vector<void*> StepGraphCache::TakeAll() {
  std::vector<void*> all;
  all.reserve(graphs_.size());
  for (const auto& [key, g] : graphs_) all.push_back(g.exec);
  graphs_.clear();
  return all;
}

}  // namespace mla::cuda
