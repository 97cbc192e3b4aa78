#include "server/metrics/engine_collector.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace mla::metrics {
namespace {

MetricFamily Single(std::string name, std::string help, MetricType type, double value,
                    Labels labels = {}) {
  MetricFamily f{std::move(name), std::move(help), type, {}};
  MetricPoint p;
  p.labels = std::move(labels);
  p.value = value;
  f.points.push_back(std::move(p));
  return f;
}

MetricFamily Gauge(std::string name, std::string help, double value, Labels labels = {}) {
  return Single(std::move(name), std::move(help), MetricType::kGauge, value, std::move(labels));
}

void AppendCacheFamilies(const EngineInfo& info, const CacheStats& c,
                         std::vector<MetricFamily>& out) {
  MetricFamily blocks{"mla_kv_cache_blocks",
                      "KV cache blocks by state: used (referenced by a sequence), cached_free "
                      "(unreferenced, still holding a reusable prefix), free (empty)",
                      MetricType::kGauge,
                      {}};
  for (const auto& [state, n] : {std::pair<const char*, int64_t>{"used", c.blocks_used},
                                 {"cached_free", c.blocks_cached_free},
                                 {"free", c.blocks_free}}) {
    MetricPoint p;
    p.labels = {{"state", state}};
    p.value = static_cast<double>(n);
    blocks.points.push_back(std::move(p));
  }
  out.push_back(std::move(blocks));
  struct Scalar {
    const char* name;
    const char* help;
    MetricType type;
    double value;
  };
  const auto d = [](int64_t v) { return static_cast<double>(v); };
  const MetricType kGauge = MetricType::kGauge;
  const MetricType kCounter = MetricType::kCounter;
  const Scalar scalars[] = {
      {"mla_kv_cache_capacity_blocks", "KV cache blocks in all (blocks)", kGauge,
       d(c.blocks_total)},
      {"mla_kv_cache_capacity_bytes", "KV cache size, all layers (bytes)", kGauge,
       d(c.bytes_total)},
      {"mla_kv_cache_used_bytes", "KV cache bytes in blocks referenced by sequences (bytes)",
       kGauge, d(c.bytes_used)},
      {"mla_kv_cache_usage_ratio", "Used KV cache blocks / all blocks (0-1)", kGauge, c.Usage()},
      {"mla_kv_cache_bytes_per_token", "Latent KV cache bytes per token, all layers (bytes)",
       kGauge, d(info.kv_bytes_per_token)},
      {"mla_kv_cache_mha_equivalent_bytes_per_token",
       "Bytes per token the same model would need with a plain multi-head K/V cache, all "
       "layers (bytes)",
       kGauge, d(info.mha_bytes_per_token)},
      {"mla_prefix_cache_query_tokens_total",
       "Prompt tokens looked up in the prefix cache (tokens)", kCounter, d(c.prefix_queries)},
      {"mla_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache (tokens)",
       kCounter, d(c.prefix_hits)},
      {"mla_kv_cache_evictions_total", "Cached-free blocks reused for other contents (blocks)",
       kCounter, d(c.evictions)},
      {"mla_preemptions_total", "Sequences preempted (blocks released, recomputed later)", kCounter,
       d(c.preemptions)},
  };
  for (const Scalar& s : scalars) out.push_back(Single(s.name, s.help, s.type, s.value));
}

// The prefix cache's disk tier (--kv_disk_dir); all zero when it is off.
void AppendDiskTierFamilies(const EngineLoad& load, std::vector<MetricFamily>& out) {
  const DiskTierStats& d = load.disk;
  const auto v = [](int64_t x) { return static_cast<double>(x); };
  out.push_back(Gauge("mla_kv_disk_tier_enabled",
                      "1 while the disk tier is configured and working, 0 when off or disabled "
                      "by a write failure",
                      load.disk_enabled ? 1 : 0));
  out.push_back(
      Gauge("mla_kv_disk_tier_blocks", "Blocks held by the disk tier (blocks)", v(d.blocks)));
  out.push_back(
      Gauge("mla_kv_disk_tier_bytes", "Bytes of the disk tier's files (bytes)", v(d.bytes)));
  out.push_back(Single("mla_kv_disk_tier_hit_tokens_total",
                       "Prompt tokens loaded from the disk tier instead of computed (tokens)",
                       MetricType::kCounter, v(load.disk_hit_tokens)));
  out.push_back(Single("mla_kv_disk_tier_writes_total", "Block files written (blocks)",
                       MetricType::kCounter, v(d.writes)));
  out.push_back(Single("mla_kv_disk_tier_write_failures_total",
                       "Block writes that failed; the first disables the tier (writes)",
                       MetricType::kCounter, v(d.write_failures)));
  out.push_back(Single("mla_kv_disk_tier_corrupt_skipped_total",
                       "Block files found torn, truncated or altered, deleted unread (files)",
                       MetricType::kCounter, v(d.corrupt_skipped)));
  out.push_back(Single("mla_kv_disk_tier_evictions_total",
                       "Block files deleted to stay within --kv_disk_gib (files)",
                       MetricType::kCounter, v(d.evicted)));
}

void AppendInfoFamilies(const EngineInfo& info, const EngineLoad& load,
                        std::vector<MetricFamily>& out) {
  MetricFamily memory = Gauge(
      "mla_memory_bytes",
      "Memory held by kind and device (bytes); kinds: kv_cache, weights, workspace",
      static_cast<double>(load.cache.bytes_total), {{"kind", "kv_cache"}, {"device", info.device}});
  for (const auto& [kind, bytes] : {std::pair<const char*, int64_t>{"weights", info.weight_bytes},
                                    {"workspace", load.workspace_bytes}}) {
    MetricPoint point;
    point.labels = {{"kind", kind}, {"device", info.device}};
    point.value = static_cast<double>(bytes);
    memory.points.push_back(std::move(point));
  }
  out.push_back(std::move(memory));
  Labels cache_config = {{"block_size", absl::StrCat(info.kv_block_size)},
                         {"num_blocks", absl::StrCat(info.kv_num_blocks)},
                         {"cache_dtype", info.cache_dtype}};
  // DeepSeek-V3.2 only: how its indexer keys are cached (--indexer_key_dtype).
  if (!info.index_key_dtype.empty()) {
    cache_config.push_back({"index_key_dtype", info.index_key_dtype});
  }
  out.push_back(
      Gauge("mla_cache_config_info", "KV cache configuration (value 1)", 1, cache_config));
  out.push_back(Gauge("mla_model_info", "The served model (value 1)", 1,
                      {{"model", info.model_name},
                       {"architecture", info.config.architecture},
                       {"weight_dtype", info.weight_dtype},
                       {"device", info.device}}));
  out.push_back(Gauge("mla_max_context_tokens", "Longest prompt plus generation accepted (tokens)",
                      static_cast<double>(info.max_context)));
}

}  // namespace

void AppendEngineFamilies(const EngineInfo& info, const EngineLoad& load,
                          std::vector<MetricFamily>& out) {
  out.push_back(Gauge("mla_requests_running", "Requests in the running batch",
                      static_cast<double>(load.running)));
  out.push_back(Gauge("mla_requests_waiting", "Requests queued for admission",
                      static_cast<double>(load.waiting)));
  AppendCacheFamilies(info, load.cache, out);
  AppendDiskTierFamilies(load, out);
  AppendInfoFamilies(info, load, out);
  // vLLM's names, which Kubernetes' Gateway API inference extension reads. Prometheus
  // reserves ':' for recording rules, but these exact names are what gateways look for.
  out.push_back(Gauge("vllm:num_requests_running", "Alias of mla_requests_running",
                      static_cast<double>(load.running)));
  out.push_back(Gauge("vllm:num_requests_waiting", "Alias of mla_requests_waiting",
                      static_cast<double>(load.waiting)));
  out.push_back(Gauge("vllm:kv_cache_usage_perc",
                      "Alias of mla_kv_cache_usage_ratio (a fraction 0-1, as in vLLM)",
                      load.cache.Usage()));
}

void EngineCollector::SetEngine(std::weak_ptr<const Engine> engine) {
  absl::MutexLock lock(&mu_);
  engine_ = std::move(engine);
}

void EngineCollector::Collect(std::vector<MetricFamily>& out) const {
  std::shared_ptr<const Engine> engine;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_.lock();
  }
  if (engine) AppendEngineFamilies(engine->info(), engine->GetLoad(), out);
}

}  // namespace mla::metrics
