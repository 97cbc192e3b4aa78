#include "server/metrics/attention_metrics.h"

#include "absl/strings/str_cat.h"

namespace mla::metrics {

std::vector<double> AttentionEntropyBuckets() {
  // log(n) nats is a flat distribution over n keys: log(128K) = 11.8.
  return {0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 7, 8, 10, 12};
}

std::vector<double> AttentionMaxWeightBuckets() {
  return {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99};
}

std::string ContextBucketLabel(int64_t context_tokens) {
  for (int64_t bound : {256, 1024, 4096, 16384, 32768, 65536, 131072}) {
    if (context_tokens <= bound) return absl::StrCat(bound);
  }
  return "+Inf";
}

AttentionMetrics::AttentionMetrics(MetricsRegistry& registry)
    : entropy_(&registry.AddHistogram(
          "mla_attention_entropy_nats",
          "Entropy of sampled decode rows' attention, mean over heads, by layer and context "
          "length bucket (nats; log(n) is uniform over n keys)",
          AttentionEntropyBuckets(), {"layer", "context"})),
      max_weight_(&registry.AddHistogram(
          "mla_attention_max_weight",
          "Largest attention weight of sampled decode rows, mean over heads, by layer and "
          "context length bucket (ratio)",
          AttentionMaxWeightBuckets(), {"layer", "context"})) {}

void AttentionMetrics::Record(const AttentionSharpness& probe) {
  auto key = std::make_pair(probe.layer, ContextBucketLabel(probe.context_tokens));
  auto it = series_.find(key);
  if (it == series_.end()) {
    const std::vector<std::string> labels = {absl::StrCat(probe.layer), key.second};
    it = series_
             .emplace(std::move(key), std::make_pair(&entropy_->WithLabels(labels),
                                                     &max_weight_->WithLabels(labels)))
             .first;
  }
  it->second.first->Observe(probe.entropy);
  it->second.second->Observe(probe.max_weight);
}

}  // namespace mla::metrics
