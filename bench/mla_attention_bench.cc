// Decode (one query row) of the paged absorbed MLA attention at DeepSeek shapes, against
// a roofline measured in the same run. Usage: mla_attention_bench [--threads=N]
//
// Each call reads the whole latent cache of one sequence: (L + R)·2 = 1,152 bytes per
// cached token (656 with --fp8, DeepSeek's FP8 layout), shared by all heads, and does 2·(L+R) + 2·L
// = 2,176 FLOPs per head and token. Successive calls use disjoint blocks of a 151 MB cache pool, so
// the cache comes from DRAM as it does when 60 layers take turns, not from L3.
//
// Flags: --threads=N (default: all), --heads=1,16,128 and --contexts=4096,32768,131072
// select the shapes; --hot reuses one region for every call (the cache then comes from L3
// when it fits there: the kernel's own speed, not the machine's); --huge_pages asks for
// transparent huge pages for the cache pool (madvise); --fp8 stores the cache in the FP8
// layout (engine/kv_cache/cache_row.h), which the kernel dequantizes as it reads.
#include <sys/mman.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/roofline.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/mla_attention_reference.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::bench {
namespace {

constexpr int kLatent = 512;
constexpr int kRope = 64;
constexpr int kWidth = kLatent + kRope;
constexpr int kBlockSize = 64;
constexpr int kMaxContext = 131072;
constexpr int kPoolBlocks = kMaxContext / kBlockSize;
constexpr double kFlopsPerHeadToken = 2.0 * kWidth + 2.0 * kLatent;

struct Bench {
  CacheDType dtype = CacheDType::kBF16;
  int64_t row_bytes = 0;  // one cached token, CacheRowBytes(dtype, L, R)
  AlignedBuffer cache;
  std::vector<int32_t> blocks;  // a shuffled permutation of the pool
  cpu::ThreadPool* pool;
  cpu::MlaAttentionWorkspace workspace;
};

// One decode call over `context` keys, using the blocks of region `region`.
absl::Status Decode(Bench& b, int heads, int context, int region, const float* q, float* out,
                    float* lse, bool reference) {
  const int32_t seq_len = context;
  const int32_t pos0 = context - 1;
  const int32_t cu[2] = {0, 1};
  cpu::MlaAttentionParams p;
  p.batch = 1;
  p.num_heads = heads;
  p.kv_lora_rank = kLatent;
  p.rope_dim = kRope;
  p.block_size = kBlockSize;
  p.num_blocks = kPoolBlocks;
  p.max_blocks_per_seq = context / kBlockSize;
  p.softmax_scale = 1.0f / std::sqrt(192.0f);
  p.kv_dtype = b.dtype;
  p.kv_cache = b.cache.data();
  p.block_table = b.blocks.data() + static_cast<size_t>(region) * p.max_blocks_per_seq;
  p.seq_lens = &seq_len;
  p.q_pos0 = &pos0;
  p.cu_seqlens_q = cu;
  p.q = q;
  p.out = out;
  p.lse = lse;
  return reference ? cpu::MlaAttentionReference(p) : cpu::MlaAttention(p, b.pool, &b.workspace);
}

std::vector<float> RandomVector(size_t n, float amplitude, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Checks the optimised kernel against the reference on one shape before timing.
bool CheckAgainstReference(Bench& b) {
  const int heads = 16;
  const int context = 4096;
  const std::vector<float> q = RandomVector(heads * kWidth, 3.0f, 1);
  std::vector<float> out(heads * kLatent), lse(heads), ref_out(out.size()), ref_lse(heads);
  if (!Decode(b, heads, context, 0, q.data(), out.data(), lse.data(), false).ok() ||
      !Decode(b, heads, context, 0, q.data(), ref_out.data(), ref_lse.data(), true).ok()) {
    return false;
  }
  double worst = 0;
  for (int h = 0; h < heads; ++h) {
    double diff = 0, norm = 0;
    for (int d = 0; d < kLatent; ++d) {
      const double e = out[h * kLatent + d] - ref_out[h * kLatent + d];
      diff += e * e;
      norm += double{ref_out[h * kLatent + d]} * ref_out[h * kLatent + d];
    }
    worst = std::max(worst, std::sqrt(diff / norm));
    worst = std::max(worst, std::fabs(double{lse[h]} - ref_lse[h]) /
                                std::max(1.0, std::fabs(double{ref_lse[h]})));
  }
  // The opt-in bf16 level rounds queries, softmax weights and FP8 keys to bf16
  // (mla_attention_kernels_avx512_bf16.cc); its kernel test bounds the error by 1e-2.
  const bool bf16 = !cpu::IsaIsExact(cpu::ActiveIsa());
  const double tol = bf16 ? 1e-2 : 1e-5;
  std::printf("check vs reference (16 heads, 4096 keys, %s level): worst relative error %.2e %s\n\n",
              std::string(cpu::CpuIsaName(cpu::ActiveIsa())).c_str(), worst, worst < tol ? "ok" : "FAILED");
  return worst < tol;
}

std::vector<int> ParseList(const char* text) {
  std::vector<int> values;
  for (const char* p = text; *p != '\0';) {
    values.push_back(std::atoi(p));
    while (*p != '\0' && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return values;
}

int Run(int threads, const std::vector<int>& head_counts, const std::vector<int>& contexts,
        bool hot, bool huge_pages, CacheDType dtype) {
  cpu::ThreadPool pool(threads);
  RooflineProbe probe(pool);
  PrintMachine(probe.Measure(), pool.num_threads());

  Bench b;
  b.pool = &pool;
  b.dtype = dtype;
  b.row_bytes = CacheRowBytes(dtype, kLatent, kRope);
  const size_t rows = static_cast<size_t>(kPoolBlocks) * kBlockSize;
  b.cache = AlignedBuffer(rows * b.row_bytes);
  // Transparent huge pages (where the kernel grants them on request): fewer TLB misses
  // while streaming the cache.
  if (huge_pages) madvise(b.cache.data(), rows * b.row_bytes, MADV_HUGEPAGE);
  uint32_t state = 12345;
  float row[kWidth];
  for (size_t r = 0; r < rows; ++r) {  // xorshift: values in [-1, 1), fast to fill 151 MB
    for (float& v : row) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      v = static_cast<float>(state) * (2.0f / 4294967296.0f) - 1.0f;
    }
    EncodeCacheRow(dtype, kLatent, kRope, row, row + kLatent,
                   b.cache.as<uint8_t>() + r * b.row_bytes);
  }
  std::printf("cache: %s, %lld bytes per token\n", CacheDTypeName(dtype),
              static_cast<long long>(b.row_bytes));
  b.blocks.resize(kPoolBlocks);
  std::iota(b.blocks.begin(), b.blocks.end(), 0);
  std::shuffle(b.blocks.begin(), b.blocks.end(), std::mt19937(7));
  if (!CheckAgainstReference(b)) return 1;

  std::printf("%5s %7s %8s %8s %6s %9s | %6s %7s %7s %8s | %5s %8s %7s\n", "heads", "context",
              "ms/call", "GFLOP/s", "GB/s", "FLOP/byte", "BW", "peak", "bound", "of bound", "busy",
              "GF/cpu-s", "of core");
  for (int heads : head_counts) {
    const std::vector<float> q = RandomVector(heads * kWidth, 3.0f, heads);
    std::vector<float> out(heads * kLatent), lse(heads);
    for (int context : contexts) {
      if (context <= 0 || context > kMaxContext || context % kBlockSize != 0) {
        std::printf("skipping context %d: want a multiple of %d up to %d\n", context, kBlockSize,
                    kMaxContext);
        continue;
      }
      const Roofline roofline = probe.Measure();  // next to the result it bounds
      const int regions = hot ? 1 : kMaxContext / context;
      int call = 0;
      const CallTiming t = TimeCalls(
          [&] {
            const absl::Status s = Decode(b, heads, context, call++ % regions, q.data(), out.data(),
                                          lse.data(), false);
            if (!s.ok()) std::abort();
          },
          pool.num_threads(), 3, 2000, 1.0);
      const double flops = kFlopsPerHeadToken * heads * context;
      const double bytes = static_cast<double>(b.row_bytes) * context;
      const double intensity = flops / bytes;
      const double bound = std::min(roofline.read_gbps * intensity, roofline.peak_gflops);
      const double gflops = flops / t.best_s / 1e9;
      const double per_cpu = flops / t.cpu_s / 1e9;
      std::printf(
          "%5d %7d %8.3f %8.1f %6.1f %9.1f | %6.1f %7.1f %7.1f %7.0f%% | %4.0f%% %8.1f %6.0f%%\n",
          heads, context, t.best_s * 1e3, gflops, bytes / t.best_s / 1e9, intensity,
          roofline.read_gbps, roofline.peak_gflops, bound, 100.0 * gflops / bound, 100.0 * t.busy,
          per_cpu, 100.0 * per_cpu / roofline.core_peak_gflops);
    }
  }
  std::printf(
      "\nBW, peak: read bandwidth (GB/s) and FMA peak (GFLOP/s) measured just before the row; "
      "bound = min(BW x FLOP/byte, peak);\nbusy = process CPU time / (wall time x threads); "
      "GF/cpu-s = FLOPs per CPU-second of all threads, against one core's FMA peak per "
      "CPU-second.\n");
  return 0;
}

}  // namespace
}  // namespace mla::bench

int main(int argc, char** argv) {
  int threads = 0;
  std::vector<int> heads = {1, 16, 128};
  std::vector<int> contexts = {4096, 32768, 131072};
  bool hot = false;
  bool huge_pages = false;
  mla::CacheDType dtype = mla::CacheDType::kBF16;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else if (std::strncmp(argv[i], "--heads=", 8) == 0) {
      heads = mla::bench::ParseList(argv[i] + 8);
    } else if (std::strcmp(argv[i], "--hot") == 0) {
      hot = true;
    } else if (std::strcmp(argv[i], "--huge_pages") == 0) {
      huge_pages = true;
    } else if (std::strcmp(argv[i], "--fp8") == 0) {
      dtype = mla::CacheDType::kFp8E4M3;
    } else if (std::strncmp(argv[i], "--contexts=", 11) == 0) {
      contexts = mla::bench::ParseList(argv[i] + 11);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads=N] [--heads=1,16,128] "
                   "[--contexts=4096,32768,131072] [--hot] [--huge_pages] [--fp8]\n",
                   argv[0]);
      return 2;
    }
  }
  return mla::bench::Run(threads, heads, contexts, hot, huge_pages, dtype);
}
