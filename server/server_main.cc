// mla-server: loads a DeepSeek-style MLA model directory and serves mla.v1.Inference,
// grpc.health.v1.Health and server reflection over gRPC, /metrics, /healthz and
// /readyz over HTTP on --metrics_address, and the OpenAI-compatible API over HTTP on
// --http_address (off by default).
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/device.h"
#include "engine/common/log.h"
#include "engine/engine.h"
#include "grpc/health/v1/health.pb.h"
#include "server/http/admin_endpoints.h"
#include "server/http/http_server.h"
#include "server/inference_service.h"
#include "server/metrics/engine_collector.h"
#include "server/metrics/rpc_metrics_interceptor.h"
#include "server/metrics/serving_metrics.h"
#include "server/metrics/text_exposition.h"
#include "server/openai/openai_service.h"
#include "server/security/listener.h"

namespace mla {
constexpr char kDefaultMetricsAddress[] = "127.0.0.1:9090";
constexpr int64_t kDefaultKvCacheMib = 1024;
}  // namespace mla

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC listen address host:port (port 0 picks a free port; see --port_file)");
ABSL_FLAG(std::string, model_dir, "models/needle-v2-demo",
          "Hugging Face model directory: config.json, *.safetensors, optional tokenizer.json");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda or auto (cuda when a device is usable)");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound gRPC port is written to this file once the server listens");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "Largest request message accepted, in bytes");
ABSL_FLAG(int, max_unread_tokens, mla::GenerateReactor::kDefaultMaxUnreadTokens,
          "A Generate stream whose client leaves more generated tokens than this unread "
          "(a stalled reader) has its request aborted with RESOURCE_EXHAUSTED");
// Optional, so that an explicit budget is told apart from the default on the GPU.
ABSL_FLAG(std::optional<int64_t>, kv_cache_mib, std::nullopt,
          "Latent KV cache budget in MiB (all layers; 1024 when not given); the block count "
          "follows from it. On --device=cuda --gpu_memory_fraction sizes the cache, and this "
          "flag, when given, caps it");
ABSL_FLAG(double, gpu_memory_fraction, 0.9,
          "On --device=cuda: the share of the GPU's memory for weights, workspace and the "
          "latent cache, which takes what is left, up to --kv_cache_mib when that is given "
          "(0 = size the cache by --kv_cache_mib)");
ABSL_FLAG(int, block_size, 64, "Tokens per KV cache block");
ABSL_FLAG(std::string, kv_cache_dtype, "bf16",
          "Latent KV cache element layout: bf16 (1,152 bytes per token and layer for "
          "DeepSeek) or fp8 (DeepSeek's layout: e4m3 latent with a scale per 128 values, "
          "bf16 RoPE key; 656 bytes, so about 1.75x the tokens per GiB, at an accuracy cost)");
ABSL_FLAG(std::string, indexer_key_dtype, "auto",
          "DeepSeek-V3.2 only: how the lightning indexer's keys are cached: bf16 (256 bytes "
          "per token and layer) or fp8 (e4m3 with a scale per key: 132 bytes); auto = as "
          "--kv_cache_dtype");
ABSL_FLAG(std::string, kv_disk_dir, "",
          "Disk tier of the prefix cache: full prefix blocks are kept as files here (written "
          "in the background) and loaded instead of recomputed after eviction or a restart; "
          "empty = off. Needs --enable_prefix_caching");
ABSL_FLAG(double, kv_disk_gib, 16,
          "Size budget of --kv_disk_dir in GiB (least recently used blocks are deleted "
          "beyond it)");
ABSL_FLAG(int64_t, max_batch_tokens, 512,
          "Tokens per engine step; long prompts are prefilled in chunks of this size");
ABSL_FLAG(std::string, warmup, "auto",
          "Run a throwaway prefill step of --max_batch_tokens tokens and a decode step before "
          "serving, so that the first request does not pay for buffers and first device "
          "calls: on, off, or auto (on for --device=cuda, where first calls cost most)");
ABSL_FLAG(int, max_running, 64, "Most sequences batched in one engine step");
ABSL_FLAG(int, max_waiting, 1024, "Queued requests beyond which Generate is refused");
ABSL_FLAG(int, threads, 0, "CPU threads for the engine (0 = all cores)");
ABSL_FLAG(int, drain_timeout_s, 30,
          "On SIGTERM/SIGINT: seconds to let live requests finish before they are aborted");
ABSL_FLAG(std::string, metrics_address, mla::kDefaultMetricsAddress,
          "HTTP address host:port for /metrics, /healthz and /readyz (port 0 picks a free "
          "port; empty disables). Failing to bind is fatal, except for the default address, "
          "which is then skipped with a warning");
ABSL_FLAG(std::string, metrics_port_file, "",
          "If set, the bound metrics port is written to this file before the gRPC port file");
ABSL_FLAG(std::string, http_address, "",
          "HTTP address host:port of the OpenAI-compatible API (/v1/models, /v1/completions, "
          "/v1/chat/completions; port 0 picks a free port); empty (the default) disables it");
ABSL_FLAG(std::string, http_port_file, "",
          "If set, the bound --http_address port is written to this file before the gRPC "
          "port file");
ABSL_FLAG(int64_t, http_max_body_bytes, 8 << 20,
          "Largest request body the OpenAI-compatible API accepts (413 beyond it)");
ABSL_FLAG(bool, enable_prefix_caching, true,
          "Reuse cached prompt prefixes (full blocks, per cache_salt) across requests");
ABSL_FLAG(int, attention_probe_every, 0,
          "Attention-sharpness telemetry: every N-th engine step measures the attention "
          "entropy and largest weight of a few decoding rows (mla_attention_* histograms); "
          "0 = off, which costs nothing");
ABSL_FLAG(int64_t, starvation_steps, 256,
          "Engine steps after which a waiting request is admitted ahead of higher priorities");

namespace mla {
namespace {

// After a drain timeout aborts the live requests: time for their last messages to go out.
constexpr absl::Duration kFinalMessageGrace = absl::Seconds(2);

int Fail(const absl::Status& status) {
  LogError(status.message());
  return 1;
}

// Blocks SIGINT/SIGTERM in every thread (threads inherit the mask) so that the main
// thread alone receives them through sigwait, outside any signal-handler context.
sigset_t BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

enum class DrainResult { kIdle, kTimedOut, kSignalled };

// Waits until no request is live and every stream has delivered its last message,
// `timeout` passes, or a second signal comes.
DrainResult WaitUntilIdle(const Engine& engine, const InferenceService& service,
                          const sigset_t& signals, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (std::max(engine.NumLive(), service.active_streams()) > 0) {
    if (absl::Now() >= deadline) return DrainResult::kTimedOut;
    const timespec tick{0, 50 * 1000 * 1000};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) return DrainResult::kSignalled;
  }
  return DrainResult::kIdle;
}

// Lets live requests finish within `timeout`; past it aborts them, so that each stream
// still ends with its last message (FINISH_REASON_ABORT, usage, timings) before the
// transport closes. False when a second signal came.
bool Drain(const Engine& engine, InferenceService& service, const sigset_t& signals,
           absl::Duration timeout) {
  DrainResult result = WaitUntilIdle(engine, service, signals, timeout);
  if (result == DrainResult::kTimedOut) {
    LogWarning("drain timeout: ", std::max(engine.NumLive(), service.active_streams()),
               " request(s) still live are aborted");
    service.AbortAll();
    // Aborts land at the next step boundary; a client that does not read its last
    // message within this grace is cancelled with the transport.
    result = WaitUntilIdle(engine, service, signals, kFinalMessageGrace);
  }
  return result != DrainResult::kSignalled;
}

// Writes `port` to `file` (when set) whole and renamed, so that a reader never sees a
// partial number.
absl::Status WritePortFile(absl::string_view flag, const std::string& file, int port) {
  if (file.empty()) return absl::OkStatus();
  std::ofstream(file + ".tmp") << port << "\n";
  std::error_code error;
  std::filesystem::rename(file + ".tmp", file, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat(flag, ": cannot write ", file, ": ", error.message()));
  }
  return absl::OkStatus();
}

// Starts the HTTP server for /metrics, /healthz and /readyz; null when disabled.
absl::StatusOr<std::unique_ptr<http::HttpServer>> StartAdminServer(
    const metrics::MetricsRegistry& registry, const metrics::MetricsEncoder& encoder,
    const std::atomic<bool>& ready) {
  const std::string address = absl::GetFlag(FLAGS_metrics_address);
  if (address.empty()) {
    LogInfo("metrics: disabled (--metrics_address is empty)");
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Start(
      address, http::AdminHandlers(&registry, &encoder, [&ready] { return ready.load(); }));
  if (!server.ok()) {
    // An address the operator chose must work; the default one may be taken on a
    // developer's machine (Prometheus itself defaults to 9090), which must not stop serving.
    if (address != kDefaultMetricsAddress) {
      return absl::Status(server.status().code(),
                          absl::StrCat("--metrics_address: ", server.status().message()));
    }
    LogWarning("metrics: disabled, the default --metrics_address is taken: ",
               server.status().message());
    return nullptr;
  }
  LogInfo("metrics: /metrics, /healthz, /readyz on port ", (*server)->port());
  MLA_RETURN_IF_ERROR(WritePortFile("--metrics_port_file", absl::GetFlag(FLAGS_metrics_port_file),
                                    (*server)->port()));
  return server;
}

// Starts the OpenAI-compatible API on --http_address; null when disabled.
absl::StatusOr<std::unique_ptr<http::HttpServer>> StartApiServer(openai::OpenAiService& api) {
  const std::string address = absl::GetFlag(FLAGS_http_address);
  if (address.empty()) return nullptr;
  http::HttpServerOptions options;
  options.max_body_bytes =
      static_cast<size_t>(std::max<int64_t>(absl::GetFlag(FLAGS_http_max_body_bytes), 0));
  // A large prompt may take a while to upload; generation itself has no deadline.
  options.header_timeout = std::chrono::seconds(30);
  options.error_response = &openai::OpenAiService::ErrorResponse;
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server =
      http::HttpServer::Start(address, api.Routes(), options);
  if (!server.ok()) {
    return absl::Status(server.status().code(),
                        absl::StrCat("--http_address: ", server.status().message()));
  }
  LogInfo("http: OpenAI-compatible API on port ", (*server)->port());
  MLA_RETURN_IF_ERROR(
      WritePortFile("--http_port_file", absl::GetFlag(FLAGS_http_port_file), (*server)->port()));
  return server;
}

int Run() {
  const sigset_t signals = BlockShutdownSignals();
  LogLevel level;
  if (!ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    return Fail(absl::InvalidArgumentError("--log_level must be debug, info, warning or error"));
  }
  SetLogLevel(level);

  auto device = ChooseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail(device.status());
  const absl::StatusOr<CacheDType> cache_dtype =
      ParseCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype));
  if (!cache_dtype.ok()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--kv_cache_dtype: ", cache_dtype.status().message())));
  }
  std::optional<CacheDType> index_key_dtype;
  if (const std::string name = absl::GetFlag(FLAGS_indexer_key_dtype); name != "auto") {
    const absl::StatusOr<CacheDType> parsed = ParseCacheDType(name);
    if (!parsed.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--indexer_key_dtype: ", parsed.status().message(), " (or auto)")));
    }
    index_key_dtype = *parsed;
  }
  if (!(absl::GetFlag(FLAGS_kv_disk_gib) > 0)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--kv_disk_gib must be positive, got ", absl::GetFlag(FLAGS_kv_disk_gib))));
  }
  LogInfo("device: ", device->description, " (", device->reason, ")");
  if (const std::optional<int64_t> mib = absl::GetFlag(FLAGS_kv_cache_mib);
      mib.has_value() && (*mib < 1 || *mib > (int64_t{1} << 40))) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--kv_cache_mib must be in [1, 2^40], got ", *mib)));
  }
  if (const double f = absl::GetFlag(FLAGS_gpu_memory_fraction); !(f >= 0.0 && f <= 1.0)) {
    return Fail(absl::InvalidArgumentError("--gpu_memory_fraction must be in [0, 1]"));
  }
  const std::string warmup = absl::GetFlag(FLAGS_warmup);
  if (warmup != "auto" && warmup != "on" && warmup != "off") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--warmup must be auto, on or off, got '", warmup, "'")));
  }

  // Declared before the service and the engine, so that they outlive both: the engine
  // reports to `serving_metrics` until it is destroyed.
  metrics::MetricsRegistry registry;
  metrics::ServingMetrics serving_metrics(registry);
  metrics::EngineCollector engine_collector;
  registry.AddCollectable(&engine_collector);
  const metrics::TextEncoder encoder;
  std::atomic<bool> ready{false};  // Model loaded and not draining (/readyz).
  absl::StatusOr<std::unique_ptr<http::HttpServer>> admin =
      StartAdminServer(registry, encoder, ready);
  if (!admin.ok()) return Fail(admin.status());

  // Reference the health messages so that their descriptors are linked in and server
  // reflection can describe grpc.health.v1.Health.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  InferenceService service;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  if (absl::Status s = security::ConfigureListener(builder, absl::GetFlag(FLAGS_listen), &port);
      !s.ok()) {
    return Fail(s);
  }
  service.SetMaxConcurrentStreams(security::MaxConcurrentStreams());
  service.SetMaxUnreadTokens(absl::GetFlag(FLAGS_max_unread_tokens));
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(&service);
  builder.experimental().SetInterceptorCreators(metrics::RpcMetricsInterceptors(&serving_metrics));
  absl::StatusOr<std::vector<std::string>> http_tokens =
      security::HttpTokens(absl::GetFlag(FLAGS_http_address));
  if (!http_tokens.ok()) return Fail(http_tokens.status());
  openai::OpenAiServiceOptions api_options;
  api_options.tokens = std::move(*http_tokens);
  api_options.streams = service.stream_registry();
  api_options.max_streams = service.max_concurrent_streams();
  api_options.retry_after_s = InferenceService::kStreamsFullRetryMs / 1000;
  api_options.metrics = &serving_metrics;
  openai::OpenAiService api(std::move(api_options));
  // Bound before the gRPC port file is written: a client that waits for that file finds
  // both ports open.
  absl::StatusOr<std::unique_ptr<http::HttpServer>> api_server = StartApiServer(api);
  if (!api_server.ok()) return Fail(api_server.status());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return Fail(absl::UnavailableError(
        absl::StrCat("cannot listen on --listen=", absl::GetFlag(FLAGS_listen))));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);  // NOT_SERVING until the model is loaded.
  LogInfo("listening on port ", port);
  if (const std::string file = absl::GetFlag(FLAGS_port_file); !file.empty()) {
    std::ofstream(file) << port << "\n";
  }

  EngineOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  const std::optional<int64_t> kv_cache_mib = absl::GetFlag(FLAGS_kv_cache_mib);
  options.kv_cache_bytes = kv_cache_mib.value_or(kDefaultKvCacheMib) << 20;
  options.block_size = absl::GetFlag(FLAGS_block_size);
  options.cache_dtype = *cache_dtype;
  options.index_key_dtype = index_key_dtype;
  options.kv_disk_dir = absl::GetFlag(FLAGS_kv_disk_dir);
  options.kv_disk_bytes = static_cast<int64_t>(absl::GetFlag(FLAGS_kv_disk_gib) * (1 << 30));
  options.device_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  // A budget the user chose still holds on the GPU, where the fraction sizes the cache.
  if (kv_cache_mib.has_value()) options.device_cache_cap_bytes = options.kv_cache_bytes;
  options.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  options.max_running = absl::GetFlag(FLAGS_max_running);
  options.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.enable_prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  options.starvation_steps = absl::GetFlag(FLAGS_starvation_steps);
  options.attention_probe_every = absl::GetFlag(FLAGS_attention_probe_every);
  options.device = device->cuda ? "cuda" : "cpu";
  options.warmup = warmup == "on" || (warmup == "auto" && device->cuda);
  options.observer = &serving_metrics;
  const absl::Time load_start = absl::Now();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(options);
  if (!engine.ok()) {
    server->Shutdown();
    return Fail(engine.status());
  }
  std::shared_ptr<Engine> shared_engine = std::move(*engine);
  service.SetReady(shared_engine);
  api.SetReady(shared_engine, service.text_support());
  engine_collector.SetEngine(shared_engine);
  health->SetServingStatus(true);
  ready = true;
  const EngineInfo& info = shared_engine->info();
  LogInfo("serving model ", info.model_name, " (", info.config.architecture, ", ",
          info.weight_dtype, ") loaded in ", absl::FormatDuration(absl::Now() - load_start));

  int sig = 0;
  sigwait(&signals, &sig);
  LogInfo("received signal ", sig,
          ", draining (up to --drain_timeout_s=", absl::GetFlag(FLAGS_drain_timeout_s),
          "; a second signal stops at once)");
  ready = false;
  health->SetServingStatus(false);
  service.SetDraining();
  api.SetDraining();
  const bool forced =
      !Drain(*shared_engine, service, signals, absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)));
  // Calls still open now are cancelled, which aborts their requests in the engine.
  server->Shutdown(std::chrono::system_clock::now() +
                   (forced ? std::chrono::milliseconds(0) : std::chrono::milliseconds(500)));
  server->Wait();
  if (*api_server) {
    // Responses still open lose their clients, which aborts their requests; waiting for
    // the engine to finish them keeps their callbacks from outliving the services.
    (*api_server)->Stop();
    WaitUntilIdle(*shared_engine, service, signals, kFinalMessageGrace);
  }
  // Scrapes stay possible while draining; stopping them here, before the engine goes,
  // means no scrape can hold the engine's last reference.
  if (*admin) (*admin)->Stop();
  LogInfo(forced ? "stopped by a second signal" : "stopped");
  return forced ? 1 : 0;
}

}  // namespace
}  // namespace mla

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mla-server --model_dir=DIR [--listen=HOST:PORT] [--device=auto]");
  absl::ParseCommandLine(argc, argv);
  return mla::Run();
}
