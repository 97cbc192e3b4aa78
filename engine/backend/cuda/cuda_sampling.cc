// CudaBackend::Sample: greedy rows that want no logprobs take the device's argmax, so only
// their ids (and winning logits, to refuse an all-NaN row as the host sampler does) come
// back; every other row downloads its logits row and runs the CPU backend's sampler
// (engine/backend/host_sampling.h), which keeps each option and logprob exactly as there.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/sampling.h"
#include "engine/backend/host_sampling.h"
#include "engine/sampling/sampling_params.h"

namespace mla::cuda {

using internal::Raw;
using internal::Shape;

namespace {

bool DeviceGreedy(const RowSampling& r) {
  return r.score_token < 0 && r.top_logprobs < 0 && r.params != nullptr && r.params->greedy();
}

}  // namespace

void CudaBackend::Sample(const Tensor& logits, std::span<const RowSampling> rows,
                         std::span<RowSample> out, Op op) {
  auto timer = profiler_.Time(op);
  if (rows.size() != out.size()) {
    return Fail(op, absl::InvalidArgumentError("one result per sampled row"));
  }
  if (logits.dtype != DType::kF32) {
    return Fail(op, absl::InvalidArgumentError("logits must be F32"));
  }
  bool any_greedy = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].row < 0 || rows[i].row >= logits.rows) {
      out[i].status = absl::InvalidArgumentError(
          absl::StrCat(op.name, ": row ", rows[i].row, " outside ", Shape(logits)));
    }
    any_greedy = any_greedy || DeviceGreedy(rows[i]);
  }
  const size_t cols = static_cast<size_t>(logits.cols);
  auto copy_back = [&]() -> absl::Status {
    if (any_greedy) {
      // Every row of `logits`: one launch, and it costs little beside the forward pass.
      const size_t n = static_cast<size_t>(logits.rows);
      MLA_RETURN_IF_ERROR(Reserve(argmax_ids_, std::max<size_t>(n, 1) * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(argmax_max_, std::max<size_t>(n, 1) * sizeof(float)));
      ArgmaxParams p;
      p.num_rows = logits.rows;
      p.vocab_size = logits.cols;
      p.logits = static_cast<const float*>(logits.data);
      p.logits_stride = logits.stride;
      p.ids = argmax_ids_.as<int32_t>();
      p.max_values = argmax_max_.as<float>();
      MLA_RETURN_IF_ERROR(LaunchArgmax(p, stream_));
      argmax_ids_host_.resize(n);
      argmax_max_host_.resize(n);
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(argmax_ids_host_.data(), argmax_ids_.data(),
                                               n * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                               Raw(stream_)));
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(argmax_max_host_.data(), argmax_max_.data(),
                                               n * sizeof(float), cudaMemcpyDeviceToHost,
                                               Raw(stream_)));
    }
    logits_host_.resize(static_cast<size_t>(logits.rows) * cols);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!out[i].status.ok() || DeviceGreedy(rows[i])) continue;
      const int64_t r = rows[i].row;
      MLA_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(logits_host_.data() + r * logits.cols,
                          static_cast<const float*>(logits.data) + r * logits.stride,
                          cols * sizeof(float), cudaMemcpyDeviceToHost, Raw(stream_)));
    }
    return Sync();
  };
  if (absl::Status s = copy_back(); !s.ok()) return Fail(op, std::move(s));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!out[i].status.ok()) continue;
    const RowSampling& r = rows[i];
    if (!DeviceGreedy(r)) {
      SampleHostRow(std::span<const float>(logits_host_.data() + r.row * logits.cols, cols), r,
                    out[i]);
      continue;
    }
    // The host sampler's checks, in its words (engine/sampling/sampler.cc).
    if (absl::Status s = ValidateSamplingParams(*r.params); !s.ok()) {
      out[i].status = std::move(s);
      continue;
    }
    const float best = argmax_max_host_[static_cast<size_t>(r.row)];
    if (!(best > -INFINITY)) {
      out[i].status = absl::InvalidArgumentError(
          absl::StrCat("sampling: all ", logits.cols, " logits are NaN or -inf"));
      continue;
    }
    out[i].token = argmax_ids_host_[static_cast<size_t>(r.row)];
  }
}

}  // namespace mla::cuda
