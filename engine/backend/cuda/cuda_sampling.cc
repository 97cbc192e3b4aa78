// CudaBackend::Sample. Each row takes one of five paths:
//   - greedy: the device's argmax; the id and the winning logit come back (an all-NaN
//     row is refused as the host sampler refuses it);
//   - top-k (0 < top_k <= kDeviceTopKMax, below the vocabulary): the device selects the k
//     best tokens in the host sampler's order and only they come back; the host sampler
//     draws from a row that holds them and -inf elsewhere, which is its draw from the
//     full row, since it draws from the top k alone;
//   - draw (top-k off: temperature, top-p, min-p): the device sums the row's weights
//     (WeightSum); with top-p, its best kDeviceTopKMax tokens come back and the host finds
//     where the top-p prefix ends among them (TopPBoundaryOfCandidates); the device then
//     draws with the request's u (Draw) and only the id comes back. A prefix that reaches
//     past the candidates (a flat row with top-p near 1) sends the row to the host path;
//   - scored (prompt logprobs): the token is given, its logit gathered on the device;
//   - host: anything else (penalties or logit bias, top_k above kDeviceTopKMax and below
//     the vocabulary, more than kDeviceTopKMax logprobs, a row without a finite max)
//     downloads its row for the CPU backend's sampler (host_sampling.h).
// Every non-greedy row takes one rng.NextDouble(), as the host sampler does, so a
// request's stream does not depend on the path its rows took.
// Logprobs on the device paths come from the device too: the row's max, log-sum-exp
// and +inf count, and its top N candidates, combined on the host as LogSoftmax and TopN
// combine them (engine/sampling/logprobs.h). The sums' order differs from the host's, so
// a logprob may differ from the CPU's in its last bits. A row whose max is not finite
// (all NaN, or +inf logits) is downloaded and sampled on the host, where those cases
// have their own rules.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <span>
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

enum class Path { kGreedy, kTopK, kDraw, kScore, kHost };

Path PathOf(const RowSampling& r, int64_t vocab) {
  if (r.top_logprobs > kDeviceTopKMax) return Path::kHost;
  if (r.score_token >= 0) return r.top_logprobs >= 0 ? Path::kScore : Path::kHost;
  if (r.params == nullptr) return Path::kHost;
  // Penalties and logit bias change the row itself: the host adjusts a copy of it.
  if (r.params->adjusts_logits()) return Path::kHost;
  if (r.params->greedy()) return Path::kGreedy;
  const int32_t k = r.params->top_k;
  // The host sampler's rule: top-k applies only below the vocabulary size.
  if (k > 0 && k < vocab) return k <= kDeviceTopKMax ? Path::kTopK : Path::kHost;
  return Path::kDraw;
}

// The candidates a row needs: the top k it samples from, the most a top-p prefix may use
// on the device, the top N of its logprobs.
int32_t CandidatesOf(const RowSampling& r, Path path) {
  const int32_t n = std::max(r.top_logprobs, 0);
  if (path == Path::kTopK) return std::max(r.params->top_k, n);
  if (path == Path::kDraw && r.params->top_p < 1.0f) return kDeviceTopKMax;
  return n;
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
  std::vector<size_t> draw_slot(rows.size(), 0);   // A drawn row's place in draw_rows_.
  bool any_greedy = false, any_stats = false;
  int k_cap = 0;
  top_k_host_.assign(n, 0);  // Per logits row: the most candidates its rows need.
  score_rows_.clear();
  score_tokens_.clear();
  draw_rows_.clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowSampling& r = rows[i];
    if (r.row < 0 || r.row >= logits.rows || (r.score_token >= vocab)) {
      out[i].status = absl::InvalidArgumentError(absl::StrCat(
          op.name, ": row ", r.row, " (token ", r.score_token, ") outside ", Shape(logits)));
      continue;
    }
    paths[i] = PathOf(r, vocab);
    if (paths[i] == Path::kDraw) {
      // The host sampler's checks, in its words, before the parameters reach a kernel.
      if (absl::Status s = ValidateSamplingParams(*r.params); !s.ok()) {
        out[i].status = std::move(s);
        continue;
      }
      draw_slot[i] = draw_rows_.size();
      DrawRow d;
      d.row = r.row;
      d.temperature = r.params->temperature;
      d.min_p = r.params->min_p;
      draw_rows_.push_back(d);
    }
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
  // On stream_, so that the kernels after it see the data: a plain cudaMemcpy runs on the
  // legacy stream, which stream_ (non-blocking) is not ordered against, and from pageable
  // memory it may return before the DMA lands. From pageable memory the source is staged
  // before the call returns, so the host vector may change right after.
  auto upload = [&](DeviceBuffer& buffer, const auto& host, size_t count) -> absl::Status {
    MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buffer.data(), host.data(), count * sizeof(host[0]),
                                             cudaMemcpyHostToDevice, Raw(stream_)));
    return absl::OkStatus();
  };
  auto download = [&](DeviceBuffer& buffer, auto& host, size_t count) -> absl::Status {
    host.resize(count);
    MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), buffer.data(), count * sizeof(host[0]),
                                             cudaMemcpyDeviceToHost, Raw(stream_)));
    return absl::OkStatus();
  };
  // The draw rows' second step, after WeightSum's sums and the candidates are back: the
  // top-p boundary and u on the host, then Draw for the rows that stay on the device.
  auto draw_on_device = [&]() -> absl::Status {
    draw_active_.clear();
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!out[i].status.ok() || paths[i] != Path::kDraw) continue;
      const RowSampling& r = rows[i];
      DrawRow d = draw_rows_[draw_slot[i]];
      d.max = draw_max_host_[draw_slot[i]];
      if (!std::isfinite(d.max)) {  // All NaN or -inf, or +inf logits: the host's rules.
        paths[i] = Path::kHost;
        continue;
      }
      if (r.params->top_p < 1.0f) {
        const size_t first = static_cast<size_t>(r.row) * static_cast<size_t>(k_cap);
        const size_t count = static_cast<size_t>(top_k_host_[static_cast<size_t>(r.row)]);
        const std::optional<uint64_t> boundary = TopPBoundaryOfCandidates(
            std::span<const int32_t>(top_k_ids_host_.data() + first, count),
            std::span<const float>(top_k_values_host_.data() + first, count), vocab, d.max,
            draw_weight_sum_host_[draw_slot[i]], *r.params);
        if (!boundary.has_value()) {
          paths[i] = Path::kHost;
          continue;
        }
        d.boundary = *boundary;
      }
      d.u = r.rng->NextDouble();
      draw_slot[i] = draw_active_.size();
      draw_active_.push_back(d);
    }
    if (draw_active_.empty()) return absl::OkStatus();
    const size_t m = draw_active_.size();
    MLA_RETURN_IF_ERROR(Reserve(draw_ids_, m * sizeof(int32_t)));
    MLA_RETURN_IF_ERROR(Reserve(draw_logits_, m * sizeof(float)));
    MLA_RETURN_IF_ERROR(upload(draw_rows_dev_, draw_active_, m));
    DrawParams p;
    p.num = static_cast<int64_t>(m);
    p.vocab_size = vocab;
    p.logits = device_logits;
    p.logits_stride = logits.stride;
    p.draws = draw_rows_dev_.as<DrawRow>();
    p.ids = draw_ids_.as<int32_t>();
    p.logits_out = draw_logits_.as<float>();
    MLA_RETURN_IF_ERROR(LaunchDraw(p, stream_));
    MLA_RETURN_IF_ERROR(download(draw_ids_, draw_ids_host_, m));
    return download(draw_logits_, draw_logits_host_, m);
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
      MLA_RETURN_IF_ERROR(upload(top_k_dev_, top_k_host_, n));
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
    if (!draw_rows_.empty()) {
      const size_t m = draw_rows_.size();
      MLA_RETURN_IF_ERROR(Reserve(draw_rows_dev_, m * sizeof(DrawRow)));
      MLA_RETURN_IF_ERROR(Reserve(draw_max_, m * sizeof(float)));
      MLA_RETURN_IF_ERROR(Reserve(draw_weight_sum_, m * sizeof(double)));
      MLA_RETURN_IF_ERROR(upload(draw_rows_dev_, draw_rows_, m));
      WeightSumParams p;
      p.num = static_cast<int64_t>(m);
      p.vocab_size = vocab;
      p.logits = device_logits;
      p.logits_stride = logits.stride;
      p.draws = draw_rows_dev_.as<DrawRow>();
      p.max = draw_max_.as<float>();
      p.weight_sum = draw_weight_sum_.as<double>();
      MLA_RETURN_IF_ERROR(LaunchWeightSum(p, stream_));
      MLA_RETURN_IF_ERROR(download(draw_max_, draw_max_host_, m));
      MLA_RETURN_IF_ERROR(download(draw_weight_sum_, draw_weight_sum_host_, m));
    }
    if (!score_rows_.empty()) {
      const size_t m = score_rows_.size();
      MLA_RETURN_IF_ERROR(Reserve(score_rows_dev_, m * sizeof(int64_t)));
      MLA_RETURN_IF_ERROR(Reserve(score_tokens_dev_, m * sizeof(int32_t)));
      MLA_RETURN_IF_ERROR(Reserve(score_logits_, m * sizeof(float)));
      MLA_RETURN_IF_ERROR(upload(score_rows_dev_, score_rows_, m));
      MLA_RETURN_IF_ERROR(upload(score_tokens_dev_, score_tokens_, m));
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
    MLA_RETURN_IF_ERROR(draw_on_device());
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
      ++host_sampled_rows_;
      SampleHostRow(std::span<const float>(logits_host_.data() + row * cols, cols), r, out[i]);
      continue;
    }
    const size_t first = row * static_cast<size_t>(std::max(k_cap, 1));
    const int32_t candidates = k_cap > 0 ? top_k_host_[row] : 0;
    float token_logit = 0.0f;
    if (paths[i] == Path::kScore) {
      out[i].token = r.score_token;
      token_logit = score_logits_host_[score_slot[i]];
    } else if (paths[i] == Path::kDraw) {
      out[i].token = draw_ids_host_[draw_slot[i]];
      token_logit = draw_logits_host_[draw_slot[i]];
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
