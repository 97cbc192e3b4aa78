// Scrape-time engine metrics: the families for a given load, and a real engine on the
// tiny model observed by ServingMetrics and read by EngineCollector.
#include "server/metrics/engine_collector.h"

#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "server/metrics/serving_metrics.h"
#include "server/metrics/text_exposition.h"
#include "tests/server/metrics/exposition_parser.h"

namespace mla::metrics {
namespace {

testing::Exposition Parse(const std::vector<MetricFamily>& families) {
  auto e = testing::ParseExposition(TextEncoder().Encode(families));
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *e : testing::Exposition();
}

TEST(EngineFamiliesTest, DiskTierFigures) {
  EngineInfo info;
  EngineLoad load;
  load.disk_enabled = true;
  load.disk_hit_tokens = 4032;
  load.disk.blocks = 63;
  load.disk.bytes = 5 << 20;
  load.disk.writes = 70;
  load.disk.write_failures = 1;
  load.disk.corrupt_skipped = 2;
  load.disk.evicted = 7;
  std::vector<MetricFamily> families;
  AppendEngineFamilies(info, load, families);
  testing::Exposition e = Parse(families);
  auto at = [&](const std::string& s) {
    EXPECT_TRUE(e.samples.contains(s)) << s;
    return e.samples.contains(s) ? e.samples.at(s) : -1.0;
  };
  EXPECT_EQ(at("mla_kv_disk_tier_enabled"), 1);
  EXPECT_EQ(at("mla_kv_disk_tier_blocks"), 63);
  EXPECT_EQ(at("mla_kv_disk_tier_bytes"), 5 << 20);
  EXPECT_EQ(at("mla_kv_disk_tier_hit_tokens_total"), 4032);
  EXPECT_EQ(at("mla_kv_disk_tier_writes_total"), 70);
  EXPECT_EQ(at("mla_kv_disk_tier_write_failures_total"), 1);
  EXPECT_EQ(at("mla_kv_disk_tier_corrupt_skipped_total"), 2);
  EXPECT_EQ(at("mla_kv_disk_tier_evictions_total"), 7);
}

// A DeepSeek-V3.2 model's cache configuration also names its indexer keys' dtype; other
// models' has no such label (above).
TEST(EngineFamiliesTest, CacheConfigNamesTheIndexerKeysDtypeForV32) {
  EngineInfo info;
  info.cache_dtype = "fp8_e4m3";
  info.index_key_dtype = "fp8_e4m3";
  info.kv_block_size = 64;
  info.kv_num_blocks = 7;
  std::vector<MetricFamily> families;
  AppendEngineFamilies(info, EngineLoad(), families);
  const testing::Exposition e = Parse(families);
  EXPECT_TRUE(e.samples.contains(
      "mla_cache_config_info{block_size=\"64\",num_blocks=\"7\",cache_dtype=\"fp8_e4m3\","
      "index_key_dtype=\"fp8_e4m3\"}"));
}

TEST(EngineFamiliesTest, CacheGaugesCountersInfoAndVllmAliases) {
  EngineInfo info;
  info.model_name = "m \"x\"";
  info.config.architecture = "DeepseekV2ForCausalLM";
  info.device = "cpu";
  info.weight_dtype = "bf16";
  info.cache_dtype = "bf16";
  info.kv_block_size = 64;
  info.kv_num_blocks = 100;
  info.kv_bytes_per_token = 31104;
  info.mha_bytes_per_token = 1769472;
  info.max_context = 6400;
  EngineLoad load;
  load.running = 3;
  load.waiting = 7;
  load.cache = {100, 25, 10, 65, 100 * 64 * 31104, 25 * 64 * 31104, 1000, 640, 4, 2};
  load.workspace_bytes = 12345;
  std::vector<MetricFamily> families;
  AppendEngineFamilies(info, load, families);
  testing::Exposition e = Parse(families);
  auto at = [&](const std::string& s) {
    EXPECT_TRUE(e.samples.contains(s)) << s;
    return e.samples.contains(s) ? e.samples.at(s) : -1.0;
  };
  EXPECT_EQ(at("mla_requests_running"), 3);
  EXPECT_EQ(at("mla_requests_waiting"), 7);
  EXPECT_EQ(at("mla_kv_cache_blocks{state=\"used\"}"), 25);
  EXPECT_EQ(at("mla_kv_cache_blocks{state=\"cached_free\"}"), 10);
  EXPECT_EQ(at("mla_kv_cache_blocks{state=\"free\"}"), 65);
  EXPECT_EQ(at("mla_kv_cache_capacity_blocks"), 100);
  EXPECT_EQ(at("mla_kv_cache_capacity_bytes"), 100.0 * 64 * 31104);
  EXPECT_EQ(at("mla_kv_cache_used_bytes"), 25.0 * 64 * 31104);
  EXPECT_DOUBLE_EQ(at("mla_kv_cache_usage_ratio"), 0.25);
  EXPECT_EQ(at("mla_kv_cache_bytes_per_token"), 31104);
  EXPECT_EQ(at("mla_kv_cache_mha_equivalent_bytes_per_token"), 1769472);
  EXPECT_EQ(at("mla_prefix_cache_query_tokens_total"), 1000);
  EXPECT_EQ(at("mla_prefix_cache_hit_tokens_total"), 640);
  EXPECT_EQ(at("mla_kv_cache_evictions_total"), 4);
  EXPECT_EQ(at("mla_preemptions_total"), 2);
  EXPECT_EQ(at("mla_memory_bytes{kind=\"kv_cache\",device=\"cpu\"}"), 100.0 * 64 * 31104);
  EXPECT_EQ(at("mla_memory_bytes{kind=\"workspace\",device=\"cpu\"}"), 12345);
  EXPECT_EQ(at("mla_cache_config_info{block_size=\"64\",num_blocks=\"100\",cache_dtype=\"bf16\"}"),
            1);
  EXPECT_EQ(at("mla_model_info{model=\"m \\\"x\\\"\",architecture=\"DeepseekV2ForCausalLM\","
               "weight_dtype=\"bf16\",device=\"cpu\"}"),
            1);
  EXPECT_EQ(at("mla_max_context_tokens"), 6400);
  EXPECT_EQ(at("vllm:num_requests_running"), 3);
  EXPECT_EQ(at("vllm:num_requests_waiting"), 7);
  EXPECT_DOUBLE_EQ(at("vllm:kv_cache_usage_perc"), 0.25);
  EXPECT_EQ(e.types.at("mla_preemptions_total"), "counter");
  EXPECT_EQ(e.types.at("mla_kv_cache_blocks"), "gauge");
}

TEST(EngineCollectorTest, NothingWithoutAnEngine) {
  EngineCollector collector;
  std::vector<MetricFamily> families;
  collector.Collect(families);
  EXPECT_TRUE(families.empty());
}

// A real engine reports through the observer; the collector reads its load.
TEST(EngineCollectorTest, RealEngineEndToEnd) {
  MetricsRegistry registry;
  ServingMetrics metrics(registry);
  EngineCollector collector;
  registry.AddCollectable(&collector);
  EngineOptions o;
  o.model_dir = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
  o.kv_cache_bytes = 1 << 20;
  o.block_size = 16;
  o.threads = 1;
  o.observer = &metrics;
  absl::StatusOr<std::unique_ptr<Engine>> created = Engine::Create(o);
  ASSERT_TRUE(created.ok()) << created.status();
  std::shared_ptr<Engine> engine = std::move(*created);
  collector.SetEngine(engine);

  GenerationRequest r;
  r.prompt = {5, 6, 7, 8, 9};
  r.max_tokens = 6;
  r.ignore_eos = true;
  absl::Notification done;
  OutputCallback on_output = [&](GenerationOutput out) {
    if (out.finished) done.Notify();
  };
  ASSERT_TRUE(engine->Submit(r, on_output).ok());
  done.WaitForNotification();

  testing::Exposition e = Parse(registry.Collect());
  EXPECT_EQ(e.samples.at("mla_prompt_tokens_total"), 5);
  EXPECT_EQ(e.samples.at("mla_generation_tokens_total"), 6);
  EXPECT_EQ(e.samples.at("mla_requests_finished_total{finished_reason=\"length\",api=\"grpc\"}"),
            1);
  EXPECT_EQ(e.samples.at("mla_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(e.samples.at("mla_inter_token_latency_seconds_count"), 5);
  EXPECT_EQ(e.samples.at("mla_engine_tokens_total{phase=\"prefill\"}"), 5);
  // The last step reports after the request's final output, which woke this thread.
  EXPECT_GE(e.samples.at("mla_engine_step_duration_seconds_count"), 5);
  const EngineInfo& info = engine->info();
  EXPECT_EQ(e.samples.at("mla_kv_cache_capacity_blocks"), info.kv_num_blocks);
  EXPECT_EQ(e.samples.at("mla_kv_cache_blocks{state=\"used\"}"), 0);
  EXPECT_EQ(e.samples.at("mla_kv_cache_bytes_per_token"), info.kv_bytes_per_token);
  EXPECT_GT(info.mha_bytes_per_token, info.kv_bytes_per_token);
  EXPECT_EQ(e.samples.at("mla_prefix_cache_query_tokens_total"), 5);

  engine.reset();  // The collector does not keep the engine alive.
  std::vector<MetricFamily> after;
  collector.Collect(after);
  EXPECT_TRUE(after.empty());
}

}  // namespace
}  // namespace mla::metrics
