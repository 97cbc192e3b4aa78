// Token selection on the device, for CudaBackend::Sample (cuda_sampling.cc): the greedy
// argmax, the top k of a top-k row, a row's log-sum-exp for logprobs, a scored token's
// logit and the draw of a full-vocabulary row (temperature, top-p, min-p), so that only
// ids, candidates and a few numbers per row come back to the host.
// Declarations only; see pointwise.h for the convention.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_SAMPLING_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_SAMPLING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/draw_rule.h"

namespace mla::cuda {

// ids[r] = argmax over logits row r, the lowest index on ties (engine/sampling/sampler.h's
// greedy rule). NaN never wins; a row of only NaN gives id 0.
struct ArgmaxParams {
  int64_t num_rows = 0;
  int64_t vocab_size = 0;
  const float* logits = nullptr;  // [num_rows, logits_stride], the first vocab_size used
  int64_t logits_stride = 0;
  int32_t* ids = nullptr;  // [num_rows]
  // [num_rows] or null: the winning logit, NaN when the row has only NaN (the host
  // sampler refuses a row whose best is NaN or -inf; its caller checks this).
  float* max_values = nullptr;
};

absl::Status ValidateArgmaxParams(const ArgmaxParams& p);
absl::Status LaunchArgmax(const ArgmaxParams& p, CudaStream stream);

// The k[r] best tokens of logits row r for top-k sampling, in the host sampler's order
// (engine/sampling/top_k.h: larger value first, NaN as -inf, -0 as +0, then lower index):
// ids[r, 0..k[r]) and their logits values[r, ...], in no particular order (the host
// sampler ranks them again). A row with k[r] = 0 is skipped. One CTA per row: a radix
// select of the k-th key in four 8-bit passes, then the keys above it and the lowest
// indices among those equal to it.
inline constexpr int kDeviceTopKMax = 256;
struct TopKParams {
  int64_t num_rows = 0;
  int64_t vocab_size = 0;
  const float* logits = nullptr;  // [num_rows, logits_stride]
  int64_t logits_stride = 0;
  const int32_t* k = nullptr;  // [num_rows], each in [0, min(k_cap, vocab_size)]
  int k_cap = 0;               // <= kDeviceTopKMax: the row stride of ids and values
  int32_t* ids = nullptr;      // [num_rows, k_cap]
  float* values = nullptr;     // [num_rows, k_cap]
};

absl::Status ValidateTopKParams(const TopKParams& p);
absl::Status LaunchTopK(const TopKParams& p, CudaStream stream);

// What engine/sampling/logprobs.h's LogSoftmax needs of a row, so that logprobs need not
// download it: max[r] over the logits with NaN as -inf; when it is finite, log_sum[r] =
// log Σ exp(x − max) (each term in fp32, the sum in fp64, as on the host); inf_count[r]
// the number of +inf logits.
struct LogSumExpParams {
  int64_t num_rows = 0;
  int64_t vocab_size = 0;
  const float* logits = nullptr;
  int64_t logits_stride = 0;
  float* max = nullptr;        // [num_rows]
  double* log_sum = nullptr;   // [num_rows]
  int32_t* inf_count = nullptr;  // [num_rows]
};
absl::Status ValidateLogSumExpParams(const LogSumExpParams& p);
absl::Status LaunchLogSumExp(const LogSumExpParams& p, CudaStream stream);

// out[i] = logits[rows[i], tokens[i]] (a scored token's logit).
struct GatherLogitsParams {
  int64_t num = 0;
  int64_t vocab_size = 0;
  const float* logits = nullptr;
  int64_t logits_stride = 0;
  const int64_t* rows = nullptr;    // [num]
  const int32_t* tokens = nullptr;  // [num], each in [0, vocab_size)
  float* out = nullptr;             // [num]
};
absl::Status ValidateGatherLogitsParams(const GatherLogitsParams& p);
absl::Status LaunchGatherLogits(const GatherLogitsParams& p, CudaStream stream);

// For each draw i: max[i] = the largest logit of its row (NaN as -inf) and, when that is
// finite, weight_sum[i] = Σ exp((x − max) / temperature) over the row (each term in fp32,
// the sum in fp64, as the host sampler sums them; top-p's total). One CTA per draw.
struct WeightSumParams {
  int64_t num = 0;
  int64_t vocab_size = 0;
  const float* logits = nullptr;  // [rows, logits_stride]
  int64_t logits_stride = 0;
  const DrawRow* draws = nullptr;  // [num]
  float* max = nullptr;            // [num]
  double* weight_sum = nullptr;    // [num]
};
absl::Status ValidateWeightSumParams(const WeightSumParams& p);
absl::Status LaunchWeightSum(const WeightSumParams& p, CudaStream stream);

// For each draw i (DrawRow, draw_rule.h): the host sampler's inverse-CDF draw over the kept
// tokens of its row. A token's weight is exp((x − max) / temperature); it is kept when
// its rank key (engine/sampling/top_k.h's RankKey) is at most `boundary` and its weight at
// least `min_p` (and above 0). ids[i] = the first kept token in ascending id order whose
// cumulative weight exceeds u × the kept total (the last kept token when rounding leaves
// none), logits_out[i] its logit. The cumulative sums add per-thread slices, so they may
// differ from the host's in the last bits: the token differs only where u × total lies
// within rounding of a boundary between two tokens. One CTA per draw.
struct DrawParams {
  int64_t num = 0;
  int64_t vocab_size = 0;
  const float* logits = nullptr;
  int64_t logits_stride = 0;
  const DrawRow* draws = nullptr;  // [num]
  int32_t* ids = nullptr;          // [num]
  float* logits_out = nullptr;     // [num]
};
absl::Status ValidateDrawParams(const DrawParams& p);
absl::Status LaunchDraw(const DrawParams& p, CudaStream stream);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_SAMPLING_H_
