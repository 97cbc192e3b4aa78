// Decode attention of the CUDA split-KV MLA kernel (engine/backend/cuda/kernels/
// mla_decode.h) at DeepSeek shapes: achieved GB/s of latent cache read against the
// device's peak HBM bandwidth, for batch × context × heads.
//
// Every call reads each sequence's whole latent cache, (L + R)·2 = 1,152 bytes per token
// (656 in DeepSeek's FP8 layout with --fp8: L e4m3 codes, L/128 fp32 scales, R bf16),
// shared by all heads, and does 2·(L + R) + 2·L = 2,176 FLOPs per head and token. The
// cache pool is sized for the largest batch × context of the run (V3 at 128 × 128K needs
// 19.3 GB); block tables point each sequence at its own shuffled blocks.
//
// With --topk=K (DeepSeek-V3.2's sparse attention) each sequence's row attends to a random
// ascending selection of min(K, context) of its positions, each key row gathered through
// the block table; GB/s and TFLOP/s then count the selected keys, and every shape is also
// timed densely over a context of min(K, context) tokens (the same keys read
// contiguously) in the same run: "sparse/dense" is the cost of the gather.
//
// Calls of one shape cycle through disjoint copies of its blocks (--rotate), at least
// twice the L2 in all where the pool allows, since a shape smaller than the L2 (batch 1 ×
// 32K is 38 MB) read by every call would be timed from the L2, not from HBM. The plan
// assumes as many CTAs at once as the device holds (--ctas_per_sm=0), as the backend does.
//
// Usage: cuda_mla_decode_bench [--batches=1,2,...] [--contexts=4096,...] [--heads=16,128]
//        [--min_ms=50] [--hbm_gbps=0 (0: from the device's memory clock and bus width)]
//        [--ctas_per_sm=0] [--rotate=true]
//        [--kernel=auto|simt|mma|mma_ksplit|mma_ring|mma_rows64|mma_wgmma]
//        [--fp8] [--topk=0]
// Exits 0 with a message when no CUDA device is usable.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/cuda_bench_util.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_device.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/kernels/mla_decode.h"

ABSL_FLAG(std::string, batches, "1,2,4,8,16,32,64,128", "Batch sizes");
ABSL_FLAG(std::string, contexts, "4096,16384,65536,131072", "Context lengths (tokens)");
ABSL_FLAG(std::string, heads, "16,128", "Head counts (16: V2-Lite, 128: V2/V3)");
ABSL_FLAG(double, min_ms, 50.0, "Time each shape for at least this long");
ABSL_FLAG(double, hbm_gbps, 0.0, "Peak HBM bandwidth in GB/s (0: ask the device)");
ABSL_FLAG(int, ctas_per_sm, 0,
          "Split-KV CTAs per multiprocessor the plan assumes (0: what the device holds, as "
          "the backend plans)");
ABSL_FLAG(std::string, kernel, "auto",
          "Split kernel: simt (CUDA cores), mma (tensor cores), mma_ksplit (its k-split "
          "variant), mma_ring (its ring of blocks in flight), mma_rows64 (64 query rows per CTA), "
          "mma_wgmma (the same with wgmma, sm_90a) "
          "or auto "
          "(MLA_CUDA_DECODE_KERNEL, else mma where the widths allow)");
ABSL_FLAG(bool, fp8, false, "The cache in DeepSeek's FP8 layout instead of bf16");
ABSL_FLAG(int, topk, 0,
          "DeepSeek-V3.2's sparse attention: every row attends to a random selection of this "
          "many of its positions (0: dense)");
ABSL_FLAG(bool, rotate, true,
          "Cycle each shape's calls through disjoint copies of its cache blocks, at least twice "
          "the L2 in all, so that a small shape is not timed out of the L2");

namespace mla::cuda {
namespace {

constexpr int kLatent = 512;
constexpr int kRope = 64;
constexpr int kWidth = kLatent + kRope;
// Bytes of one cache row: bf16, or FP8 codes + scales + bf16 k_pe.
double BytesPerToken() {
  return absl::GetFlag(FLAGS_fp8) ? kLatent + 4.0 * (kLatent / 128) + 2.0 * kRope : kWidth * 2.0;
}
constexpr double kFlopsPerHeadToken = 2.0 * kWidth + 2.0 * kLatent;
constexpr float kScale = 0.13523378f;  // V3's softmax scale

MlaDecodeKernel Kernel() {
  const std::string k = absl::GetFlag(FLAGS_kernel);
  if (k == "simt") return MlaDecodeKernel::kSimt;
  if (k == "mma") return MlaDecodeKernel::kMma;
  if (k == "mma_ksplit") return MlaDecodeKernel::kMmaKSplit;
  if (k == "mma_ring") return MlaDecodeKernel::kMmaRing;
  if (k == "mma_rows64") return MlaDecodeKernel::kMmaRows64;
  if (k == "mma_wgmma") return MlaDecodeKernel::kMmaWgmma;
  return MlaDecodeKernel::kAuto;
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

// How many disjoint copies of a shape's blocks its calls cycle through: enough that the
// blocks read by consecutive calls exceed twice the L2 (no re-read hits it), as the pool
// allows; 1 without rotation.
int64_t Copies(const Pool& pool, int64_t shape_blocks, int64_t l2_bytes) {
  if (!absl::GetFlag(FLAGS_rotate) || shape_blocks <= 0) return 1;
  const double shape_bytes = static_cast<double>(shape_blocks) * kMlaBlockSize * BytesPerToken();
  const int64_t wanted = static_cast<int64_t>(2.0 * l2_bytes / shape_bytes) + 1;
  return std::max<int64_t>(1, std::min(wanted, pool.num_blocks / shape_blocks));
}

// Times LaunchMlaDecode on one shape; returns milliseconds per call and the copies used.
// `topk` > 0: sparse, over a random selection of min(topk, context) positions a sequence.
absl::StatusOr<std::pair<double, int64_t>> TimeShape(const Pool& pool, const Shape& s, int num_sms,
                                                     int rows_per_cta, int64_t l2_bytes,
                                                     double min_ms, int topk) {
  const int blocks_per_seq = (s.context + kMlaBlockSize - 1) / kMlaBlockSize;
  std::vector<int32_t> lens(s.batch, s.context);
  const int64_t shape_blocks = int64_t{s.batch} * blocks_per_seq;
  const int64_t copies = Copies(pool, shape_blocks, l2_bytes);
  std::vector<int32_t> table(pool.shuffled.begin(), pool.shuffled.begin() + copies * shape_blocks);
  MlaDecodePlanOptions options;
  options.num_sms = num_sms;
  options.num_heads = s.heads;
  options.rows_per_cta = rows_per_cta;
  options.max_blocks_per_seq = blocks_per_seq;
  MlaDecodePlan plan;
  std::vector<int32_t> selection;
  if (topk > 0) {
    std::vector<int32_t> positions(static_cast<size_t>(s.context));
    std::iota(positions.begin(), positions.end(), 0);
    std::mt19937 rng(7);
    selection.assign(static_cast<size_t>(s.batch) * topk, -1);
    for (int j = 0; j < s.batch; ++j) {  // std::sample keeps the input's (ascending) order
      std::sample(positions.begin(), positions.end(), selection.begin() + int64_t{j} * topk,
                  std::min(topk, s.context), rng);
    }
    std::vector<int32_t> counts(lens.size(), std::min(topk, s.context));
    MLA_RETURN_IF_ERROR(PlanMlaDecode(counts, options, &plan));
  } else {
    MLA_RETURN_IF_ERROR(PlanMlaDecode(lens, options, &plan));
  }
  const size_t rows = static_cast<size_t>(s.batch) * s.heads;
  const size_t slots = std::max(1, plan.num_partial_slots());
  MLA_ASSIGN_OR_RETURN(DeviceBuffer q, DeviceBuffer::Allocate(rows * kWidth * 2));
  MLA_RETURN_IF_ERROR(q.Fill(0x3c));  // Every element 0.0115: finite, the values do not matter.
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_table, DeviceBuffer::FromHost(table));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_lens, DeviceBuffer::FromHost(lens));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_parts, DeviceBuffer::FromHost(plan.parts));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_offsets, DeviceBuffer::FromHost(plan.split_offsets));
  MLA_ASSIGN_OR_RETURN(DeviceBuffer d_selection,
                       DeviceBuffer::FromHost(topk > 0 ? selection : std::vector<int32_t>{0}));
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
  p.kernel = Kernel();
  p.kv_fp8 = absl::GetFlag(FLAGS_fp8);
  p.num_parts = plan.num_parts;
  p.num_partial_slots = plan.num_partial_slots();
  p.q = q.as<bf16_t>();
  p.kv_cache = pool.cache.data();
  p.seq_lens = d_lens.as<int32_t>();
  p.parts = d_parts.as<MlaDecodePart>();
  p.split_offsets = d_offsets.as<int32_t>();
  p.partial_out = partial_out.as<float>();
  p.partial_lse = partial_lse.as<float>();
  p.out = out.as<bf16_t>();
  p.lse = lse.as<float>();
  if (topk > 0) {
    p.selected = d_selection.as<int32_t>();
    p.topk = topk;
  }
  int64_t call = 0;
  MLA_ASSIGN_OR_RETURN(const double ms, bench::TimeLaunches(
                                            [&]() -> absl::Status {
                                              // Call i reads copy i % copies.
                                              p.block_table = d_table.as<int32_t>() +
                                                              (call++ % copies) * shape_blocks;
                                              return LaunchMlaDecode(p, nullptr);
                                            },
                                            min_ms));
  return std::make_pair(ms, copies);
}

absl::Status Run() {
  MLA_ASSIGN_OR_RETURN(std::vector<CudaDeviceProps> devices, ListCudaDevices());
  if (devices.empty()) return absl::UnavailableError("no CUDA device is visible");
  const CudaDeviceProps& dev = devices.front();
  MLA_CUDA_RETURN_IF_ERROR(cudaSetDevice(dev.ordinal));
  const std::vector<int> batches = bench::ParseList(absl::GetFlag(FLAGS_batches));
  const std::vector<int> contexts = bench::ParseList(absl::GetFlag(FLAGS_contexts));
  const std::vector<int> heads = bench::ParseList(absl::GetFlag(FLAGS_heads));
  if (batches.empty() || contexts.empty() || heads.empty()) {
    return absl::InvalidArgumentError("--batches, --contexts and --heads need positive values");
  }
  const std::string kernel = absl::GetFlag(FLAGS_kernel);
  if (kernel != "auto" && kernel != "simt" && kernel != "mma" && kernel != "mma_ksplit" &&
      kernel != "mma_ring" && kernel != "mma_rows64" && kernel != "mma_wgmma") {
    return absl::InvalidArgumentError(
        "--kernel must be auto, simt, mma, mma_ksplit, mma_ring, mma_rows64 or mma_wgmma, got " +
        kernel);
  }
  double hbm = absl::GetFlag(FLAGS_hbm_gbps);
  if (hbm <= 0) hbm = bench::DeviceHbmGbps(dev.ordinal);
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int max_context = *std::max_element(contexts.begin(), contexts.end());
  Pool pool;
  pool.num_blocks = int64_t{max_batch} * ((max_context + kMlaBlockSize - 1) / kMlaBlockSize);
  MLA_ASSIGN_OR_RETURN(pool.cache, DeviceBuffer::Allocate(static_cast<size_t>(
                                       pool.num_blocks * kMlaBlockSize * BytesPerToken())));
  // Every byte 0x3c: bf16 0.0115, e4m3 1.5 with scales of 0.0115; finite either way.
  MLA_RETURN_IF_ERROR(pool.cache.Fill(0x3c));
  pool.shuffled.resize(pool.num_blocks);
  std::iota(pool.shuffled.begin(), pool.shuffled.end(), 0);
  std::shuffle(pool.shuffled.begin(), pool.shuffled.end(), std::mt19937(1));
  int l2_bytes = 0;
  MLA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev.ordinal));
  int ctas_per_sm = absl::GetFlag(FLAGS_ctas_per_sm);
  if (ctas_per_sm <= 0) {
    MLA_ASSIGN_OR_RETURN(ctas_per_sm,
                         MlaDecodeCtasPerSm(kLatent, kRope, Kernel(), absl::GetFlag(FLAGS_fp8)));
  }
  MLA_ASSIGN_OR_RETURN(const int rows_per_cta,
                       MlaDecodeRowsPerCta(kLatent, kRope, Kernel(), absl::GetFlag(FLAGS_fp8)));
  // The kernel that runs, which an opt-in one may hand the cache to.
  MLA_ASSIGN_OR_RETURN(const std::string runs,
                       MlaDecodeSplitName(kLatent, kRope, Kernel(), absl::GetFlag(FLAGS_fp8)));
  std::printf(
      "device: %s, %d SMs × %d split CTAs each (kernel %s, runs %s, %d query rows per CTA), "
      "peak HBM %.0f GB/s, L2 %.0f MB; %s cache pool %.1f GB; %s\n",
      dev.name.c_str(), dev.multiprocessors, ctas_per_sm, absl::GetFlag(FLAGS_kernel).c_str(),
      runs.c_str(), rows_per_cta, hbm, l2_bytes / 1e6, absl::GetFlag(FLAGS_fp8) ? "FP8" : "bf16",
      pool.cache.bytes() / 1e9,
      absl::GetFlag(FLAGS_rotate) ? "calls rotate through copies of the blocks (\"copies\")"
                                  : "every call reads the same blocks");
  const int topk = absl::GetFlag(FLAGS_topk);
  if (topk < 0) return absl::InvalidArgumentError("--topk must be >= 0");
  if (topk > 0) {
    std::printf(
        "sparse: top %d keys a row (GB/s and TFLOPS count them; dense us: the same "
        "number of keys read densely, in the same run)\n",
        topk);
  }
  std::printf("%6s %6s %8s %12s %10s %7s %9s %7s", "heads", "batch", "context", "us/call", "GB/s",
              "%HBM", "TFLOPS", "copies");
  std::printf(topk > 0 ? " %10s %13s\n" : "\n", "dense us", "sparse/dense");
  const int num_sms = dev.multiprocessors * ctas_per_sm;
  const double min_ms = absl::GetFlag(FLAGS_min_ms);
  for (int h : heads) {
    for (int c : contexts) {
      for (int b : batches) {
        MLA_ASSIGN_OR_RETURN(const auto timed, TimeShape(pool, {h, b, c}, num_sms, rows_per_cta,
                                                         l2_bytes, min_ms, topk));
        const double ms = timed.first;
        const double tokens = static_cast<double>(b) * (topk > 0 ? std::min(topk, c) : c);
        const double gbps = tokens * BytesPerToken() / (ms * 1e-3) / 1e9;
        const double tflops = tokens * h * kFlopsPerHeadToken / (ms * 1e-3) / 1e12;
        std::printf("%6d %6d %8d %12.1f %10.1f %6.1f%% %9.2f %7lld", h, b, c, ms * 1e3, gbps,
                    hbm > 0 ? 100.0 * gbps / hbm : 0.0, tflops,
                    static_cast<long long>(timed.second));
        if (topk > 0) {
          MLA_ASSIGN_OR_RETURN(const auto dense, TimeShape(pool, {h, b, std::min(topk, c)}, num_sms,
                                                           rows_per_cta, l2_bytes, min_ms, 0));
          std::printf(" %10.1f %13.2f", dense.first * 1e3, ms / dense.first);
        }
        std::printf("\n");
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
  return mla::cuda::bench::BenchMain("cuda_mla_decode_bench", mla::cuda::Run);
}
