// DeepSeek-V3.2's lightning indexer on the device (engine/backend/cuda/kernels/indexer.h)
// at the model's widths (64 heads of 128, top 2,048), one layer's call:
// - decode: `batch` rows, each its own sequence over `context` keys (bf16, 256 bytes a
//   key; with --key_dtype=fp8, e4m3 codes and a scale, 132 bytes): µs per call, GB/s of
//   keys read against peak HBM, and the selection's time alone (LaunchIndexerSelect on the
//   same scores) with its share of the call, split into segments where the rule splits
//   (IndexerSelectSegments) and with one CTA per row, in the same run;
// - prefill (--prefill_rows=N, 0 to skip): a chunk of N rows at the end of one context,
//   timed with one row per CTA and with tiles of kIndexerMaxRowTile rows in the same run:
//   TFLOP/s of the scores (2 · heads · dim per row and visible key) and the tiles'
//   speed-up (the tiles share each key load among the chunk's rows).
// Keys, q and w are random (a 4,096-key pattern repeated; the scores then spread as a
// model's do, which a radix select's passes depend on). Calls cycle through disjoint copies
// of a shape's keys, at least twice the L2 in all where memory allows, as
// cuda_mla_decode_bench does, so that a small shape is not timed out of the L2.
//
// Usage: cuda_indexer_bench [--batches=1,16,64] [--contexts=4096,32768,131072]
//        [--prefill_rows=512] [--heads=64] [--dim=128] [--topk=2048] [--min_ms=20]
//        [--hbm_gbps=0 (0: from the device)] [--key_dtype=bf16|fp8]
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
#include "bench/cuda_bench_util.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_device.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/kernels/indexer.h"
#include "engine/common/bf16.h"
#include "engine/kv_cache/index_key_row.h"

ABSL_FLAG(std::string, batches, "1,16,64", "Decode batch sizes (rows, one per sequence)");
ABSL_FLAG(std::string, contexts, "4096,32768,131072", "Context lengths (keys a row sees)");
ABSL_FLAG(int, prefill_rows, 512, "Rows of the prefill chunk (0: no prefill shapes)");
ABSL_FLAG(int, heads, 64, "Indexer heads (DeepSeek-V3.2: 64)");
ABSL_FLAG(int, dim, 128, "index_head_dim (DeepSeek-V3.2: 128)");
ABSL_FLAG(int, topk, 2048, "index_topk (DeepSeek-V3.2: 2,048)");
ABSL_FLAG(double, min_ms, 20.0, "Time each shape for at least this long");
ABSL_FLAG(double, hbm_gbps, 0.0, "Peak HBM bandwidth in GB/s (0: ask the device)");
ABSL_FLAG(std::string, key_dtype, "bf16",
          "How the keys are cached: bf16, or fp8 (codes and a scale per key, "
          "--indexer_key_dtype=fp8)");

namespace mla::cuda {
namespace {

constexpr int kBlock = 64;
constexpr int64_t kPatternKeys = 4096;
constexpr int64_t kMaxKeyBytes = int64_t{8} << 30;  // The copies' cap.

std::vector<float> RandomFloats(int64_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// One shape's device data: `copies` disjoint copies of `seqs` sequences' keys.
struct Setup {
  int64_t copies = 1, table_blocks = 0;  // table_blocks: one copy's block-table entries
  DeviceBuffer keys, table, q_pos0, cu_seqlens_q, row_seq, q, w, scores, selected, scratch;
  IndexerF32Params p;
};

// `seqs` sequences of `context` keys each; `rows_per_seq` rows per sequence at its end.
absl::StatusOr<Setup> MakeSetup(int seqs, int context, int rows_per_seq, int64_t l2_bytes,
                                bool fp8) {
  const int heads = absl::GetFlag(FLAGS_heads), dim = absl::GetFlag(FLAGS_dim);
  Setup st;
  const int64_t blocks_per_seq = (context + kBlock - 1) / kBlock;
  st.table_blocks = int64_t{seqs} * blocks_per_seq;
  const int64_t key_bytes = IndexKeyBytes(fp8 ? CacheDType::kFp8E4M3 : CacheDType::kBF16, dim);
  const int64_t shape_bytes = st.table_blocks * kBlock * key_bytes;
  st.copies = std::clamp<int64_t>(2 * l2_bytes / shape_bytes + 1, 1,
                                  std::max<int64_t>(1, kMaxKeyBytes / shape_bytes));
  const int64_t num_keys = st.copies * st.table_blocks * kBlock;
  MLA_ASSIGN_OR_RETURN(st.keys, DeviceBuffer::Allocate(static_cast<size_t>(num_keys * key_bytes)));
  {  // A random pattern of whole blocks of keys, repeated by doubling copies on the device.
    const int64_t pattern = std::min(kPatternKeys, num_keys);
    const std::vector<float> f = RandomFloats(pattern * dim, 1, -1.0f, 1.0f);
    std::vector<uint8_t> b(static_cast<size_t>(pattern * key_bytes));
    const CacheDType dtype = fp8 ? CacheDType::kFp8E4M3 : CacheDType::kBF16;
    EncodeIndexKeys(dtype, dim, kBlock, f.data(), pattern, b.data());
    MLA_RETURN_IF_ERROR(st.keys.CopyFromHost(b.data(), b.size()));
    uint8_t* keys = st.keys.as<uint8_t>();
    for (int64_t done = pattern; done < num_keys; done *= 2) {
      const int64_t n = std::min(done, num_keys - done);
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy(keys + done * key_bytes, keys,
                                          static_cast<size_t>(n * key_bytes),
                                          cudaMemcpyDeviceToDevice));
    }
  }
  std::vector<int32_t> blocks(static_cast<size_t>(st.copies * st.table_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(2));
  MLA_ASSIGN_OR_RETURN(st.table, DeviceBuffer::FromHost(blocks));
  const int64_t rows = int64_t{seqs} * rows_per_seq;
  std::vector<int32_t> q_pos0(seqs, context - rows_per_seq), cu(seqs + 1), row_seq;
  for (int s = 0; s <= seqs; ++s) cu[s] = s * rows_per_seq;
  for (int s = 0; s < seqs; ++s) row_seq.insert(row_seq.end(), rows_per_seq, s);
  MLA_ASSIGN_OR_RETURN(st.q_pos0, DeviceBuffer::FromHost(q_pos0));
  MLA_ASSIGN_OR_RETURN(st.cu_seqlens_q, DeviceBuffer::FromHost(cu));
  MLA_ASSIGN_OR_RETURN(st.row_seq, DeviceBuffer::FromHost(row_seq));
  MLA_ASSIGN_OR_RETURN(st.q, DeviceBuffer::FromHost(RandomFloats(rows * heads * dim, 3, -1, 1)));
  MLA_ASSIGN_OR_RETURN(st.w, DeviceBuffer::FromHost(RandomFloats(rows * heads, 4, -1, 1)));
  const int64_t stride = blocks_per_seq * kBlock;
  MLA_ASSIGN_OR_RETURN(st.scores,
                       DeviceBuffer::Allocate(static_cast<size_t>(rows * stride) * sizeof(float)));
  MLA_ASSIGN_OR_RETURN(
      st.selected, DeviceBuffer::Allocate(static_cast<size_t>(rows * absl::GetFlag(FLAGS_topk)) *
                                          sizeof(int32_t)));
  const int64_t scratch_bytes = IndexerSelectScratchBytes(rows, stride, absl::GetFlag(FLAGS_topk));
  if (scratch_bytes > 0) {
    MLA_ASSIGN_OR_RETURN(st.scratch, DeviceBuffer::Allocate(static_cast<size_t>(scratch_bytes)));
  }
  IndexerF32Params& p = st.p;
  p.num_rows = rows;
  p.heads = heads;
  p.dim = dim;
  p.block_size = kBlock;
  p.max_blocks = blocks_per_seq;
  p.topk = absl::GetFlag(FLAGS_topk);
  p.scale = 1.0f / 11.3137085f;  // 1/√128
  p.weight_scale = 0.125f;       // 1/√64
  p.keys = st.keys.data();
  p.keys_fp8 = fp8;
  p.block_table = st.table.as<int32_t>();
  p.q_pos0 = st.q_pos0.as<int32_t>();
  p.cu_seqlens_q = st.cu_seqlens_q.as<int32_t>();
  p.row_seq = st.row_seq.as<int32_t>();
  p.q = st.q.as<float>();
  p.w = st.w.as<float>();
  p.scores = st.scores.as<float>();
  p.scores_stride = stride;
  p.selected = st.selected.as<int32_t>();
  p.select_scratch = st.scratch.data();
  return st;
}

enum class Timed { kWhole, kSelect, kSelectUnsplit };

// Milliseconds per call of the whole indexer (scores and selection) on `st`, calls cycling
// through its copies, or of the selection alone (split where the rule splits, or not).
absl::StatusOr<double> Time(Setup& st, int row_tile, Timed what) {
  IndexerF32Params p = st.p;
  p.row_tile = row_tile;
  if (what == Timed::kSelectUnsplit) p.select_scratch = nullptr;
  const bool select_only = what != Timed::kWhole;
  const int32_t* table = st.table.as<int32_t>();
  int64_t call = 0;
  return bench::TimeLaunches(
      [&]() -> absl::Status {
        p.block_table = table + (call++ % st.copies) * st.table_blocks;
        return select_only ? LaunchIndexerSelect(p, nullptr) : LaunchIndexerTopK(p, nullptr);
      },
      absl::GetFlag(FLAGS_min_ms));
}

absl::Status Run() {
  MLA_ASSIGN_OR_RETURN(std::vector<CudaDeviceProps> devices, ListCudaDevices());
  const CudaDeviceProps& dev = devices.front();
  MLA_CUDA_RETURN_IF_ERROR(cudaSetDevice(dev.ordinal));
  const std::vector<int> batches = bench::ParseList(absl::GetFlag(FLAGS_batches));
  const std::vector<int> contexts = bench::ParseList(absl::GetFlag(FLAGS_contexts));
  const int prefill_rows = absl::GetFlag(FLAGS_prefill_rows);
  const int heads = absl::GetFlag(FLAGS_heads), dim = absl::GetFlag(FLAGS_dim);
  const int topk = absl::GetFlag(FLAGS_topk);
  const std::string key_dtype = absl::GetFlag(FLAGS_key_dtype);
  if (key_dtype != "bf16" && key_dtype != "fp8") {
    return absl::InvalidArgumentError("--key_dtype must be bf16 or fp8");
  }
  const bool fp8 = key_dtype == "fp8";
  const int64_t key_bytes = IndexKeyBytes(fp8 ? CacheDType::kFp8E4M3 : CacheDType::kBF16, dim);
  if (batches.empty() || contexts.empty() || prefill_rows < 0 || heads < 1 || dim < 1 || topk < 1) {
    return absl::InvalidArgumentError(
        "--batches and --contexts need positive values; --heads, --dim and --topk must be "
        "positive and --prefill_rows at least 0");
  }
  double hbm = absl::GetFlag(FLAGS_hbm_gbps);
  if (hbm <= 0) hbm = bench::DeviceHbmGbps(dev.ordinal);
  int l2_bytes = 0;
  MLA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev.ordinal));
  IndexerF32Params shape;
  shape.dim = dim;
  shape.block_size = kBlock;
  shape.keys_fp8 = fp8;
  std::printf(
      "device: %s, %d SMs, peak HBM %.0f GB/s, L2 %.0f MB; indexer %d heads of %d (%s), "
      "%s keys (%lld bytes each), top %d, %d-token blocks\n",
      dev.name.c_str(), dev.multiprocessors, hbm, l2_bytes / 1e6, heads, dim,
      IndexerUsesTensorCores(shape) ? "tensor cores" : "CUDA cores", key_dtype.c_str(),
      static_cast<long long>(key_bytes), topk, kBlock);
  std::printf(
      "decode: one row per sequence (select: as the call runs it, in segments where it "
      "splits; unsplit: one CTA per row)\n%6s %8s %10s %10s %10s %7s %10s %8s %9s %11s %7s\n",
      "batch", "context", "keys MB", "us/call", "key GB/s", "%HBM", "select us", "select%",
      "segments", "unsplit us", "copies");
  for (int c : contexts) {
    for (int b : batches) {
      MLA_ASSIGN_OR_RETURN(Setup st, MakeSetup(b, c, 1, l2_bytes, fp8));
      MLA_ASSIGN_OR_RETURN(const double ms, Time(st, 1, Timed::kWhole));
      MLA_ASSIGN_OR_RETURN(const double select_ms, Time(st, 1, Timed::kSelect));
      MLA_ASSIGN_OR_RETURN(const double unsplit_ms, Time(st, 1, Timed::kSelectUnsplit));
      const double key_mb = static_cast<double>(b) * c * key_bytes / 1e6;
      const double gbps = key_mb / 1e3 / (ms * 1e-3);
      std::printf("%6d %8d %10.1f %10.1f %10.1f %6.1f%% %10.1f %7.1f%% %9d %11.1f %7lld\n", b, c,
                  key_mb, ms * 1e3, gbps, hbm > 0 ? 100.0 * gbps / hbm : 0.0, select_ms * 1e3,
                  100.0 * select_ms / ms, IndexerSelectSegments(b, st.p.scores_stride, topk),
                  unsplit_ms * 1e3, static_cast<long long>(st.copies));
      std::fflush(stdout);
    }
  }
  if (prefill_rows == 0) return absl::OkStatus();
  std::printf(
      "prefill: %d rows at the end of one sequence, tiles of 1 and %d rows (same run)\n"
      "%8s %12s %12s %10s %10s %10s\n",
      prefill_rows, kIndexerMaxRowTile, "context", "us (tile 1)", "us (tile 4)", "TFLOPS",
      "tile speed", "select us");
  for (int c : contexts) {
    if (c < prefill_rows) continue;
    MLA_ASSIGN_OR_RETURN(Setup st, MakeSetup(1, c, prefill_rows, l2_bytes, fp8));
    MLA_ASSIGN_OR_RETURN(const double one_ms, Time(st, 1, Timed::kWhole));
    MLA_ASSIGN_OR_RETURN(const double tile_ms, Time(st, kIndexerMaxRowTile, Timed::kWhole));
    MLA_ASSIGN_OR_RETURN(const double select_ms, Time(st, 1, Timed::kSelect));
    // Row i of the chunk sees c − prefill_rows + i + 1 keys.
    const double keys_seen = static_cast<double>(prefill_rows) * (c - prefill_rows) +
                             static_cast<double>(prefill_rows) * (prefill_rows + 1) / 2;
    const double tflops = keys_seen * heads * dim * 2 / (tile_ms * 1e-3) / 1e12;
    std::printf("%8d %12.1f %12.1f %10.1f %9.2fx %10.1f\n", c, one_ms * 1e3, tile_ms * 1e3, tflops,
                one_ms / tile_ms, select_ms * 1e3);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mla::cuda

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return mla::cuda::bench::BenchMain("cuda_indexer_bench", mla::cuda::Run);
}
