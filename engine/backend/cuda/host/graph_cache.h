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
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/host/moe_plan.h"

namespace mla::cuda {

// Every host value a decode region's launches bake in. What changes from one decode step
// to the next stays out of it: the sequences' lengths and the split-KV plan's pieces are
// device data the region reads, the partial-result buffers are sized for the plan's
// bound (MaxPartialSlots), and the block table's width moves in buckets.
struct StepGraphKey {
  int64_t rows = 0, batch = 0;
  int64_t table_width = 0;  // BlockTableWidth of the step's longest table
  int32_t plan_parts = 0;   // the split-KV plan's grid, when it runs
  bool split_kv = false;
  GroupedExperts grouped = GroupedExperts::kAuto;
  uint32_t variant = 0;  // the model's decisions inside the region (BeginGraphRegion)
  bool operator==(const StepGraphKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const StepGraphKey& k) {
    return H::combine(std::move(h), k.rows, k.batch, k.table_width, k.plan_parts, k.split_kv,
                      k.grouped, k.variant);
  }
};

// The row length of the block table on the device for a step whose longest table holds
// `max_blocks` blocks: a power of two, at least kMinBlockTableWidth. A width that followed
// the longest sequence would change the key every block (every 64 tokens), and with it the
// recording; in buckets a decode batch keeps its recording until its longest sequence
// doubles. The padding costs a few int32 per sequence, and no kernel reads past a
// sequence's own blocks.
inline constexpr int64_t kMinBlockTableWidth = 4;
int64_t BlockTableWidth(int64_t max_blocks);

// The key of a step of `rows` query rows over `batch` sequences whose longest block table
// holds `max_blocks` blocks; `split_plan` is the step's split-KV plan when that kernel
// runs it, else null.
StepGraphKey DecodeStepKey(int64_t rows, int64_t batch, int64_t max_blocks,
                           const MlaDecodePlan* split_plan, GroupedExperts grouped);

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
