// Scrape-time metrics read from the engine: KV cache occupancy in blocks and bytes, the
// latent-versus-MHA bytes per token (what MLA saves), prefix-cache and preemption counters,
// queue lengths, memory by kind, cache and model description, and the vLLM-named aliases
// that Kubernetes' inference gateway routes on. Nothing here is on the engine's hot path:
// Collect copies Engine::GetLoad() (one short mutex hold) once per scrape.
#ifndef MLA_SERVER_METRICS_ENGINE_COLLECTOR_H_
#define MLA_SERVER_METRICS_ENGINE_COLLECTOR_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "server/metrics/metric_family.h"

namespace mla::metrics {

// The families for one reading of the engine (the pure part of EngineCollector).
void AppendEngineFamilies(const EngineInfo& info, const EngineLoad& load,
                          std::vector<MetricFamily>& out);

class EngineCollector final : public Collectable {
 public:
  // Until an engine is set (the model is loading) and after it is gone, Collect adds
  // nothing. The collector does not keep the engine alive, but a scrape in progress holds
  // a reference for its duration: stop scraping before dropping the last reference, so
  // that the engine is never destroyed on a scraping thread.
  void SetEngine(std::weak_ptr<const Engine> engine) ABSL_LOCKS_EXCLUDED(mu_);
  void Collect(std::vector<MetricFamily>& out) const override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::weak_ptr<const Engine> engine_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mla::metrics

#endif  // MLA_SERVER_METRICS_ENGINE_COLLECTOR_H_
