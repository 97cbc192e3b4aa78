// Attention-sharpness histograms (telemetry, off unless --attention_probe_every is set):
// the entropy and the largest weight of sampled rows' attention, by layer and by a
// context-length bucket, so that a dashboard can show whether attention flattens as
// contexts grow.
#ifndef MLA_SERVER_METRICS_ATTENTION_METRICS_H_
#define MLA_SERVER_METRICS_ATTENTION_METRICS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/request.h"
#include "server/metrics/metrics.h"

namespace mla::metrics {

std::vector<double> AttentionEntropyBuckets();    // nats
std::vector<double> AttentionMaxWeightBuckets();  // (0, 1]
// The `context` label of a context length: the smallest of 256, 1024, 4096, 16384, 32768,
// 65536, 131072 that holds it, or "+Inf".
std::string ContextBucketLabel(int64_t context_tokens);

class AttentionMetrics {
 public:
  // Registers the two families in `registry`, which must outlive this object.
  explicit AttentionMetrics(MetricsRegistry& registry);

  // Engine thread only: series are cached here after their first use, so only a new
  // (layer, context bucket) pair takes the family's lock.
  void Record(const AttentionSharpness& probe);

 private:
  Family<Histogram>* entropy_;
  Family<Histogram>* max_weight_;
  absl::flat_hash_map<std::pair<int, std::string>, std::pair<Histogram*, Histogram*>> series_;
};

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_ATTENTION_METRICS_H_
