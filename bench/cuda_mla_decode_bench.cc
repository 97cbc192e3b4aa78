// Decode attention of the CUDA split-KV MLA kernel (engine/backend/cuda/kernels/
// mla_decode.h) at DeepSeek shapes: achieved GB/s of latent cache read against the
// device's peak HBM bandwidth, for batch × context × heads.
//
// Every call reads each sequence's whole latent cache, (L + R)·2 = 1,152 bytes per token,
// shared by all heads, and does 2·(L + R) + 2·L = 2,176 FLOPs per head and token. The
// cache pool is sized for the largest batch × context of the run (V3 at 128 × 128K needs
// 19.3 GB); block tables point each sequence at its own shuffled blocks.
//
// Usage: cuda_mla_decode_bench [--batches=1,2,...] [--contexts=4096,...] [--heads=16,128]
//        [--min_ms=50] [--hbm_gbps=0 (0: from the device's memory clock and bus width)]
// Exits 0 with a message when no CUDA device is usable.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_device.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, batches, "1,2,4,8,16,32,64,128", "Batch sizes");
ABSL_FLAG(std::string, contexts, "4096,16384,65536,131072", "Context lengths (tokens)");
ABSL_FLAG(std::string, heads, "16,128", "Head counts (16: V2-Lite, 128: V2/V3)");
ABSL_FLAG(double, min_ms, 50.0, "Time each shape for at least this long");
ABSL_FLAG(double, hbm_gbps, 0.0, "Peak HBM bandwidth in GB/s (0: ask the device)");

namespace mla::cuda {
namespace {

constexpr int kLatent = 512;
constexpr int kRope = 64;
constexpr int kWidth = kLatent + kRope;
constexpr double kBytesPerToken = kWidth * 2.0;
constexpr double kFlopsPerHeadToken = 2.0 * kWidth + 2.0 * kLatent;
constexpr float kScale = 0.13523378f;  // V3's softmax scale

std::vector<int> ParseList(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(piece, &v) && v > 0) out.push_back(v);
  }
  return out;
}

// Peak bandwidth from the memory clock (kHz) and bus width (bits), double data rate.
double DeviceHbmGbps(int device) {
  int clock_khz = 0;
  int bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    return 0.0;
  }
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

struct Pool {
  DeviceBuffer cache;  // [num_blocks, 64, 576]
  int64_t num_blocks = 0;
  std::vector<int32_t> shuffled;  // a permutation of the blocks
};

struct Shape {
  int heads;
  int batch;
  int context;
};

// Times LaunchMlaDecode on one shape; returns milliseconds per call.
absl::StatusOr<double> TimeShape(const Pool& pool, const Shape& s, int num_sms, double min_ms) {
  const int blocks_per_seq = s.context / kMlaBlockSize;
  std::vector<int32_t> lens(s.batch, s.context);
  std::vector<int32_t> table(pool.shuffled.begin(),
                             pool.shuffled.begin() + int64_t{s.batch} * blocks_per_seq);
  MlaDecodePlanOptions options;
  options.num_sms = num_sms;
  options.num_heads = s.heads;
  options.max_blocks_per_seq = blocks_per_seq;
  MlaDecodePlan plan;
  MLA_RETURN_IF_ERROR(PlanMlaDecode(lens, options, &plan));
  const size_t rows = static_cast<size_t>(s.batch) * s.heads;
  const size_t slots = std::max(1, plan.num_partial_slots());
  MLA_ASSIGN_OR_RETURN(DeviceBuffer q, DeviceBuffer::Allocate(rows * kWidth * 2));
  MLA_RETURN_IF_ERROR(q.Fill(0x3c));  // Every element 0.0115: finite, the values do not matter.
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_table, DeviceBuffer::FromHost(table));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_lens, DeviceBuffer::FromHost(lens));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_parts, DeviceBuffer::FromHost(plan.parts));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_offsets, DeviceBuffer::FromHost(plan.split_offsets));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer partial_out,
                       DeviceBuffer::Allocate(slots * s.heads * kLatent * sizeof(float)));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer partial_lse,
                       DeviceBuffer::Allocate(slots * s.heads * sizeof(float)));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer out, DeviceBuffer::Allocate(rows * kLatent * 2));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer lse, DeviceBuffer::Allocate(rows * sizeof(float)));
  MlaDecodeParams p;
  p.batch = s.batch;
  p.num_heads = s.heads;
  p.kv_lora_rank = kLatent;
  p.rope_dim = kRope;
  p.num_blocks = pool.num_blocks;
  p.max_blocks_per_seq = blocks_per_seq;
  p.softmax_scale = kScale;
  p.num_parts = plan.num_parts;
  p.num_partial_slots = plan.num_partial_slots();
  p.q = q.as<bf16_t>();
  p.kv_cache = pool.cache.as<bf16_t>();
  p.block_table = d_table.as<int32_t>();
  p.seq_lens = d_lens.as<int32_t>();
  p.parts = d_parts.as<MlaDecodePart>();
  p.split_offsets = d_offsets.as<int32_t>();
  p.partial_out = partial_out.as<float>();
  p.partial_lse = partial_lse.as<float>();
  p.out = out.as<bf16_t>();
  p.lse = lse.as<float>();
  for (int i = 0; i < 2; ++i) MLA_RETURN_IF_ERROR(LaunchMlaDecode(p, nullptr));  // Warm-up.
  MLA_RETURN_IF_ERROR(DeviceSynchronize());
  cudaEvent_t start;
  cudaEvent_t stop;
  MLA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  MLA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  int iters = 1;
  float ms = 0.0f;
  while (true) {
    MLA_CUDA_RETURN_IF_ERROR(cudaEventRecord(start));
    for (int i = 0; i < iters; ++i) MLA_RETURN_IF_ERROR(LaunchMlaDecode(p, nullptr));
    MLA_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop));
    MLA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    MLA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    if (ms >= min_ms || iters >= 1024) break;
    iters *= 2;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms) / iters;
}

absl::Status Run() {
  MLA_ASSIGN_OR_RETURN(std::vector<CudaDeviceProps> devices, ListCudaDevices());
  if (devices.empty()) return absl::UnavailableError("no CUDA device is visible");
  const CudaDeviceProps& dev = devices.front();
  MLA_CUDA_RETURN_IF_ERROR(cudaSetDevice(dev.ordinal));
  const std::vector<int> batches = ParseList(absl::GetFlag(FLAGS_batches));
  const std::vector<int> contexts = ParseList(absl::GetFlag(FLAGS_contexts));
  const std::vector<int> heads = ParseList(absl::GetFlag(FLAGS_heads));
  if (batches.empty() || contexts.empty() || heads.empty()) {
    return absl::InvalidArgumentError("--batches, --contexts and --heads need positive values");
  }
  double hbm = absl::GetFlag(FLAGS_hbm_gbps);
  if (hbm <= 0) hbm = DeviceHbmGbps(dev.ordinal);
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int max_context = *std::max_element(contexts.begin(), contexts.end());
  Pool pool;
  pool.num_blocks = int64_t{max_batch} * ((max_context + kMlaBlockSize - 1) / kMlaBlockSize);
  MLA_ASSIGN_OR_RETURN(pool.cache,
                       DeviceBuffer::Allocate(pool.num_blocks * kMlaBlockSize * kWidth * 2));
  MLA_RETURN_IF_ERROR(pool.cache.Fill(0x3c));
  pool.shuffled.resize(pool.num_blocks);
  std::iota(pool.shuffled.begin(), pool.shuffled.end(), 0);
  std::shuffle(pool.shuffled.begin(), pool.shuffled.end(), std::mt19937(1));
  std::printf("device: %s, %d SMs, peak HBM %.0f GB/s; cache pool %.1f GB\n", dev.name.c_str(),
              dev.multiprocessors, hbm, pool.cache.bytes() / 1e9);
  std::printf("%6s %6s %8s %12s %10s %7s %9s\n", "heads", "batch", "context", "us/call", "GB/s",
              "%HBM", "TFLOPS");
  for (int h : heads) {
    for (int c : contexts) {
      for (int b : batches) {
        MLA_ASSIGN_OR_RETURN(const double ms, TimeShape(pool, {h, b, c}, dev.multiprocessors,
                                                        absl::GetFlag(FLAGS_min_ms)));
        const double tokens = static_cast<double>(b) * c;
        const double gbps = tokens * kBytesPerToken / (ms * 1e-3) / 1e9;
        const double tflops = tokens * h * kFlopsPerHeadToken / (ms * 1e-3) / 1e12;
        std::printf("%6d %6d %8d %12.1f %10.1f %6.1f%% %9.2f\n", h, b, c, ms * 1e3, gbps,
                    hbm > 0 ? 100.0 * gbps / hbm : 0.0, tflops);
        std::fflush(stdout);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mla::cuda

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // No device (or no driver) is not a failure of the benchmark: say so and stop.
  const absl::StatusOr<std::vector<mla::cuda::CudaDeviceProps>> devices =
      mla::cuda::ListCudaDevices();
  if (!devices.ok() || devices->empty()) {
    std::printf("cuda_mla_decode_bench: no usable CUDA device (%s); nothing measured.\n",
                devices.ok() ? "none visible" : std::string(devices.status().message()).c_str());
    return 0;
  }
  const absl::Status status = mla::cuda::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "cuda_mla_decode_bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
