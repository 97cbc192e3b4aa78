// CudaBackend::Sample. Each row takes one of four paths:
//   - greedy: the device's argmax; the id and the winning logit come back (an all-NaN
//     row is refused as the host sampler refuses it);
//   - top-k (0 < top_k <= kDeviceTopKMax, below the vocabulary): the device selects the k
//     best tokens in the host sampler's order and only they come back; the host sampler
//     draws from a row that holds them and -inf elsewhere, which is its draw from the
//     full row, since it draws from the top k alone;
//   - scored (prompt logprobs): the token is given, its logit gathered on the device;
//   - host: anything else (top-p or min-p without top-k, more than kDeviceTopKMax
//     logprobs) downloads its row for the CPU backend's sampler (host_sampling.h).
// Logprobs on the first three paths come from the device too: the row's max, log-sum-exp
// and +inf count, and its top N candidates, combined on the host as LogSoftmax and TopN
// combine them (engine/sampling/logprobs.h). The sums' order differs from the host's, so
// a logprob may differ from the CPU's in its last bits. A row whose max is not finite
// (all NaN, or +inf logits) is downloaded and sampled on the host, where those cases
// have their own rules.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/sampling.h"
#include "engine/backend/host_sampling.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"

namespace mla::cuda {

using internal::Raw;
using internal::Shape;

namespace {

enum class Path { kGreedy, kTopK, kScore, kHost };

Path PathOf(const RowSampling& r, int64_t vocab) {
  if (r.top_logprobs > kDeviceTopKMax) return Path::kHost;
  if (r.score_token >= 0) return r.top_logprobs >= 0 ? Path::kScore : Path::kHost;
  if (r.params == nullptr) return Path::kHost;
  if (r.params->greedy()) return Path::kGreedy;
  const int32_t k = r.params->top_k;
  return k > 0 && k <= kDeviceTopKMax && k < vocab ? Path::kTopK : Path::kHost;
}

// The candidates a row needs: the top k it samples from, the top N of its logprobs.
int32_t CandidatesOf(const RowSampling& r, Path path) {
  const int32_t n = std::max(r.top_logprobs, 0);
  return path == Path::kTopK ? std::max(r.params->top_k, n) : n;
}

// The parameters every per-row kernel of kernels/sampling.h shares, set for `logits`.
template <typename Params>
Params OnLogits(const Tensor& logits) {
  Params p;
  p.num_rows = logits.rows;
  p.vocab_size = logits.cols;
  p.logits = static_cast<const float*>(logits.data);
  p.logits_stride = logits.stride;
  return p;
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
  const float* device_logits = static_cast<const float*>(logits.data);
  std::vector<Path> paths(rows.size(), Path::kHost);
  std::vector<size_t> score_slot(rows.size(), 0);  // A scored row's place in score_rows_.
  bool any_greedy = false, any_stats = false;
  int k_cap = 0;
  top_k_host_.assign(n, 0);  // Per logits row: the most candidates its rows need.
  score_rows_.clear();
  score_tokens_.clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowSampling& r = rows[i];
    if (r.row < 0 || r.row >= logits.rows || (r.score_token >= vocab)) {
      out[i].status = absl::InvalidArgumentError(absl::StrCat(
          op.name, ": row ", r.row, " (token ", r.score_token, ") outside ", Shape(logits)));
      continue;
    }
    paths[i] = PathOf(r, vocab);
    any_greedy = any_greedy || paths[i] == Path::kGreedy;
    if (paths[i] == Path::kHost) continue;
    any_stats = any_stats || r.top_logprobs >= 0;
    int32_t& k = top_k_host_[static_cast<size_t>(r.row)];
    // TopN asks for at most the vocabulary (TopKIndices clamps, and so must the kernel).
    k = std::max(k, static_cast<int32_t>(std::min<int64_t>(CandidatesOf(r, paths[i]), vocab)));
    k_cap = std::max(k_cap, k);
    if (paths[i] == Path::kScore) {
      score_slot[i] = score_rows_.size();
      score_rows_.push_back(r.row);
      score_tokens_.push_back(r.score_token);
    }
  }
  auto download = [&](DeviceBuffer& buffer, auto& host, size_t count) -> absl::Status {
    host.resize(count);
    MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), buffer.data(), count * sizeof(host[0]),
                                             cudaMemcpyDeviceToHost, Raw(stream_)));
    return absl::OkStatus();
  };
  auto device_work = [&]() -> absl::Status {
    if (any_greedy) {
      // Every row of `logits`: one launch, and it costs little beside the forward pass.
      MLA_RETURN_IF_ERROR(Reserve(argmax_ids_, std::max<size_t>(n, 1) * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(argmax_max_, std::max<size_t>(n, 1) * sizeof(float)));
      ArgmaxParams p = OnLogits<ArgmaxParams>(logits);
      p.ids = argmax_ids_.as<int32_t>();
      p.max_values = argmax_max_.as<float>();
      MLA_RETURN_IF_ERROR(LaunchArgmax(p, stream_));
      MLA_RETURN_IF_ERROR(download(argmax_ids_, argmax_ids_host_, n));
      MLA_RETURN_IF_ERROR(download(argmax_max_, argmax_max_host_, n));
    }
    if (k_cap > 0) {
      const size_t pairs = n * static_cast<size_t>(k_cap);
      MLA_RETURN_IF_ERROR(Reserve(top_k_dev_, n * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(top_k_ids_, pairs * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(top_k_values_, pairs * sizeof(float)));
      // Synchronous: top_k_host_ may change before an asynchronous copy would run.
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy(top_k_dev_.data(), top_k_host_.data(),
                                          n * sizeof(int32_t), cudaMemcpyHostToDevice));
      TopKParams p = OnLogits<TopKParams>(logits);
      p.k = top_k_dev_.as<int32_t>();
      p.k_cap = k_cap;
      p.ids = top_k_ids_.as<int32_t>();
      p.values = top_k_values_.as<float>();
      MLA_RETURN_IF_ERROR(LaunchTopK(p, stream_));
      MLA_RETURN_IF_ERROR(download(top_k_ids_, top_k_ids_host_, pairs));
      MLA_RETURN_IF_ERROR(download(top_k_values_, top_k_values_host_, pairs));
    }
    if (any_stats) {
      MLA_RETURN_IF_ERROR(Reserve(stats_max_, std::max<size_t>(n, 1) * sizeof(float)));
      MLA_RETURN_IF_ERROR(Reserve(stats_log_sum_, std::max<size_t>(n, 1) * sizeof(double)));
      MLA_RETURN_IF_ERROR(Reserve(stats_infs_, std::max<size_t>(n, 1) * sizeof(int32_t)));
      LogSumExpParams p = OnLogits<LogSumExpParams>(logits);
      p.max = stats_max_.as<float>();
      p.log_sum = stats_log_sum_.as<double>();
      p.inf_count = stats_infs_.as<int32_t>();
      MLA_RETURN_IF_ERROR(LaunchLogSumExp(p, stream_));
      MLA_RETURN_IF_ERROR(download(stats_max_, stats_max_host_, n));
      MLA_RETURN_IF_ERROR(download(stats_log_sum_, stats_log_sum_host_, n));
    }
    if (!score_rows_.empty()) {
      const size_t m = score_rows_.size();
      MLA_RETURN_IF_ERROR(Reserve(score_rows_dev_, m * sizeof(int64_t)));
      MLA_RETURN_IF_ERROR(Reserve(score_tokens_dev_, m * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(score_logits_, m * sizeof(float)));
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy(score_rows_dev_.data(), score_rows_.data(),
                                          m * sizeof(int64_t), cudaMemcpyHostToDevice));
      MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy(score_tokens_dev_.data(), score_tokens_.data(),
                                          m * sizeof(int32_t), cudaMemcpyHostToDevice));
      GatherLogitsParams p;
      p.num = static_cast<int64_t>(m);
      p.vocab_size = vocab;
      p.logits = device_logits;
      p.logits_stride = logits.stride;
      p.rows = score_rows_dev_.as<int64_t>();
      p.tokens = score_tokens_dev_.as<int32_t>();
      p.out = score_logits_.as<float>();
      MLA_RETURN_IF_ERROR(LaunchGatherLogits(p, stream_));
      MLA_RETURN_IF_ERROR(download(score_logits_, score_logits_host_, m));
    }
    MLA_RETURN_IF_ERROR(Sync());
    // Rows that want logprobs of a row without a finite max go to the host after all.
    for (size_t i = 0; i < rows.size(); ++i) {
      if (out[i].status.ok() && paths[i] != Path::kHost && rows[i].top_logprobs >= 0 &&
          !std::isfinite(stats_max_host_[static_cast<size_t>(rows[i].row)])) {
        paths[i] = Path::kHost;
      }
    }
    logits_host_.resize(n * cols);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!out[i].status.ok() || paths[i] != Path::kHost) continue;
      const int64_t r = rows[i].row;
      MLA_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(logits_host_.data() + r * vocab, device_logits + r * logits.stride,
                          cols * sizeof(float), cudaMemcpyDeviceToHost, Raw(stream_)));
    }
    return Sync();
  };
  if (absl::Status s = device_work(); !s.ok()) return Fail(op, std::move(s));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!out[i].status.ok()) continue;
    const RowSampling& r = rows[i];
    const size_t row = static_cast<size_t>(r.row);
    if (paths[i] == Path::kHost) {
      SampleHostRow(std::span<const float>(logits_host_.data() + row * cols, cols), r, out[i]);
      continue;
    }
    const size_t first = row * static_cast<size_t>(std::max(k_cap, 1));
    const int32_t candidates = k_cap > 0 ? top_k_host_[row] : 0;
    float token_logit = 0.0f;
    if (paths[i] == Path::kScore) {
      out[i].token = r.score_token;
      token_logit = score_logits_host_[score_slot[i]];
    } else if (paths[i] == Path::kGreedy) {
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
      token_logit = argmax_max_host_[row];
    } else {
      // The row as the host sampler sees it: the candidates, -inf elsewhere (restored after).
      sparse_row_.resize(cols, -INFINITY);
      for (int32_t c = 0; c < candidates; ++c) {
        sparse_row_[static_cast<size_t>(top_k_ids_host_[first + c])] =
            top_k_values_host_[first + c];
      }
      absl::StatusOr<int32_t> token = mla::Sample(sparse_row_, *r.params, *r.rng);
      if (token.ok()) token_logit = sparse_row_[static_cast<size_t>(*token)];
      for (int32_t c = 0; c < candidates; ++c) {
        sparse_row_[static_cast<size_t>(top_k_ids_host_[first + c])] = -INFINITY;
      }
      if (!token.ok()) {
        out[i].status = token.status();
        continue;
      }
      out[i].token = *token;
    }
    if (r.top_logprobs < 0) continue;
    const float max = stats_max_host_[row];
    const double log_sum = stats_log_sum_host_[row];
    out[i].has_logprobs = true;
    out[i].logprobs.token_id = out[i].token;
    out[i].logprobs.logprob = LogprobFromLogSum(token_logit, max, log_sum);
    // TopN over the candidates in id order, so that its ties (lower index first) fall
    // as they fall over the full row.
    candidate_order_.resize(static_cast<size_t>(candidates));
    std::iota(candidate_order_.begin(), candidate_order_.end(), first);
    std::sort(candidate_order_.begin(), candidate_order_.end(),
              [&](size_t a, size_t b) { return top_k_ids_host_[a] < top_k_ids_host_[b]; });
    candidate_logprobs_.clear();
    for (const size_t c : candidate_order_) {
      candidate_logprobs_.push_back(LogprobFromLogSum(top_k_values_host_[c], max, log_sum));
    }
    out[i].logprobs.top = TopN(candidate_logprobs_, r.top_logprobs);
    for (TokenLogprob& t : out[i].logprobs.top) {
      t.token_id = top_k_ids_host_[candidate_order_[static_cast<size_t>(t.token_id)]];
    }
  }
}

}  // namespace mla::cuda
