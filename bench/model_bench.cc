// End-to-end prefill and decode throughput of the CPU forward pass (DeepseekModel) on one
// sequence, against the read bandwidth and FMA peak measured in the same run.
//
//   mla_model_bench --model_dir=DIR [--contexts=512,4096,16384] [--decode_tokens=32]
//                   [--threads=0] [--prefill_chunk=512] [--json=FILE] [--breakdown]
//                   [--isas=avx2,avx512_bf16] [--kv_cache_dtype=bf16|fp8]
//                   [--attention_paths=absorbed,decompressed] [--rounds=1]
//
// For each context N: a fresh paged cache sized for N + decode_tokens (block size 64), a
// random prompt (fixed seed), prefill in chunks of --prefill_chunk tokens with logits for
// the last token of each chunk only (what the engine's chunked prefill does), then
// --decode_tokens greedy single-token steps starting at position N.
//
// Decode reads every active weight once per token (attention, dense MLP, router, shared
// and top-k experts, lm_head) plus the latent cache of every layer, so bytes per token
// divided by time per token is the bandwidth decode achieves; compare it to the roofline.
//
// --isas runs every context once per listed kernel variant (cpu_features.h), one after
// the other in this process, and ends with their speeds as ratios to the first variant's:
// a before/after comparison from one run. --json and --breakdown then describe the first.
// --attention_paths does the same for the model's attention path (auto, absorbed,
// decompressed: engine/model/attention_path.h), crossed with --isas. --rounds repeats the
// whole interleaved sequence and keeps each variant's best prefill and best decode.
//
// Before timing, every variant runs one untimed prefill chunk and two decode steps
// (--warmup, default on), so first-touch costs (activation buffers, kernels' scratch) are
// not charged to the first context; llama.cpp's driver warms up the same way.
//
// --breakdown turns on the backend's timing by named operation (engine/backend/
// op_profile.h) for the whole run and prints, per context, each operation's mean time per
// prefill chunk and per decode step: the real forward pass, not a replay. The timers cost
// two clock reads per operation (a few hundred per layer and step), well under 1%.
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "bench/roofline.h"
#include "common/status_macros.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/cache_row.h"
#include "engine/kv_cache/latent_cache.h"
#include "engine/model/attention_path.h"
#include "engine/model/deepseek_model.h"

ABSL_FLAG(std::string, model_dir, "models/tiny-v2-lite", "Hugging Face model directory");
ABSL_FLAG(std::vector<std::string>, contexts, std::vector<std::string>({"512", "4096", "16384"}),
          "Prompt lengths to prefill, comma-separated");
ABSL_FLAG(int, decode_tokens, 32, "Single-token decode steps after each prefill");
ABSL_FLAG(int, threads, 0, "Threads of the pool, the caller included (0: all cores)");
ABSL_FLAG(int, prefill_chunk, 512, "Tokens per prefill forward step");
ABSL_FLAG(std::string, json, "", "Also write the results to this JSON file");
ABSL_FLAG(bool, breakdown, false, "Time the groups of operations of one chunk and one step");
ABSL_FLAG(bool, fill_cache, false,
          "Skip prefill: fill the cache with random latents and time decode only");
ABSL_FLAG(std::vector<std::string>, isas, {},
          "Kernel variants to compare (e.g. avx2,avx512_bf16); empty: the library's choice");
ABSL_FLAG(std::vector<std::string>, attention_paths, {},
          "Attention paths to compare (auto, absorbed, decompressed); empty: the model's default");
ABSL_FLAG(bool, warmup, true, "Run one untimed chunk and two decode steps per variant first");
ABSL_FLAG(int, rounds, 1, "Interleaved rounds; each variant keeps its best prefill and decode");
ABSL_FLAG(std::string, kv_cache_dtype, "bf16", "Latent cache layout: bf16 or fp8");
ABSL_FLAG(bool, roofline, true, "Measure read bandwidth and FMA peak first (a few seconds)");

namespace mla::bench {
namespace {

constexpr int kBlockSize = 64;
constexpr uint32_t kPromptSeed = 20240607;

int64_t Bytes(const Matrix& m) { return static_cast<int64_t>(m.data.size()); }
int64_t Bytes(const MlpWeights& w) { return Bytes(w.gate) + Bytes(w.up) + Bytes(w.down); }

// Weight bytes one decode token reads: everything but the experts a token does not use
// and the embedding table (one row). Norm vectors are left out (a few KB).
struct ActiveBytes {
  int64_t attention = 0, dense_mlp = 0, moe_shared = 0, moe_routed = 0, lm_head = 0;
  int64_t total() const { return attention + dense_mlp + moe_shared + moe_routed + lm_head; }
};

ActiveBytes CountActiveBytes(const ModelConfig& c, const ModelWeights& w) {
  ActiveBytes b;
  for (const LayerWeights& l : w.layers) {
    const AttentionWeights& a = l.attn;
    b.attention += Bytes(a.q_proj) + Bytes(a.q_a_proj) + Bytes(a.q_b_proj) +
                   Bytes(a.kv_a_proj_with_mqa) + Bytes(a.kv_b_proj) + Bytes(a.o_proj);
    if (!l.is_moe) {
      b.dense_mlp += Bytes(l.mlp);
      continue;
    }
    b.moe_shared += Bytes(l.moe.gate) + Bytes(l.moe.shared);
    b.moe_routed += c.num_experts_per_tok * Bytes(l.moe.experts.front());
  }
  b.lm_head = Bytes(w.lm_head);
  return b;
}

void PrintGeometry(const ModelConfig& c, const ModelWeights& w, const ActiveBytes& a) {
  int dense = 0;
  for (const LayerWeights& l : w.layers) dense += l.is_moe ? 0 : 1;
  std::printf(
      "model: %s, %d layers (%d dense, %d MoE), hidden %d, %d heads, q_lora %d, "
      "kv_lora %d, nope/rope/v %d/%d/%d\n",
      c.architecture.c_str(), c.num_hidden_layers, dense, c.num_hidden_layers - dense,
      c.hidden_size, c.num_attention_heads, c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim,
      c.qk_rope_head_dim, c.v_head_dim);
  std::printf("mlp: dense %d, experts %d x %d, %d shared, top-%d; vocab %d\n", c.intermediate_size,
              c.n_routed_experts, c.moe_intermediate_size, c.n_shared_experts,
              c.num_experts_per_tok, c.vocab_size);
  std::printf(
      "weights: %s, %.3f GB stored; read per decode token %.1f MB (attention %.1f, "
      "dense %.1f, router+shared %.1f, top-k experts %.1f, lm_head %.1f)\n",
      DTypeName(w.dtype), w.bytes / 1e9, a.total() / 1e6, a.attention / 1e6, a.dense_mlp / 1e6,
      a.moe_shared / 1e6, a.moe_routed / 1e6, a.lm_head / 1e6);
}

struct ContextResult {
  int64_t context = 0;
  double prefill_s = 0, decode_s = 0;
  // Process CPU time (user + system) over the same spans: on a shared machine the pool's
  // threads may get less than their share, and every ParallelFor waits for the slowest.
  double prefill_cpu_s = 0, decode_cpu_s = 0;
  int64_t prefill_chunks = 0;
  int decode_tokens = 0;
  bool has_prefill() const { return prefill_s > 0; }
  double prefill_tps() const { return has_prefill() ? context / prefill_s : 0; }
  double decode_tps() const { return decode_tokens > 0 ? decode_tokens / decode_s : 0; }
  // Breakdown (when asked): seconds per operation name, mean per prefill chunk and per
  // decode step.
  bool has_breakdown = false;
  std::vector<OpTiming> prefill_ops, decode_ops;
};

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int32_t Argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// The backend's cache (reallocated) and a block table holding `tokens` positions of one
// sequence.
struct SequenceCache {
  LatentCache* cache = nullptr;
  std::unique_ptr<BlockPool> pool;
  std::unique_ptr<BlockTable> table;
};

absl::StatusOr<SequenceCache> MakeSequenceCache(cpu::CpuBackend& backend, const ModelConfig& c,
                                                int64_t tokens) {
  MLA_ASSIGN_OR_RETURN(const CacheDType dtype,
                       ParseCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype)));
  MLA_ASSIGN_OR_RETURN(CacheLayout layout,
                       CacheLayout::Create({dtype, c.kv_lora_rank, c.qk_rope_head_dim, kBlockSize,
                                            c.num_hidden_layers}));
  const int32_t blocks = static_cast<int32_t>(layout.BlocksForTokens(tokens));
  MLA_RETURN_IF_ERROR(backend.AllocateCache(layout, blocks));
  SequenceCache s{backend.latent_cache(), std::make_unique<BlockPool>(blocks),
                  std::make_unique<BlockTable>(kBlockSize)};
  MLA_RETURN_IF_ERROR(s.table->Append(tokens, *s.pool));
  return s;
}

// Prefills `prompt` in chunks; returns the logits of the last token.
absl::StatusOr<std::vector<float>> Prefill(DeepseekModel& model, const std::vector<int32_t>& prompt,
                                           int64_t chunk, SequenceCache& s, ContextResult& r) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  std::vector<float> logits;
  const double start = Now(), cpu_start = CpuSeconds();
  double last_report = start;
  for (int64_t pos = 0; pos < n; pos += chunk, ++r.prefill_chunks) {
    const int64_t m = std::min(chunk, n - pos);
    const SequenceChunk step{std::span<const int32_t>(prompt.data() + pos, m), pos, s.table.get(),
                             false};
    MLA_ASSIGN_OR_RETURN(logits, model.ForwardToHost({&step, 1}));
    if (Now() - last_report > 10.0) {
      last_report = Now();
      std::fprintf(stderr, "  prefill %lld/%lld tokens, %.1f s\n", static_cast<long long>(pos + m),
                   static_cast<long long>(n), last_report - start);
    }
  }
  r.prefill_s = Now() - start;
  r.prefill_cpu_s = CpuSeconds() - cpu_start;
  return logits;
}

// Writes random latents (RMS about 1, like the normalized c_kv) for positions [0, n):
// decode timing does not depend on the values, so long contexts need no prefill.
absl::Status FillCache(const ModelConfig& c, int64_t n, SequenceCache& s) {
  constexpr int64_t kRows = 1024;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> rows(kRows * c.latent_dim());
  for (float& v : rows) v = normal(rng);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (int64_t pos = 0; pos < n; pos += kRows) {
      const int64_t m = std::min(kRows, n - pos);
      MLA_RETURN_IF_ERROR(s.cache->WriteTokens(l, *s.table, pos, m, rows.data(), c.latent_dim(),
                                               rows.data() + c.kv_lora_rank, c.latent_dim()));
    }
  }
  return absl::OkStatus();
}

// Greedy single-token steps at positions context, context + 1, ...
absl::Status Decode(DeepseekModel& model, std::vector<float> logits, SequenceCache& s,
                    ContextResult& r) {
  const double start = Now(), cpu_start = CpuSeconds();
  for (int i = 0; i < r.decode_tokens; ++i) {
    const int32_t next = Argmax(logits);
    const SequenceChunk step{std::span<const int32_t>(&next, 1), r.context + i, s.table.get(),
                             false};
    MLA_ASSIGN_OR_RETURN(logits, model.ForwardToHost({&step, 1}));
  }
  r.decode_s = Now() - start;
  r.decode_cpu_s = CpuSeconds() - cpu_start;
  return absl::OkStatus();
}

// Mean seconds per call group: every timing divided by `count` (chunks or steps).
std::vector<OpTiming> PerStep(std::vector<OpTiming> ops, int64_t count) {
  for (OpTiming& op : ops) op.seconds /= std::max<int64_t>(count, 1);
  return ops;
}

absl::StatusOr<ContextResult> RunContext(cpu::CpuBackend& backend, DeepseekModel& model,
                                         int64_t context, int decode, int64_t chunk,
                                         bool breakdown) {
  const ModelConfig& c = model.config();
  MLA_ASSIGN_OR_RETURN(SequenceCache s, MakeSequenceCache(backend, c, context + decode));
  OpProfiler& profiler = backend.profiler();
  profiler.set_enabled(breakdown);
  profiler.Take();
  std::mt19937 rng(kPromptSeed);
  std::uniform_int_distribution<int32_t> token(0, c.vocab_size - 1);
  std::vector<int32_t> prompt(context);
  for (int32_t& t : prompt) t = token(rng);

  ContextResult r;
  r.context = context;
  r.decode_tokens = decode;
  std::vector<float> logits(c.vocab_size, 0.0f);
  if (absl::GetFlag(FLAGS_fill_cache)) {
    MLA_RETURN_IF_ERROR(FillCache(c, context, s));
  } else {
    MLA_ASSIGN_OR_RETURN(logits, Prefill(model, prompt, chunk, s, r));
  }
  r.prefill_ops = PerStep(profiler.Take(), r.prefill_chunks);
  std::fprintf(stderr, "  prefill %lld tokens: %.2f s; decoding %d tokens\n",
               static_cast<long long>(context), r.prefill_s, decode);
  MLA_RETURN_IF_ERROR(Decode(model, std::move(logits), s, r));
  r.decode_ops = PerStep(profiler.Take(), r.decode_tokens);
  r.has_breakdown = breakdown;
  return r;
}

// What one token costs: the weights it reads (decode) and the FLOPs it does (prefill).
struct Costs {
  ActiveBytes active;
  int64_t kv_bytes_per_token = 0;      // all layers
  double linear_flops = 0;             // per token, every linear layer but lm_head
  double lm_head_flops = 0;            // per logits row
  double attention_flops_per_key = 0;  // per query token and visible key, all layers

  Costs(const ModelConfig& c, const ModelWeights& w) : active(CountActiveBytes(c, w)) {
    const double elem = static_cast<double>(DTypeSize(w.dtype));
    const absl::StatusOr<CacheDType> dtype = ParseCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype));
    kv_bytes_per_token =
        CacheRowBytes(dtype.ok() ? *dtype : CacheDType::kBF16, c.kv_lora_rank, c.qk_rope_head_dim) *
        c.num_hidden_layers;
    linear_flops = 2.0 * (active.total() - active.lm_head) / elem;
    lm_head_flops = 2.0 * active.lm_head / elem;
    // Absorbed attention: a (L + R)-wide score and an L-wide weighted sum per head.
    attention_flops_per_key =
        2.0 * (c.latent_dim() + c.kv_lora_rank) * c.num_attention_heads * c.num_hidden_layers;
  }
  double PrefillFlops(const ContextResult& r) const {
    const double n = static_cast<double>(r.context);
    return n * linear_flops + r.prefill_chunks * lm_head_flops +
           n * (n + 1) / 2 * attention_flops_per_key;
  }
};

void PrintResults(const std::vector<ContextResult>& results, const Costs& costs, int threads) {
  std::printf("%7s %9s %11s %9s %7s %10s %11s %12s %12s %7s\n", "context", "prefill s",
              "prefill t/s", "GFLOP/s", "cpu%", "decode t/s", "decode ms/t", "weights GB/s",
              "+cache GB/s", "cpu%");
  for (const ContextResult& r : results) {
    char prefill[64] = "        -           -         -       -";
    if (r.has_prefill()) {
      std::snprintf(prefill, sizeof(prefill), "%9.2f %11.1f %9.1f %6.0f%%", r.prefill_s,
                    r.prefill_tps(), costs.PrefillFlops(r) / r.prefill_s / 1e9,
                    100 * r.prefill_cpu_s / (r.prefill_s * threads));
    }
    // Decode steps run at positions context .. context + decode - 1.
    const double kv = costs.kv_bytes_per_token * (r.context + (r.decode_tokens + 1) / 2.0);
    const double tps = r.decode_tps();
    std::printf("%7lld %s %10.2f %11.2f %12.1f %12.1f %6.0f%%\n", static_cast<long long>(r.context),
                prefill, tps, tps > 0 ? 1e3 / tps : 0, costs.active.total() * tps / 1e9,
                (costs.active.total() + kv) * tps / 1e9,
                tps > 0 ? 100 * r.decode_cpu_s / (r.decode_s * threads) : 0);
  }
}

// One kernel level and attention path combination to time.
struct Variant {
  cpu::CpuIsa isa = cpu::CpuIsa::kScalar;
  AttentionPath path = AttentionPath::kAuto;
  std::string name;
};

// Throughput of each variant after the first as a ratio to the first's, per context.
void PrintVariantRatios(const std::vector<Variant>& variants,
                        const std::vector<std::vector<ContextResult>>& results) {
  std::printf("\nspeed against %s in this run (tokens/s ratio):\n%-24s %7s %8s %8s\n",
              variants[0].name.c_str(), "variant", "context", "prefill", "decode");
  for (size_t i = 1; i < variants.size(); ++i) {
    for (size_t k = 0; k < results[i].size(); ++k) {
      const ContextResult& a = results[0][k];
      const ContextResult& b = results[i][k];
      std::printf("%-24s %7lld %7.2fx %7.2fx\n", variants[i].name.c_str(),
                  static_cast<long long>(b.context),
                  a.has_prefill() ? b.prefill_tps() / a.prefill_tps() : 0,
                  a.decode_tps() > 0 ? b.decode_tps() / a.decode_tps() : 0);
    }
  }
}

// The better of two runs of one variant and context: prefill and decode each from the
// faster run.
void KeepBest(const ContextResult& r, ContextResult& best) {
  if (r.prefill_tps() > best.prefill_tps()) {
    best.prefill_s = r.prefill_s;
    best.prefill_cpu_s = r.prefill_cpu_s;
    best.prefill_chunks = r.prefill_chunks;
  }
  if (r.decode_tps() > best.decode_tps()) {
    best.decode_s = r.decode_s;
    best.decode_cpu_s = r.decode_cpu_s;
    best.decode_tokens = r.decode_tokens;
  }
}

// Every named operation's mean time per prefill chunk and per decode step (summed over
// layers), in the order the forward pass first issued them: the prefill's, then those
// only decode issues (at long contexts prefill takes the decompressed attention path and
// decode the absorbed one, whose operations would otherwise be missing from the table).
void PrintBreakdown(const ContextResult& r) {
  double pre_sum = 0, dec_sum = 0;
  for (const OpTiming& op : r.prefill_ops) pre_sum += op.seconds;
  for (const OpTiming& op : r.decode_ops) dec_sum += op.seconds;
  std::printf("\nbreakdown at context %lld (backend timing by operation, all layers)\n",
              static_cast<long long>(r.context));
  std::printf("  %-22s %14s %7s %14s %7s\n", "operation", "ms per chunk", "share", "ms per step",
              "share");
  std::vector<OpTiming> names = r.prefill_ops;
  for (const OpTiming& d : r.decode_ops) {
    if (std::none_of(names.begin(), names.end(),
                     [&](const OpTiming& n) { return n.name == d.name; })) {
      names.push_back(d);
    }
  }
  for (const OpTiming& op : names) {
    double pre = 0, dec = 0;
    for (const OpTiming& p : r.prefill_ops) pre += p.name == op.name ? p.seconds : 0;
    for (const OpTiming& d : r.decode_ops) dec += d.name == op.name ? d.seconds : 0;
    std::printf("  %-22s %14.3f %6.1f%% %14.4f %6.1f%%\n", op.name.c_str(), pre * 1e3,
                pre_sum > 0 ? 100 * pre / pre_sum : 0, dec * 1e3,
                dec_sum > 0 ? 100 * dec / dec_sum : 0);
  }
  std::printf("  %-22s %14.3f %7s %14.4f\n", "sum of operations", pre_sum * 1e3, "", dec_sum * 1e3);
  char chunk_ms[32] = "-";
  if (r.has_prefill()) {
    std::snprintf(chunk_ms, sizeof(chunk_ms), "%.3f", 1e3 * r.prefill_s / r.prefill_chunks);
  }
  std::printf("  %-22s %14s %7s %14.4f\n", "measured", chunk_ms, "",
              r.decode_tokens > 0 ? 1e3 * r.decode_s / r.decode_tokens : 0.0);
}

void WriteJson(const std::string& path, const std::string& model_dir, int threads,
               const Roofline& roof, const Costs& costs,
               const std::vector<ContextResult>& results) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return;
  }
  std::fprintf(f,
               "{\"model_dir\": \"%s\", \"threads\": %d, \"read_gbps\": %.2f, "
               "\"peak_gflops\": %.1f, \"active_weight_bytes\": %lld, "
               "\"kv_bytes_per_token\": %lld, \"results\": [",
               model_dir.c_str(), threads, roof.read_gbps, roof.peak_gflops,
               static_cast<long long>(costs.active.total()),
               static_cast<long long>(costs.kv_bytes_per_token));
  for (size_t i = 0; i < results.size(); ++i) {
    const ContextResult& r = results[i];
    std::fprintf(f,
                 "%s\n  {\"context\": %lld, \"prefill_s\": %.4f, \"prefill_tok_s\": %.2f, "
                 "\"prefill_gflop_s\": %.2f, \"prefill_cpu_s\": %.3f, \"decode_tokens\": %d, "
                 "\"decode_s\": %.4f, \"decode_tok_s\": %.2f, \"decode_cpu_s\": %.3f",
                 i ? "," : "", static_cast<long long>(r.context), r.prefill_s, r.prefill_tps(),
                 r.has_prefill() ? costs.PrefillFlops(r) / r.prefill_s / 1e9 : 0, r.prefill_cpu_s,
                 r.decode_tokens, r.decode_s, r.decode_tps(), r.decode_cpu_s);
    if (r.has_breakdown) {
      for (const auto& [name, ops] : {std::pair{"prefill_chunk_ms", &r.prefill_ops},
                                      std::pair{"decode_step_ms", &r.decode_ops}}) {
        std::fprintf(f, ", \"%s\": {", name);
        for (size_t p = 0; p < ops->size(); ++p) {
          std::fprintf(f, "%s\"%s\": %.4f", p ? ", " : "", (*ops)[p].name.c_str(),
                       (*ops)[p].seconds * 1e3);
        }
        std::fprintf(f, "}");
      }
    }
    std::fprintf(f, "}");
  }
  std::fprintf(f, "\n]}\n");
  std::fclose(f);
}

int Main() {
  std::vector<int64_t> contexts;
  for (const std::string& s : absl::GetFlag(FLAGS_contexts)) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(s, &v) || v <= 0) {
      std::fprintf(stderr, "bad --contexts entry '%s'\n", s.c_str());
      return 2;
    }
    contexts.push_back(v);
  }
  const int decode = std::max(0, absl::GetFlag(FLAGS_decode_tokens));
  const int64_t chunk = std::max(1, absl::GetFlag(FLAGS_prefill_chunk));
  cpu::CpuBackend backend(absl::GetFlag(FLAGS_threads));
  cpu::ThreadPool& pool = *backend.pool();
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);

  Roofline roof;
  if (absl::GetFlag(FLAGS_roofline)) {
    roof = MeasureRoofline(pool);
    PrintMachine(roof, pool.num_threads());
  }
  const double load_start = Now();
  auto model = DeepseekModel::Load(model_dir, &backend);
  if (!model.ok()) {
    std::fprintf(stderr, "loading %s: %s\n", model_dir.c_str(), model.status().ToString().c_str());
    return 1;
  }
  std::printf("%s: loaded in %.1f s\n", model_dir.c_str(), Now() - load_start);
  const ModelConfig& c = (*model)->config();
  const Costs costs(c, (*model)->weights());
  PrintGeometry(c, (*model)->weights(), costs.active);
  std::printf(
      "latent cache: %lld bytes per token (all layers), block size %d; prefill chunk "
      "%lld, %d decode tokens\n\n",
      static_cast<long long>(costs.kv_bytes_per_token), kBlockSize, static_cast<long long>(chunk),
      decode);

  std::vector<cpu::CpuIsa> isas;
  for (const std::string& name : absl::GetFlag(FLAGS_isas)) {
    const std::optional<cpu::CpuIsa> isa = cpu::ParseCpuIsa(name);
    if (!isa.has_value()) {
      std::fprintf(stderr, "bad --isas entry '%s'\n", name.c_str());
      return 2;
    }
    if (!cpu::IsaSupported(*isa)) {
      std::printf("isa %s: left out, this CPU lacks %s\n", name.c_str(),
                  std::string(cpu::CpuIsaFeatures(*isa)).c_str());
      continue;
    }
    isas.push_back(*isa);
  }
  if (isas.empty()) isas.push_back(cpu::ActiveIsa());
  std::vector<AttentionPath> paths;
  for (const std::string& name : absl::GetFlag(FLAGS_attention_paths)) {
    const std::optional<AttentionPath> path = ParseAttentionPath(name);
    if (!path.has_value()) {
      std::fprintf(stderr, "bad --attention_paths entry '%s'\n", name.c_str());
      return 2;
    }
    paths.push_back(*path);
  }
  if (paths.empty()) paths.push_back((*model)->attention_path());
  std::vector<Variant> variants;
  for (cpu::CpuIsa isa : isas) {
    for (AttentionPath path : paths) {
      variants.push_back(
          {isa, path,
           std::string(cpu::CpuIsaName(isa)) + "/" + std::string(AttentionPathName(path))});
    }
  }

  // results[i]: the contexts run with variants[i]; variants alternate per context (and
  // rounds repeat the whole sequence) so that a change in the machine's load touches all
  // of them alike.
  if (absl::GetFlag(FLAGS_warmup)) {
    for (const Variant& v : variants) {
      cpu::ScopedIsaOverride force(v.isa);
      (*model)->set_attention_path(v.path);
      auto r = RunContext(backend, **model, std::min(chunk, contexts.front()), 2, chunk, false);
      if (!r.ok()) {
        std::fprintf(stderr, "warm-up: %s\n", r.status().ToString().c_str());
        return 1;
      }
    }
  }
  const int rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  std::vector<std::vector<ContextResult>> results(variants.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t k = 0; k < contexts.size(); ++k) {
      const int64_t n = contexts[k];
      for (size_t i = 0; i < variants.size(); ++i) {
        cpu::ScopedIsaOverride force(variants[i].isa);
        (*model)->set_attention_path(variants[i].path);
        std::fprintf(stderr, "round %d, context %lld, %s:\n", round + 1, static_cast<long long>(n),
                     variants[i].name.c_str());
        auto r = RunContext(backend, **model, n, decode, chunk,
                            i == 0 && round == 0 && absl::GetFlag(FLAGS_breakdown));
        if (!r.ok()) {
          std::fprintf(stderr, "context %lld: %s\n", static_cast<long long>(n),
                       r.status().ToString().c_str());
          return 1;
        }
        if (round == 0) {
          results[i].push_back(*r);
        } else {
          KeepBest(*r, results[i][k]);
        }
      }
    }
  }

  for (size_t i = 0; i < variants.size(); ++i) {
    if (variants.size() > 1) {
      std::printf("%svariant: %s\n", i > 0 ? "\n" : "", variants[i].name.c_str());
    }
    PrintResults(results[i], costs, pool.num_threads());
  }
  if (variants.size() > 1) PrintVariantRatios(variants, results);
  for (const ContextResult& r : results[0]) {
    if (r.has_breakdown) PrintBreakdown(r);
  }
  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    WriteJson(json, model_dir, pool.num_threads(), roof, costs, results[0]);
  }
  return 0;
}

}  // namespace
}  // namespace mla::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return mla::bench::Main();
}
