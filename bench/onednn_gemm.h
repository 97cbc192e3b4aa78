// oneDNN's bf16 matmul on our GEMM's contract (y[n, out] = x[n, in] · Wᵀ, W bf16 [out, in]
// row-major), for gemm_bench's comparison only: built when CMake finds oneDNN
// (Debian: libdnnl-dev), never linked into the engine.
//
// oneDNN 2.x multiplies bf16 by bf16 (no fp32-activation × bf16-weight kernel), so each call
// rounds x to bf16 first, as our opt-in avx512_bf16 kernel does, and that conversion is
// timed. The weights are reordered once into oneDNN's preferred blocked layout (the
// "prepacked at load" its users get), outside the timing.
#ifndef MLA_BENCH_ONEDNN_GEMM_H_
#define MLA_BENCH_ONEDNN_GEMM_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/common/tensor.h"

namespace mla::bench {

class OneDnnGemm {
 public:
  // One primitive for n rows of `in` features into `out`, and every weight copy reordered
  // for it (the copies keep n = 1 reading from DRAM, as in gemm_bench).
  OneDnnGemm(int64_t n, int64_t in, int64_t out, const std::vector<Matrix>& weights);
  ~OneDnnGemm();
  // y = x · W[copy]ᵀ, x [n, in] fp32, y [n, out] fp32; waits for the result.
  void Run(const float* x, float* y, size_t copy);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mla::bench

#endif  // MLA_BENCH_ONEDNN_GEMM_H_
