// The per-token rule and the slices of the device draw (sampling.h's Draw), shared by the
// kernel (sampling.cu) and the CPU tests that replay its slices against the host sampler
// (tests/engine/cuda_host/draw_rule_test.cc). Plain C++ with no CUDA or Abseil
// dependency, so that the host compiler and nvcc see the same code.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_DRAW_RULE_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_DRAW_RULE_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define MLA_DRAW_FN __host__ __device__ inline
#else
#define MLA_DRAW_FN inline
#endif

namespace mla::cuda {

// One draw from a full-vocabulary row (top-k off), engine/sampling/sampler.h's steps 1, 3,
// 4 and 5 on the device. The host fills it in two steps: `row`, `temperature` and `min_p`
// before WeightSum; `max` (WeightSum's), `boundary` (TopPBoundaryOfCandidates' key, or
// kDrawKeepAll without top-p) and `u` (the request's rng.NextDouble()) before Draw.
inline constexpr uint64_t kDrawKeepAll = ~uint64_t{0};
struct DrawRow {
  int64_t row = 0;           // the logits row
  float temperature = 1.0f;  // > 0
  float min_p = 0.0f;        // in [0, 1]
  float max = 0.0f;          // the row's largest logit, finite
  uint64_t boundary = kDrawKeepAll;
  double u = 0.0;  // in [0, 1)
};

// Threads of a draw's CTA; thread t sums and walks slice t, a contiguous id range, so that
// the slices follow id order.
inline constexpr int kDrawThreads = 256;

MLA_DRAW_FN int64_t DrawSliceBegin(int64_t vocab_size, int t) {
  return t * ((vocab_size + kDrawThreads - 1) / kDrawThreads);
}
MLA_DRAW_FN int64_t DrawSliceEnd(int64_t vocab_size, int t) {
  const int64_t end = DrawSliceBegin(vocab_size, t + 1);
  return end < vocab_size ? end : vocab_size;
}

// engine/sampling/top_k.h's RankKey: larger logit first (NaN as -inf, -0 as +0), then
// lower id, as one ascending 64-bit key.
MLA_DRAW_FN uint64_t DrawRankKey(float x, int64_t id) {
  if (x != x) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;
  uint32_t bits;
#ifdef __CUDA_ARCH__
  bits = __float_as_uint(x);
#else
  std::memcpy(&bits, &x, sizeof(bits));
#endif
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(id);
}

// A token's weight in the draw: exp((x − max) / T) as the host sampler computes it, 0 when
// top-p (its rank after the boundary) or min-p drops it.
MLA_DRAW_FN float DrawWeight(float x, int64_t id, const DrawRow& d) {
  const float v = x != x ? -INFINITY : x;
#ifdef __CUDA_ARCH__
  const float w = expf((v - d.max) / d.temperature);
#else
  const float w = std::exp((v - d.max) / d.temperature);
#endif
  if (w < d.min_p) return 0.0f;
  if (d.boundary != kDrawKeepAll && DrawRankKey(x, id) > d.boundary) return 0.0f;
  return w;
}

// The kept weight of x[begin, end), and in *last the last kept id (unchanged when none).
MLA_DRAW_FN double DrawSliceSum(const float* x, int64_t begin, int64_t end, const DrawRow& d,
                                int64_t* last) {
  double sum = 0.0;
  for (int64_t i = begin; i < end; ++i) {
    const float w = DrawWeight(x[i], i, d);
    if (w > 0.0f) {
      sum += w;
      *last = i;
    }
  }
  return sum;
}

// The host sampler's inverse-CDF walk over x[begin, end), starting at the cumulative
// weight `before` of the slices ahead: the first kept id whose cumulative weight exceeds
// `target`, or -1.
MLA_DRAW_FN int64_t DrawSliceWalk(const float* x, int64_t begin, int64_t end, const DrawRow& d,
                                  double before, double target) {
  double cumulative = before;
  for (int64_t i = begin; i < end; ++i) {
    const float w = DrawWeight(x[i], i, d);
    if (w <= 0.0f) continue;
    cumulative += w;
    if (target < cumulative) return i;
  }
  return -1;
}

}  // namespace mla::cuda

#undef MLA_DRAW_FN

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_DRAW_RULE_H_
