// Which decode regions CudaBackend records as CUDA graphs, replays or runs eagerly (plain
// C++, tested anywhere; cuda_graphs.cc holds the CUDA calls).
//
// A recording bakes in every host value its launches were given, so it replays only for a
// step with the same key; and it points into device buffers, so it replays only while none
// has moved, which the backend counts as a generation (bumped whenever a buffer grows or
// the cache is replaced). A key is recorded the second time it is seen in a generation: its
// first, eager run sizes every buffer, so that a recording allocates nothing. A failed
// recording is not retried for its key until the generation changes.
#ifndef MLA_ENGINE_BACKEND_CUDA_HOST_GRAPH_CACHE_H_
#define MLA_ENGINE_BACKEND_CUDA_HOST_GRAPH_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/backend/cuda/host/moe_plan.h"

namespace mla::cuda {

// Every host value a decode region's launches bake in.
struct StepGraphKey {
  int64_t rows = 0, batch = 0, max_blocks = 0;
  int32_t plan_parts = 0, plan_partial_slots = 0;  // the split-KV plan, when it runs
  bool split_kv = false;
  GroupedExperts grouped = GroupedExperts::kAuto;
  bool operator==(const StepGraphKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const StepGraphKey& k) {
    return H::combine(std::move(h), k.rows, k.batch, k.max_blocks, k.plan_parts,
                      k.plan_partial_slots, k.split_kv, k.grouped);
  }
};

// The recordings, as opaque handles the caller creates and destroys (cudaGraphExec_t).
class StepGraphCache {
 public:
  enum class Action { kEager, kRecord, kReplay };
  struct Decision {
    Action action = Action::kEager;
    void* exec = nullptr;      // kReplay: the recording to launch
    std::vector<void*> stale;  // recordings the caller must destroy now
  };

  // At most `max_graphs` recordings; recording one more drops them all first (a server
  // sees its decode batch sizes times the block-table widths in flight, few at a time).
  explicit StepGraphCache(size_t max_graphs = 256) : max_graphs_(max_graphs) {}

  Decision Decide(const StepGraphKey& key, int64_t generation);
  // After kRecord: the recording succeeded (`exec`), or failed. An aborted recording (a
  // buffer grew meanwhile, so the generation moved) needs neither: the key's next sighting
  // in the new generation runs eagerly first anyway.
  void Recorded(const StepGraphKey& key, int64_t generation, void* exec);
  void Failed(const StepGraphKey& key, int64_t generation);
  // Every recording, for the caller to destroy; the cache forgets them.
  std::vector<void*> TakeAll();
  size_t size() const { return graphs_.size(); }

 private:
  struct Graph {
    void* exec = nullptr;
    int64_t generation = 0;
  };
  size_t max_graphs_;
  absl::flat_hash_map<StepGraphKey, Graph> graphs_;
  absl::flat_hash_map<StepGraphKey, int64_t> seen_, failed_;
};

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_HOST_GRAPH_CACHE_H_
