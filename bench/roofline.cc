#include "bench/roofline.h"

#include "engine/backend/cpu/simd_avx512.h"  // first of the <immintrin.h> includes

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <vector>

#include "engine/backend/cpu/cpu_features.h"
#include "engine/common/tensor.h"

#if defined(__x86_64__) || defined(__i386__)
#define MLA_BENCH_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace mla::bench {
namespace {

constexpr size_t kBandwidthBytes = size_t{512} << 20;  // 16× the largest L3 seen here
constexpr int64_t kFmaIterations = 100'000'000;

float SumScalar(const float* p, int64_t n) {
  float s[8] = {};
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) s[k] += p[i + k];
  }
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

#ifdef MLA_BENCH_AVX2
MLA_BENCH_AVX2 float SumAvx2(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// The same sum over four equal parts of [p, p + n) read side by side: four streams in
// flight per thread, as a GEMV over several rows has, which gets more out of the memory
// system on some machines than one stream.
MLA_BENCH_AVX2 float SumAvx2FourStreams(const float* p, int64_t n) {
  const int64_t part = n / 4 / 16 * 16;
  __m256 a[8];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) a[k] = _mm256_setzero_ps();
  for (int64_t i = 0; i < part; i += 16) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      a[2 * s] = _mm256_add_ps(a[2 * s], _mm256_load_ps(p + s * part + i));
      a[2 * s + 1] = _mm256_add_ps(a[2 * s + 1], _mm256_load_ps(p + s * part + i + 8));
    }
  }
  alignas(32) float out[8];
  __m256 t = a[0];
#pragma GCC unroll 8
  for (int k = 1; k < 8; ++k) t = _mm256_add_ps(t, a[k]);
  _mm256_store_ps(out, t);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// 12 independent chains: FMA latency (4-5 cycles) × 2 FMA pipes needs at least 10.
MLA_BENCH_AVX2 float FmaAvx2(int64_t iters, float seed) {
  __m256 a[12];
#pragma GCC unroll 16
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(seed + i);
  const __m256 m = _mm256_set1_ps(0.999999f);
  const __m256 c = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0];
}

#ifdef MLA_TARGET_AVX512BF16
// The same with 512-bit FMAs (32 FLOP per instruction): the exact avx512 level's peak.
MLA_TARGET_AVX512F float FmaAvx512(int64_t iters, float seed) {
  __m512 a[12];
#pragma GCC unroll 16
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(seed + i);
  const __m512 m = _mm512_set1_ps(0.999999f);
  const __m512 c = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
#endif

// The same for vdpbf16ps (64 FLOP per instruction): 12 chains cover its latency (6 cycles
// on Zen 4 at one 512-bit instruction per cycle).
MLA_TARGET_AVX512BF16 float DotBf16Avx512(int64_t iters, float seed) {
  __m512 a[12];
#pragma GCC unroll 16
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(seed + i);
  const __m512i ones = _mm512_set1_epi32(0x3f803f80);   // bf16 pairs (1, 1)
  const __m512i small = _mm512_set1_epi32(0x358d358d);  // bf16 pairs (~1e-6, ~1e-6)
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)ones, (__m512bh)small);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_cvtss_f32(s);
}

// TDPBF16PS on tiles held in registers (2 · 16 · 16 · 32 = 16,384 FLOP per instruction):
// four independent C tiles from two A and two B tiles, as the AMX GEMM's block runs it,
// without its loads. The tile state is this thread's: configured and released here.
__attribute__((target("avx512f,amx-tile,amx-bf16"))) float DotBf16Amx(int64_t iters, float seed) {
  struct alignas(64) {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
  } config;
  alignas(64) uint16_t ones[16 * 32];
  std::fill(std::begin(ones), std::end(ones), uint16_t{0x3f80});
  alignas(64) float c[16 * 16];
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  // Each TDPBF16PS takes 16 cycles: an eighth of the iterations keeps the loop as long as
  // the vector ones.
  for (int64_t it = 0; it < iters / 8; ++it) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0] + seed;
}
#endif

// Best of 4 passes with one stream per thread and 4 with four (AVX2 only).
double ReadBandwidth(cpu::ThreadPool& pool, bool avx2, const AlignedBuffer& buffer) {
  const int64_t n = buffer.size() / sizeof(float);
  const float* data = buffer.as<float>();
  std::vector<float> sink(pool.num_threads());
  double best = 0;
  for (int rep = 0; rep < 8; ++rep) {
    const bool four = rep % 2 == 1;
    const double start = Now();
    pool.ParallelFor(pool.num_threads(), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t lo = n * t / pool.num_threads() / 32 * 32;
        const int64_t hi = n * (t + 1) / pool.num_threads() / 32 * 32;
#ifdef MLA_BENCH_AVX2
        sink[t] = !avx2  ? SumScalar(data + lo, hi - lo)
                  : four ? SumAvx2FourStreams(data + lo, hi - lo)
                         : SumAvx2(data + lo, hi - lo);
#else
        (void)four;
        sink[t] = SumScalar(data + lo, hi - lo);
#endif
      }
    });
    best = std::max(best, buffer.size() / (Now() - start) / 1e9);
  }
  if (sink[0] < 0) std::printf("#");  // keep the sums alive
  return best;
}

double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

// One thread, FLOPs per second of its own CPU time (best of 3).
double CoreFmaPeak(bool avx2) {
#ifdef MLA_BENCH_AVX2
  if (!avx2) return 0;
  double best = 0;
  float sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double start = ThreadCpuSeconds();
    sink += FmaAvx2(kFmaIterations / 10, 1.0f + rep);
    const double flops = 2.0 * 8 * 12 * (kFmaIterations / 10);
    best = std::max(best, flops / (ThreadCpuSeconds() - start) / 1e9);
  }
  if (sink < 0) std::printf("#");
  return best;
#else
  return 0;
#endif
}

// All threads of the pool run kernel(iterations, seed), flops_per_iter each (best of 3).
double PoolPeak(cpu::ThreadPool& pool, float (*kernel)(int64_t, float), double flops_per_iter) {
  std::vector<float> sink(pool.num_threads());
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double start = Now();
    pool.ParallelFor(pool.num_threads(), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) sink[t] = kernel(kFmaIterations / 10, 1.0f + t);
    });
    const double flops = flops_per_iter * (kFmaIterations / 10) * pool.num_threads();
    best = std::max(best, flops / (Now() - start) / 1e9);
  }
  if (sink[0] < 0) std::printf("#");
  return best;
}

double FmaPeak(cpu::ThreadPool& pool, bool avx2) {
#ifdef MLA_BENCH_AVX2
  return avx2 ? PoolPeak(pool, FmaAvx2, 2.0 * 8 * 12) : 0;
#else
  return 0;
#endif
}

double Bf16DotPeak(cpu::ThreadPool& pool) {
#ifdef MLA_TARGET_AVX512BF16
  return cpu::IsaSupported(cpu::CpuIsa::kAvx512Bf16) ? PoolPeak(pool, DotBf16Avx512, 64.0 * 12) : 0;
#else
  return 0;
#endif
}

// 0 without AVX-512.
double Fma512Peak(cpu::ThreadPool& pool) {
#ifdef MLA_TARGET_AVX512BF16
  return cpu::IsaSupported(cpu::CpuIsa::kAvx512) ? PoolPeak(pool, FmaAvx512, 2.0 * 16 * 12) : 0;
#else
  return 0;
#endif
}

// 0 where the AMX level is not usable (cpu_features.cc asks the OS for the tile state).
double Bf16AmxPeak(cpu::ThreadPool& pool) {
#ifdef MLA_TARGET_AVX512BF16
  return cpu::IsaSupported(cpu::CpuIsa::kAmxBf16) ? PoolPeak(pool, DotBf16Amx, 4 * 16384.0 / 8)
                                                 : 0;
#else
  return 0;
#endif
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

}  // namespace

RooflineProbe::RooflineProbe(cpu::ThreadPool& pool) : pool_(pool), buffer_(kBandwidthBytes) {
  const int64_t n = kBandwidthBytes / sizeof(float);
  float* data = buffer_.as<float>();
  // First touch from the threads that will read (matters on NUMA machines).
  pool_.ParallelFor(n, [&](int64_t b, int64_t e) { std::fill(data + b, data + e, 1.0f); });
}

Roofline RooflineProbe::Measure() {
  const bool avx2 = cpu::ActiveIsa() >= cpu::CpuIsa::kAvx2;
  Roofline r;
  r.isa = std::string(cpu::CpuIsaName(cpu::ActiveIsa()));
  r.read_gbps = ReadBandwidth(pool_, avx2, buffer_);
  r.peak_gflops = FmaPeak(pool_, avx2);
  r.core_peak_gflops = CoreFmaPeak(avx2);
  r.fma512_peak_gflops = Fma512Peak(pool_);
  r.bf16_peak_gflops = Bf16DotPeak(pool_);
  r.amx_peak_gflops = Bf16AmxPeak(pool_);
  return r;
}

Roofline MeasureRoofline(cpu::ThreadPool& pool) { return RooflineProbe(pool).Measure(); }

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

void PrintMachine(const Roofline& r, int threads) {
  std::printf("cpu: %s, %d threads, kernels: %s\n", CpuModel().c_str(), threads, r.isa.c_str());
  // Other processes share the cores: the load average says how quiet the machine was.
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3)
    std::printf("load average: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  std::printf(
      "roofline: read bandwidth %.1f GB/s, FMA peak %.1f GFLOP/s (best of runs); one core: "
      "%.1f GFLOP/s per CPU-second\n",
      r.read_gbps, r.peak_gflops, r.core_peak_gflops);
  if (r.fma512_peak_gflops > 0) {
    std::printf("fp32 AVX-512 FMA peak (all threads): %.1f GFLOP/s\n", r.fma512_peak_gflops);
  }
  if (r.bf16_peak_gflops > 0) {
    std::printf("bf16 dot-product peak (vdpbf16ps, all threads): %.1f GFLOP/s\n",
                r.bf16_peak_gflops);
  }
  if (r.amx_peak_gflops > 0) {
    std::printf("bf16 AMX tile peak (TDPBF16PS, all threads): %.1f GFLOP/s\n",
                r.amx_peak_gflops);
  }
  std::printf("\n");
}

}  // namespace mla::bench
