// GEMV (n = 1, decode) and GEMM (n = 16, 128, 512, prefill) over DeepSeek projection
// shapes with bf16 weights, against the roofline measured in the same run.
// Usage: gemm_bench [--threads=N] [--dtype=bf16|f32] [--isas=avx2,avx512_bf16] [--onednn]
//                   [--ns=1,16,128,512] [--shapes=q_proj,kv_b_proj,mlp_up,mlp_down,lm_head]
//
// --ns: the token counts to time (decode batches live at 2-64); --shapes: which shapes,
// by the name before the space (default all but lm_head, whose 419 MB take long at n = 512).
//
// --isas times every listed kernel variant (cpu_features.h) on each shape, one after the
// other in this process, and gives each row's speed as a ratio to the first variant's:
// a before/after comparison from one run. Variants this CPU lacks are reported and
// left out. Default: the variant the library would choose by itself.
//
// --onednn adds a row per shape for oneDNN's bf16 matmul (bench/onednn_gemm.h: x rounded to
// bf16 per call, weights reordered once) when the build found oneDNN; its ratio is against
// the first --isas variant as well.
//
// n = 1 reads every weight once: reported as GB/s of weights against the read bandwidth.
// Successive calls rotate over copies of the weight totalling >= 256 MiB, so the weights
// come from DRAM (as they do for a model's many layers), not from L3.
// n > 1 is reported as GFLOP/s (2·n·rows·cols per call) against the FMA peak.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/roofline.h"
#if MLA_HAVE_ONEDNN
#include "bench/onednn_gemm.h"
#endif
#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/tensor.h"

namespace mla::bench {
namespace {

struct Shape {
  const char* name;
  int64_t in;   // cols
  int64_t out;  // rows
};

// V2-Lite: q_proj 2048 -> 16·192, kv_b_proj 512 -> 16·256, expert/dense MLP up 2048 ->
// 10944 and down 10944 -> 2048, lm_head 2048 -> 102400 (56% of a decode step's bytes), a
// routed expert's up 2048 -> 1408 and down 1408 -> 2048 (a 512-token prefill chunk gives
// each of the 64 experts ~48 tokens).
constexpr Shape kShapes[] = {
    {"q_proj 2048->3072", 2048, 3072},      {"kv_b_proj 512->4096", 512, 4096},
    {"mlp_up 2048->10944", 2048, 10944},    {"mlp_down 10944->2048", 10944, 2048},
    {"lm_head 2048->102400", 2048, 102400}, {"expert_up 2048->1408", 2048, 1408},
    {"expert_down 1408->2048", 1408, 2048},
};
constexpr const char* kDefaultShapes = "q_proj,kv_b_proj,mlp_up,mlp_down";

// "a,b,c" -> {"a", "b", "c"}.
std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Whether `shape`'s name (up to its first space) is in `wanted`.
bool Wanted(const Shape& shape, const std::vector<std::string>& wanted) {
  const std::string name(shape.name);
  const std::string key = name.substr(0, name.find(' '));
  return std::find(wanted.begin(), wanted.end(), key) != wanted.end();
}
constexpr size_t kRotationBytes = size_t{256} << 20;

std::vector<Matrix> MakeCopies(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape.in * shape.out) * DTypeSize(dtype);
  const size_t copies = std::max<size_t>(1, (kRotationBytes + bytes - 1) / bytes);
  std::vector<Matrix> weights;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  for (size_t c = 0; c < copies; ++c) {
    Matrix w = Matrix::Allocate(shape.out, shape.in, dtype);
    for (int64_t i = 0; i < shape.out * shape.in; ++i) {
      const float v = dist(rng);
      if (dtype == DType::kBF16) {
        w.bf16()[i] = FloatToBf16(v);
      } else {
        w.f32()[i] = v;
      }
    }
    weights.push_back(std::move(w));
  }
  return weights;
}

// The compute peak a variant's rows are measured against: 512-bit fp32 FMA for the exact
// avx512 kernels (n > 32, or n >= 2 on bf16 weights), TDPBF16PS for the AMX kernel's
// tiles (n >= kAmxMinTokens), vdpbf16ps for the other bf16 kernels on bf16 weights, fp32 FMA
// otherwise.
double ComputePeak(const Roofline& roofline, cpu::CpuIsa isa, DType dtype, int64_t n) {
  if (cpu::IsaIsExact(isa) || dtype != DType::kBF16) {
    // The exact avx512 kernel uses 512-bit FMAs from 33 tokens, and from 2 on bf16
    // weights; otherwise the AVX2 ones.
    const bool wide = n > 32 || (n >= 2 && dtype == DType::kBF16);
    return isa >= cpu::CpuIsa::kAvx512 && wide ? roofline.fma512_peak_gflops
                                               : roofline.peak_gflops;
  }
  return isa >= cpu::CpuIsa::kAmxBf16 && n >= cpu::kAmxMinTokens
             ? roofline.amx_peak_gflops
                                                : roofline.bf16_peak_gflops;
}

void PrintRow(const Shape& shape, int64_t n, const std::string& name, const CallTiming& t,
              double first_s, const Roofline& roofline, double peak, DType dtype) {
  const double flops = 2.0 * n * shape.in * shape.out;
  const double bytes = static_cast<double>(shape.in * shape.out) * DTypeSize(dtype);
  const double gflops = flops / t.best_s / 1e9;
  const double gbps = bytes / t.best_s / 1e9;
  const double per_cpu = flops / t.cpu_s / 1e9;
  // n = 1 is bound by reading the weights, n > 1 (intensity >= 16 FLOP/byte) by the
  // multiply-adds.
  const double fraction = n == 1 ? gbps / roofline.read_gbps : gflops / peak;
  std::printf(
      "%-22s %5lld %-11s %9.3f %9.1f %8.1f %5.2fx | %6.1f %7.1f %7.0f%% | %4.0f%% %8.1f "
      "%6.0f%%\n",
      shape.name, static_cast<long long>(n), name.c_str(), t.best_s * 1e3, gflops, gbps,
      first_s / t.best_s, roofline.read_gbps, peak, 100.0 * fraction, 100.0 * t.busy, per_cpu,
      100.0 * per_cpu / roofline.core_peak_gflops);
}

#if MLA_HAVE_ONEDNN
// oneDNN and our GEMM on one random input: the rows must agree to bf16 rounding of x
// (2^-9 relative per element), else the comparison would time a different product.
bool OneDnnAgrees(OneDnnGemm& gemm, const Shape& shape, int64_t n, const Matrix& w,
                  cpu::ThreadPool& pool) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(n * shape.in), want(n * shape.out), got(n * shape.out);
  for (float& v : x) v = dist(rng);
  cpu::Gemm(x.data(), shape.in, n, w.View(), want.data(), shape.out, &pool);
  gemm.Run(x.data(), got.data(), 0);
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(double(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  if (err <= 1e-2 * scale) return true;
  std::fprintf(stderr, "onednn disagrees with our GEMM on %s n=%lld: max error %g of %g\n",
               shape.name, static_cast<long long>(n), err, scale);
  return false;
}
#endif

int Run(int threads, DType dtype, const std::vector<cpu::CpuIsa>& isas, bool onednn,
        const std::vector<int64_t>& ns, const std::vector<std::string>& shapes) {
  cpu::ThreadPool pool(threads);
  RooflineProbe probe(pool);
  PrintMachine(probe.Measure(), pool.num_threads());
  std::printf("weights: %s\n\n", std::string(DTypeName(dtype)).c_str());
  std::printf("%-22s %5s %-11s %9s %9s %8s %6s | %6s %7s %8s | %5s %8s %7s\n", "shape", "n", "isa",
              "ms/call", "GFLOP/s", "GB/s", "ratio", "BW", "peak", "of bound", "busy", "GF/cpu-s",
              "of core");
  for (const Shape& shape : kShapes) {
    if (!Wanted(shape, shapes)) continue;
    const std::vector<Matrix> weights = MakeCopies(shape, dtype);
    for (int64_t n : ns) {
      const Roofline roofline = probe.Measure();  // next to the results it bounds
      std::vector<float> x(n * shape.in, 0.01f), y(n * shape.out);
      double first_s = 0;
      for (cpu::CpuIsa isa : isas) {
        cpu::ScopedIsaOverride force(isa);
        size_t call = 0;
        const CallTiming t = TimeCalls(
            [&] {
              const Matrix& w = weights[call++ % weights.size()];
              cpu::Gemm(x.data(), shape.in, n, w.View(), y.data(), shape.out, &pool);
            },
            pool.num_threads(), 3, 5000, 0.5);
        if (first_s == 0) first_s = t.best_s;
        PrintRow(shape, n, std::string(cpu::CpuIsaName(isa)), t, first_s, roofline,
                 ComputePeak(roofline, isa, dtype, n), dtype);
      }
#if MLA_HAVE_ONEDNN
      if (onednn && dtype == DType::kBF16) {
        OneDnnGemm gemm(n, shape.in, shape.out, weights);
        if (!OneDnnAgrees(gemm, shape, n, weights.front(), pool)) return 1;
        size_t call = 0;
        const CallTiming t = TimeCalls([&] { gemm.Run(x.data(), y.data(), call++); },
                                       pool.num_threads(), 3, 5000, 0.5);
        // Against the bf16 dot-product peak: oneDNN multiplies bf16 by bf16 as well.
        PrintRow(shape, n, "onednn", t, first_s, roofline,
                 ComputePeak(roofline, cpu::CpuIsa::kAvx512Bf16, dtype, n), dtype);
      }
#endif
    }
  }
  std::printf(
      "\nratio: speed against the first isa on the same row; BW, peak: read bandwidth (GB/s) "
      "and compute peak (GFLOP/s: fp32 FMA (512-bit for avx512 from n = 2), vdpbf16ps for avx512_bf16 on bf16 weights, "
      "TDPBF16PS for amx_bf16 from n = 8)\n"
      "measured just before the row; the bound is BW for n = 1 (GB/s of weights), peak for "
      "n > 1; busy = process CPU time / (wall time x threads);\nGF/cpu-s = FLOPs per "
      "CPU-second of all threads, against one core's fp32 FMA peak per CPU-second.\n");
  return 0;
}

// "avx2,avx512_bf16" -> the variants this CPU has, in order; false on an unknown name.
bool ParseIsas(const char* list, std::vector<cpu::CpuIsa>* isas) {
  std::string rest(list);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string name = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const std::optional<cpu::CpuIsa> isa = cpu::ParseCpuIsa(name);
    if (!isa.has_value()) return false;
    if (!cpu::IsaSupported(*isa)) {
      std::printf("isa %s: left out, this CPU lacks %s\n", name.c_str(),
                  std::string(cpu::CpuIsaFeatures(*isa)).c_str());
      continue;
    }
    isas->push_back(*isa);
  }
  return true;
}

}  // namespace
}  // namespace mla::bench

int main(int argc, char** argv) {
  int threads = 0;
  mla::DType dtype = mla::DType::kBF16;
  std::vector<mla::cpu::CpuIsa> isas;
  bool onednn = false;
  std::vector<int64_t> ns = {1, 16, 128, 512};
  std::vector<std::string> shapes = mla::bench::SplitList(mla::bench::kDefaultShapes);
  for (int i = 1; i < argc; ++i) {
    bool ok = true;
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else if (std::strcmp(argv[i], "--dtype=f32") == 0) {
      dtype = mla::DType::kF32;
    } else if (std::strcmp(argv[i], "--onednn") == 0) {
#if MLA_HAVE_ONEDNN
      onednn = true;
#else
      std::fprintf(stderr, "--onednn: this build did not find oneDNN (Debian: libdnnl-dev)\n");
      return 2;
#endif
    } else if (std::strncmp(argv[i], "--ns=", 5) == 0) {
      ns.clear();
      for (const std::string& v : mla::bench::SplitList(argv[i] + 5)) {
        ns.push_back(std::atoll(v.c_str()));
        ok = ok && ns.back() > 0;
      }
      ok = ok && !ns.empty();
    } else if (std::strncmp(argv[i], "--shapes=", 9) == 0) {
      shapes = mla::bench::SplitList(argv[i] + 9);
      ok = !shapes.empty();
    } else if (std::strncmp(argv[i], "--isas=", 7) == 0) {
      ok = mla::bench::ParseIsas(argv[i] + 7, &isas);
    } else {
      ok = std::strcmp(argv[i], "--dtype=bf16") == 0;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--threads=N] [--dtype=bf16|f32] [--isas=avx2,avx512_bf16] "
                   "[--onednn] [--ns=1,16,128,512] "
                   "[--shapes=q_proj,kv_b_proj,mlp_up,mlp_down,lm_head]\n",
                   argv[0]);
      return 2;
    }
  }
  if (isas.empty()) isas.push_back(mla::cpu::ActiveIsa());
  // oneDNN runs on OpenMP; give it the pool's thread count unless the caller chose.
  if (threads > 0) setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), /*overwrite=*/0);
  return mla::bench::Run(threads, dtype, isas, onednn, ns, shapes);
}
