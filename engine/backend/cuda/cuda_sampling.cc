// CudaBackend::Sample. Three kinds of row:
//   - greedy without logprobs: the device's argmax; only the id (and the winning logit, to
//     refuse an all-NaN row as the host sampler does) comes back;
//   - top-k sampling (0 < top_k <= kDeviceTopKMax, below the vocabulary) without logprobs:
//     the device selects the k best tokens in the host sampler's order and only they come
//     back; the host sampler then runs on a row that holds them and -inf elsewhere. It
//     draws from the top k alone, so its result is the full row's, bit for bit;
//   - anything else (top-p or min-p without top-k, scored tokens, logprobs): the row is
//     downloaded and the CPU backend's sampler (engine/backend/host_sampling.h) runs on it.
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

bool DeviceTopK(const RowSampling& r, int64_t vocab) {
  return r.score_token < 0 && r.top_logprobs < 0 && r.params != nullptr && !r.params->greedy() &&
         r.params->top_k > 0 && r.params->top_k <= kDeviceTopKMax && r.params->top_k < vocab;
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
  const int64_t vocab = logits.cols;
  const size_t n = static_cast<size_t>(logits.rows), cols = static_cast<size_t>(vocab);
  bool any_greedy = false;
  int k_cap = 0;
  top_k_host_.assign(n, 0);  // Per logits row: the most candidates a top-k row asks of it.
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].row < 0 || rows[i].row >= logits.rows) {
      out[i].status = absl::InvalidArgumentError(
          absl::StrCat(op.name, ": row ", rows[i].row, " outside ", Shape(logits)));
      continue;
    }
    any_greedy = any_greedy || DeviceGreedy(rows[i]);
    if (DeviceTopK(rows[i], vocab)) {
      int32_t& k = top_k_host_[static_cast<size_t>(rows[i].row)];
      k = std::max(k, rows[i].params->top_k);
      k_cap = std::max(k_cap, k);
    }
  }
  const float* device_logits = static_cast<const float*>(logits.data);
  auto copy_back = [&]() -> absl::Status {
    if (any_greedy) {
      // Every row of `logits`: one launch, and it costs little beside the forward pass.
      MLA_RETURN_IF_ERROR(Reserve(argmax_ids_, std::max<size_t>(n, 1) * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(argmax_max_, std::max<size_t>(n, 1) * sizeof(float)));
      ArgmaxParams p;
      p.num_rows = logits.rows;
      p.vocab_size = vocab;
      p.logits = device_logits;
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
    if (k_cap > 0) {
      const size_t pairs = n * static_cast<size_t>(k_cap);
      MLA_RETURN_IF_ERROR(Reserve(top_k_dev_, n * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(top_k_ids_, pairs * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(top_k_values_, pairs * sizeof(float)));
      // Synchronous: top_k_host_ may change before an asynchronous copy would run.
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy(top_k_dev_.data(), top_k_host_.data(),
                                          n * sizeof(int32_t), cudaMemcpyHostToDevice));
      TopKParams p;
      p.num_rows = logits.rows;
      p.vocab_size = vocab;
      p.logits = device_logits;
      p.logits_stride = logits.stride;
      p.k = top_k_dev_.as<int32_t>();
      p.k_cap = k_cap;
      p.ids = top_k_ids_.as<int32_t>();
      p.values = top_k_values_.as<float>();
      MLA_RETURN_IF_ERROR(LaunchTopK(p, stream_));
      top_k_ids_host_.resize(pairs);
      top_k_values_host_.resize(pairs);
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(top_k_ids_host_.data(), top_k_ids_.data(),
                                               pairs * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                               Raw(stream_)));
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(top_k_values_host_.data(), top_k_values_.data(),
                                               pairs * sizeof(float), cudaMemcpyDeviceToHost,
                                               Raw(stream_)));
    }
    logits_host_.resize(n * cols);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!out[i].status.ok() || DeviceGreedy(rows[i]) || DeviceTopK(rows[i], vocab)) continue;
      const int64_t r = rows[i].row;
      MLA_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(logits_host_.data() + r * vocab, device_logits + r * logits.stride,
                          cols * sizeof(float), cudaMemcpyDeviceToHost, Raw(stream_)));
    }
    return Sync();
  };
  if (absl::Status s = copy_back(); !s.ok()) return Fail(op, std::move(s));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!out[i].status.ok()) continue;
    const RowSampling& r = rows[i];
    const size_t row = static_cast<size_t>(r.row);
    if (DeviceTopK(r, vocab)) {
      // The row as the host sampler sees it: the candidates, -inf elsewhere (restored after).
      sparse_row_.resize(cols, -INFINITY);
      const size_t first = row * static_cast<size_t>(k_cap);
      const int32_t k = top_k_host_[row];
      for (int32_t c = 0; c < k; ++c) {
        sparse_row_[static_cast<size_t>(top_k_ids_host_[first + c])] =
            top_k_values_host_[first + c];
      }
      SampleHostRow(sparse_row_, r, out[i]);
      for (int32_t c = 0; c < k; ++c) {
        sparse_row_[static_cast<size_t>(top_k_ids_host_[first + c])] = -INFINITY;
      }
      continue;
    }
    if (!DeviceGreedy(r)) {
      SampleHostRow(std::span<const float>(logits_host_.data() + row * cols, cols), r, out[i]);
      continue;
    }
    // The host sampler's checks, in its words (engine/sampling/sampler.cc).
    if (absl::Status s = ValidateSamplingParams(*r.params); !s.ok()) {
      out[i].status = std::move(s);
      continue;
    }
    if (!(argmax_max_host_[row] > -INFINITY)) {
      out[i].status = absl::InvalidArgumentError(
          absl::StrCat("sampling: all ", vocab, " logits are NaN or -inf"));
      continue;
    }
    out[i].token = argmax_ids_host_[row];
  }
}

}  // namespace mla::cuda
