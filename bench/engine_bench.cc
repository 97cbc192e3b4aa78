// mla_engine_bench: the whole engine (scheduler, batching, prefix cache) in process.
//
//   --mode=batch   decode throughput at several batch sizes: B requests with the same
//                  prompt length start together; throughput counts the tokens generated
//                  after the last request's first token, over the time until all finish.
//   --mode=prefix  time to first token of a long prompt cold, then again with its prefix
//                  cached (same cache_salt), then cold again under another salt; the
//                  prefill rate of the better cold run.
//   --mode=first   a new engine's first request against its second (--engine_warmup).
//   --device=cuda  the same on the GPU backend (tests/gpu/run_on_device.sh).
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/engine.h"

ABSL_FLAG(std::string, model_dir, "models/tiny-v2-lite", "Model directory");
ABSL_FLAG(std::string, mode, "batch", "batch, prefix, shared, first or telemetry");
ABSL_FLAG(std::string, batches, "1,4,16,64", "batch: batch sizes");
ABSL_FLAG(int, prompt_len, 128, "batch: prompt tokens per request; prefix: prompt tokens");
ABSL_FLAG(int, decode_tokens, 32, "batch: tokens generated per request");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all)");
ABSL_FLAG(int64_t, kv_cache_mib, 2048, "KV cache budget");
ABSL_FLAG(std::string, device, "cpu", "The engine's backend: cpu or cuda");
ABSL_FLAG(bool, engine_warmup, true, "The engine's start-up warm-up step (EngineOptions::warmup)");
ABSL_FLAG(int64_t, max_batch_tokens, 512, "Tokens per step");
ABSL_FLAG(std::string, probe_every, "0,16,4,1",
          "telemetry: attention_probe_every values to compare (the first is the baseline)");
ABSL_FLAG(int, rounds, 3, "telemetry: interleaved rounds; the best of each setting counts");

namespace mla {
namespace {

struct Run {
  absl::Mutex mu;
  int pending = 0;
  int64_t tokens_after_mark = 0;
  absl::Time last_first_token = absl::InfinitePast();
  absl::Time end = absl::InfinitePast();
  double ttft = 0.0;
  int cached = 0;
};

std::vector<int32_t> RandomPrompt(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> p(n);
  for (int32_t& t : p) t = static_cast<int32_t>(rng() % (vocab - 2)) + 2;
  return p;
}

std::unique_ptr<Engine> MakeEngine(int attention_probe_every = 0) {
  EngineOptions o;
  o.attention_probe_every = attention_probe_every;
  o.model_dir = absl::GetFlag(FLAGS_model_dir);
  o.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mib) << 20;
  o.threads = absl::GetFlag(FLAGS_threads);
  o.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  o.max_running = 128;
  o.device = absl::GetFlag(FLAGS_device);
  o.warmup = absl::GetFlag(FLAGS_engine_warmup);
  auto e = Engine::Create(o);
  if (!e.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(e.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*e);
}

// Submits B requests at once and waits; returns decode tokens/s after the last first token.
double DecodeThroughput(Engine& engine, int batch, uint64_t seed) {
  Run run;
  run.pending = batch;
  const int vocab = engine.info().config.vocab_size;
  const absl::Time start = absl::Now();
  for (int i = 0; i < batch; ++i) {
    GenerationRequest r;
    r.prompt = RandomPrompt(absl::GetFlag(FLAGS_prompt_len), vocab, seed + i);
    r.sampling.temperature = 0.0f;
    r.max_tokens = absl::GetFlag(FLAGS_decode_tokens);
    r.ignore_eos = true;
    r.cache_salt = std::to_string(seed + i);  // No sharing between the batch's requests.
    bool first = true;
    auto status = engine.Submit(std::move(r), [&run, first](GenerationOutput o) mutable {
      absl::MutexLock lock(&run.mu);
      const absl::Time now = absl::Now();
      if (first && !o.tokens.empty()) {
        first = false;
        run.last_first_token = std::max(run.last_first_token, now);
      } else if (run.last_first_token != absl::InfinitePast()) {
        run.tokens_after_mark += static_cast<int64_t>(o.tokens.size());
      }
      if (o.finished) {
        --run.pending;
        run.end = std::max(run.end, now);
      }
    });
    if (!status.ok()) std::exit(1);
  }
  absl::MutexLock lock(&run.mu);
  run.mu.Await(absl::Condition(
      +[](int* p) { return *p == 0; }, &run.pending));
  const double window = absl::ToDoubleSeconds(run.end - run.last_first_token);
  std::fprintf(stderr, "  batch %d done in %.2f s\n", batch,
               absl::ToDoubleSeconds(run.end - start));
  // Tokens counted after the last first token include some from sequences that were
  // already decoding; the window is what the whole batch decodes together.
  return window > 0 ? run.tokens_after_mark / window : 0.0;
}

void BatchMode() {
  std::unique_ptr<Engine> engine = MakeEngine();
  DecodeThroughput(*engine, 1, 999);  // Warm-up.
  std::printf("| batch | decode tok/s | vs batch 1 |\n|---:|---:|---:|\n");
  double base = 0.0;
  uint64_t seed = 1;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int batch = 0;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1) continue;
    const double tps = DecodeThroughput(*engine, batch, seed);
    seed += batch;
    if (base == 0.0) base = tps;
    std::printf("| %d | %.1f | %.2fx |\n", batch, tps, tps / base);
    std::fflush(stdout);
  }
}

double Ttft(Engine& engine, const std::vector<int32_t>& prompt, const std::string& salt,
            int* cached) {
  Run run;
  run.pending = 1;
  GenerationRequest r;
  r.prompt = prompt;
  r.sampling.temperature = 0.0f;
  r.max_tokens = 1;
  r.cache_salt = salt;
  if (!engine
           .Submit(std::move(r),
                   [&run](GenerationOutput o) {
                     absl::MutexLock lock(&run.mu);
                     if (o.finished) {
                       run.ttft = o.time_to_first_token_seconds;
                       run.cached = o.cached_prompt_tokens;
                       run.pending = 0;
                     }
                   })
           .ok()) {
    std::exit(1);
  }
  absl::MutexLock lock(&run.mu);
  run.mu.Await(absl::Condition(
      +[](int* p) { return *p == 0; }, &run.pending));
  *cached = run.cached;
  return run.ttft;
}

void PrefixMode() {
  std::unique_ptr<Engine> engine = MakeEngine();
  const std::vector<int32_t> prompt =
      RandomPrompt(absl::GetFlag(FLAGS_prompt_len), engine->info().config.vocab_size, 7);
  int cached = 0;
  // Untimed: a first request pays one-time costs (GEMM algorithm choice, buffers growing).
  Ttft(*engine, RandomPrompt(static_cast<int>(prompt.size()), engine->info().config.vocab_size, 8),
       "warm-up", &cached);
  std::printf("| run | cached prompt tokens | TTFT s | vs cold |\n|---|---:|---:|---:|\n");
  const double cold = Ttft(*engine, prompt, "a", &cached);
  std::printf("| cold (salt a) | %d | %.4f | 1.00x |\n", cached, cold);
  const double warm = Ttft(*engine, prompt, "a", &cached);
  std::printf("| cached prefix (salt a) | %d | %.4f | %.3fx |\n", cached, warm, warm / cold);
  const double other = Ttft(*engine, prompt, "b", &cached);
  std::printf("| cold again (salt b) | %d | %.4f | %.3fx |\n", cached, other, other / cold);
  std::printf("\nprefill: %.1f tok/s (%zu tokens, the better cold run)\n",
              static_cast<double>(prompt.size()) / std::min(cold, other), prompt.size());
}

// B requests with one prompt submitted at once (an OpenAI request's n choices, a system
// prompt many clients send together), one token each: seconds until the last one ends
// and the prompt tokens all of them took from the prefix cache, per batch size (a new
// prompt each, so that nothing is cached before).
void SharedMode() {
  std::unique_ptr<Engine> engine = MakeEngine();
  const int n = absl::GetFlag(FLAGS_prompt_len), vocab = engine->info().config.vocab_size;
  int cached = 0;
  Ttft(*engine, RandomPrompt(n, vocab, 1), "warm-up", &cached);  // Untimed.
  std::printf(
      "| requests | seconds until all end | cached prompt tokens | seconds per request |\n"
      "|---:|---:|---:|---:|\n");
  uint64_t seed = 100;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int batch = 0;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1) continue;
    const std::vector<int32_t> prompt = RandomPrompt(n, vocab, seed++);
    Run run;
    run.pending = batch;
    const absl::Time start = absl::Now();
    for (int i = 0; i < batch; ++i) {
      GenerationRequest r;
      r.prompt = prompt;
      r.sampling.temperature = 0.0f;
      r.max_tokens = 1;
      if (!engine
               ->Submit(std::move(r),
                        [&run](GenerationOutput o) {
                          if (!o.finished) return;
                          absl::MutexLock lock(&run.mu);
                          run.cached += o.cached_prompt_tokens;
                          run.end = std::max(run.end, absl::Now());
                          --run.pending;
                        })
               .ok()) {
        std::exit(1);
      }
    }
    absl::MutexLock lock(&run.mu);
    run.mu.Await(absl::Condition(
        +[](int* p) { return *p == 0; }, &run.pending));
    const double seconds = absl::ToDoubleSeconds(run.end - start);
    std::printf("| %d | %.3f | %d | %.3f |\n", batch, seconds, run.cached, seconds / batch);
    std::fflush(stdout);
  }
}

// The first request a new engine serves, against the second (another prompt of the same
// length): what the first user pays for buffers and first calls, with --engine_warmup
// on or off.
void FirstMode() {
  const absl::Time start = absl::Now();
  std::unique_ptr<Engine> engine = MakeEngine();
  const double created = absl::ToDoubleSeconds(absl::Now() - start);
  const int n = absl::GetFlag(FLAGS_prompt_len), vocab = engine->info().config.vocab_size;
  int cached = 0;
  const double first = Ttft(*engine, RandomPrompt(n, vocab, 1), "first", &cached);
  const double second = Ttft(*engine, RandomPrompt(n, vocab, 2), "second", &cached);
  std::printf(
      "| warm-up | engine start s | first TTFT s | second TTFT s | first / second |\n"
      "|---|---:|---:|---:|---:|\n| %s | %.3f | %.4f | %.4f | %.2fx |\n",
      absl::GetFlag(FLAGS_engine_warmup) ? "on" : "off", created, first, second, first / second);
}

// Decode throughput with attention telemetry at several sampling rates, against the first
// rate given (normally 0 = off), at one batch size (the first of --batches).
void TelemetryMode() {
  std::vector<int> rates;
  for (absl::string_view r : absl::StrSplit(absl::GetFlag(FLAGS_probe_every), ',')) {
    int v = 0;
    if (absl::SimpleAtoi(r, &v)) rates.push_back(v);
  }
  const std::vector<std::string> batches = absl::StrSplit(absl::GetFlag(FLAGS_batches), ',');
  int batch = 0;
  if (!absl::SimpleAtoi(batches.front(), &batch) || batch < 1) batch = 4;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int r : rates) {
    engines.push_back(MakeEngine(r));
    DecodeThroughput(*engines.back(), 1, 999);  // Warm-up.
  }
  // Interleaved rounds spread the machine's noise over every setting alike.
  std::vector<double> best(rates.size(), 0.0);
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (size_t i = 0; i < rates.size(); ++i) {
      best[i] = std::max(best[i], DecodeThroughput(*engines[i], batch, 1 + 100 * round));
    }
  }
  std::printf("| attention_probe_every | decode tok/s (batch %d) | vs first |\n|---:|---:|---:|\n",
              batch);
  for (size_t i = 0; i < rates.size(); ++i) {
    std::printf("| %d | %.1f | %.3fx |\n", rates[i], best[i], best[i] / best[0]);
  }
}

}  // namespace
}  // namespace mla

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_mode) == "prefix") {
    mla::PrefixMode();
  } else if (absl::GetFlag(FLAGS_mode) == "shared") {
    mla::SharedMode();
  } else if (absl::GetFlag(FLAGS_mode) == "first") {
    mla::FirstMode();
  } else if (absl::GetFlag(FLAGS_mode) == "telemetry") {
    mla::TelemetryMode();
  } else {
    mla::BatchMode();
  }
  return 0;
}
