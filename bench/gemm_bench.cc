// GEMV (n = 1, decode) and GEMM (n = 16, 128, 512, prefill) over DeepSeek projection
// shapes with bf16 weights, against the roofline measured in the same run.
// Usage: gemm_bench [--threads=N] [--dtype=bf16|f32]
//
// n = 1 reads every weight once: reported as GB/s of weights against the read bandwidth.
// Successive calls rotate over copies of the weight totalling >= 256 MiB, so the weights
// come from DRAM (as they do for a model's many layers), not from L3.
// n > 1 is reported as GFLOP/s (2·n·rows·cols per call) against the FMA peak.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/roofline.h"
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
// 10944 and down 10944 -> 2048.
constexpr Shape kShapes[] = {
    {"q_proj 2048->3072", 2048, 3072},
    {"kv_b_proj 512->4096", 512, 4096},
    {"mlp_up 2048->10944", 2048, 10944},
    {"mlp_down 10944->2048", 10944, 2048},
};
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

int Run(int threads, DType dtype) {
  cpu::ThreadPool pool(threads);
  RooflineProbe probe(pool);
  PrintMachine(probe.Measure(), pool.num_threads());
  std::printf("weights: %s\n\n", std::string(DTypeName(dtype)).c_str());
  std::printf("%-22s %5s %9s %9s %8s | %6s %7s %8s | %5s %8s %7s\n", "shape", "n", "ms/call",
              "GFLOP/s", "GB/s", "BW", "peak", "of bound", "busy", "GF/cpu-s", "of core");
  for (const Shape& shape : kShapes) {
    const std::vector<Matrix> weights = MakeCopies(shape, dtype);
    for (int64_t n : {1, 16, 128, 512}) {
      const Roofline roofline = probe.Measure();  // next to the result it bounds
      std::vector<float> x(n * shape.in, 0.01f), y(n * shape.out);
      size_t call = 0;
      const CallTiming t = TimeCalls(
          [&] {
            const Matrix& w = weights[call++ % weights.size()];
            cpu::Gemm(x.data(), shape.in, n, w.View(), y.data(), shape.out, &pool);
          },
          pool.num_threads(), 3, 5000, 0.5);
      const double flops = 2.0 * n * shape.in * shape.out;
      const double bytes = static_cast<double>(shape.in * shape.out) * DTypeSize(dtype);
      const double gflops = flops / t.best_s / 1e9;
      const double gbps = bytes / t.best_s / 1e9;
      const double per_cpu = flops / t.cpu_s / 1e9;
      // n = 1 is bound by reading the weights, n > 1 (intensity >= 16 FLOP/byte) by FMAs.
      const double fraction = n == 1 ? gbps / roofline.read_gbps : gflops / roofline.peak_gflops;
      std::printf("%-22s %5lld %9.3f %9.1f %8.1f | %6.1f %7.1f %7.0f%% | %4.0f%% %8.1f %6.0f%%\n",
                  shape.name, static_cast<long long>(n), t.best_s * 1e3, gflops, gbps,
                  roofline.read_gbps, roofline.peak_gflops, 100.0 * fraction, 100.0 * t.busy,
                  per_cpu, 100.0 * per_cpu / roofline.core_peak_gflops);
    }
  }
  std::printf(
      "\nBW, peak: read bandwidth (GB/s) and FMA peak (GFLOP/s) measured just before the row; "
      "the bound is BW for n = 1 (GB/s of weights),\npeak for n > 1; busy = process CPU time / "
      "(wall time x threads); GF/cpu-s = FLOPs per CPU-second of all threads, against one "
      "core's FMA peak per CPU-second.\n");
  return 0;
}

}  // namespace
}  // namespace mla::bench

int main(int argc, char** argv) {
  int threads = 0;
  mla::DType dtype = mla::DType::kBF16;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else if (std::strcmp(argv[i], "--dtype=f32") == 0) {
      dtype = mla::DType::kF32;
    } else if (std::strcmp(argv[i], "--dtype=bf16") != 0) {
      std::fprintf(stderr, "usage: %s [--threads=N] [--dtype=bf16|f32]\n", argv[0]);
      return 2;
    }
  }
  return mla::bench::Run(threads, dtype);
}
