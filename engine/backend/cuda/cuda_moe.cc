// CudaBackend's mixture of experts: routing and the per-expert plan on the device, then
// the expert GEMMs, grouped (two launches per matrix kind, no host wait) for decode-sized
// steps, else one cuBLASLt GEMM triple per expert that received rows (host/moe_plan.h's
// UseGroupedExperts chooses).
#include "engine/backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/backend/cuda/kernels/grouped_gemm.h"
#include "engine/backend/cuda/kernels/moe_routing.h"

namespace mla::cuda {

using internal::F32;
using internal::Raw;
using internal::Shape;

void CudaBackend::MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits,
                             const Tensor& bias, std::span<const ExpertTensors> experts,
                             const Tensor& x, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  const int64_t n = x.rows, hidden = x.cols;
  if (static_cast<int>(experts.size()) != policy.num_experts ||
      router_logits.cols < policy.num_experts || router_logits.rows != n || out.rows != n ||
      out.cols != hidden || (policy.use_bias && bias.cols < policy.num_experts)) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(
                        experts.size(), " experts and router logits ", Shape(router_logits),
                        " for ", policy.num_experts, " experts, ", n, " rows")));
  }
  if (n == 0) return;
  auto run = [&]() -> absl::Status {
    const int top_k = policy.top_k, num_experts = policy.num_experts;
    const int64_t pairs = n * top_k;
    MLA_RETURN_IF_ERROR(Reserve(expert_ids_, static_cast<size_t>(pairs) * sizeof(int32_t)));
    MLA_RETURN_IF_ERROR(Reserve(expert_weights_, static_cast<size_t>(pairs) * sizeof(float)));
    MLA_RETURN_IF_ERROR(Reserve(counts_, static_cast<size_t>(num_experts) * sizeof(int32_t)));
    MLA_RETURN_IF_ERROR(Reserve(offsets_, static_cast<size_t>(num_experts + 1) * sizeof(int32_t)));
    MLA_RETURN_IF_ERROR(Reserve(sorted_pairs_, static_cast<size_t>(pairs) * sizeof(int32_t)));
    MLA_RETURN_IF_ERROR(Reserve(pair_rows_, static_cast<size_t>(pairs) * sizeof(int32_t)));
    MoeRoutingParams routing = MoeRoutingFromPolicy(policy);
    routing.num_tokens = n;
    routing.logits = static_cast<const float*>(router_logits.data);
    routing.logits_stride = router_logits.stride;
    routing.bias = policy.use_bias ? static_cast<const float*>(bias.data) : nullptr;
    routing.expert_ids = expert_ids_.as<int32_t>();
    routing.weights = expert_weights_.as<float>();
    MLA_RETURN_IF_ERROR(LaunchMoeRouting(routing, stream_));
    MoePlanParams plan;
    plan.num_tokens = n;
    plan.top_k = top_k;
    plan.num_experts = num_experts;
    plan.expert_ids = expert_ids_.as<int32_t>();
    plan.counts = counts_.as<int32_t>();
    plan.offsets = offsets_.as<int32_t>();
    plan.sorted_pairs = sorted_pairs_.as<int32_t>();
    plan.pair_rows = pair_rows_.as<int32_t>();
    MLA_RETURN_IF_ERROR(LaunchMoePlan(plan, stream_));
    MLA_RETURN_IF_ERROR(Reserve(permuted_, static_cast<size_t>(pairs * hidden) * sizeof(float)));
    MLA_RETURN_IF_ERROR(Reserve(expert_out_, static_cast<size_t>(pairs * hidden) * sizeof(float)));
    const Tensor permuted{permuted_.data(), DType::kF32, pairs, hidden, hidden};
    const Tensor expert_out{expert_out_.data(), DType::kF32, pairs, hidden, hidden};
    MLA_RETURN_IF_ERROR(
        LaunchGatherRowsF32(F32(x), sorted_pairs_.as<int32_t>(), top_k, F32(permuted), stream_));
    if (UseGroupedExperts(experts, hidden, pairs, grouped_experts_)) {
      MLA_RETURN_IF_ERROR(GroupedExpertGemms(experts, permuted, expert_out));
      ++moe_grouped_calls_;
    } else {
      MLA_RETURN_IF_ERROR(PerExpertGemms(experts, permuted, expert_out));
    }
    return LaunchCombineExpertsF32(F32(expert_out), pair_rows_.as<int32_t>(),
                                   expert_weights_.as<float>(), top_k, F32(out), stream_);
  };
  Fail(op, run());
}

absl::Status CudaBackend::GroupedExpertGemms(std::span<const ExpertTensors> experts,
                                             const Tensor& permuted, const Tensor& expert_out) {
  const int num_experts = static_cast<int>(experts.size());
  const int64_t pairs = permuted.rows, hidden = permuted.cols, inter = experts[0].gate.rows;
  auto table = grouped_tables_.find(experts.data());
  if (table == grouped_tables_.end()) {
    std::vector<GroupedWeight> host;
    host.reserve(3 * experts.size());
    for (auto part : {&ExpertTensors::gate, &ExpertTensors::up, &ExpertTensors::down}) {
      for (const ExpertTensors& e : experts) {
        const Tensor& w = e.*part;
        GroupedWeight g;
        if (w.dtype == DType::kF32) {
          g.f32 = static_cast<const float*>(w.data);
        } else {
          g.bf16 = static_cast<const bf16_t*>(w.data);
        }
        g.stride = w.stride;
        host.push_back(g);
      }
    }
    MLA_ASSIGN_OR_RETURN(DeviceBuffer uploaded, DeviceBuffer::FromHost(host));
    table = grouped_tables_.emplace(experts.data(), std::move(uploaded)).first;
  }
  const GroupedWeight* weights = table->second.as<GroupedWeight>();
  MLA_RETURN_IF_ERROR(Reserve(expert_gate_, static_cast<size_t>(pairs * inter) * sizeof(float)));
  MLA_RETURN_IF_ERROR(Reserve(expert_up_, static_cast<size_t>(pairs * inter) * sizeof(float)));
  GroupedGemmParams p;
  p.num_experts = num_experts;
  p.rows = pairs;
  p.offsets = offsets_.as<int32_t>();
  auto run = [&](const float* x, int64_t k, const GroupedWeight* w, int64_t n,
                 float* y) -> absl::Status {
    p.x = x;
    p.x_stride = k;
    p.k = k;
    p.weights = w;
    p.n = n;
    p.y = y;
    p.y_stride = n;
    return LaunchGroupedGemm(p, stream_);
  };
  float* gate = expert_gate_.as<float>();
  float* up = expert_up_.as<float>();
  MLA_RETURN_IF_ERROR(run(static_cast<const float*>(permuted.data), hidden, weights, inter, gate));
  MLA_RETURN_IF_ERROR(
      run(static_cast<const float*>(permuted.data), hidden, weights + num_experts, inter, up));
  const F32Matrix gate_m{gate, pairs, inter, inter}, up_m{up, pairs, inter, inter};
  MLA_RETURN_IF_ERROR(LaunchSiluMulF32(gate_m, up_m, gate_m, stream_));
  return run(gate, inter, weights + 2 * num_experts, hidden, static_cast<float*>(expert_out.data));
}

absl::Status CudaBackend::PerExpertGemms(std::span<const ExpertTensors> experts,
                                         const Tensor& permuted, const Tensor& expert_out) {
  // The host issues one GEMM triple per used expert, so it needs the offsets.
  const int num_experts = static_cast<int>(experts.size());
  offsets_host_.resize(static_cast<size_t>(num_experts + 1));
  MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(offsets_host_.data(), offsets_.data(),
                                           offsets_host_.size() * sizeof(int32_t),
                                           cudaMemcpyDeviceToHost, Raw(stream_)));
  MLA_RETURN_IF_ERROR(Sync());
  int64_t max_rows = 0;
  for (int e = 0; e < num_experts; ++e) {
    max_rows = std::max<int64_t>(max_rows, offsets_host_[e + 1] - offsets_host_[e]);
  }
  int64_t inter = 0;
  for (const ExpertTensors& e : experts) inter = std::max(inter, e.gate.rows);
  MLA_RETURN_IF_ERROR(Reserve(expert_gate_, static_cast<size_t>(max_rows * inter) * sizeof(float)));
  MLA_RETURN_IF_ERROR(Reserve(expert_up_, static_cast<size_t>(max_rows * inter) * sizeof(float)));
  for (int e = 0; e < num_experts; ++e) {
    const int64_t first = offsets_host_[e], m = offsets_host_[e + 1] - first;
    if (m == 0) continue;
    const ExpertTensors& w = experts[static_cast<size_t>(e)];
    const int64_t rows_inter = w.gate.rows;
    const Tensor gate{expert_gate_.data(), DType::kF32, m, rows_inter, rows_inter};
    const Tensor up{expert_up_.data(), DType::kF32, m, rows_inter, rows_inter};
    MLA_RETURN_IF_ERROR(GemmImpl(permuted.Rows(first, m), w.gate, gate));
    MLA_RETURN_IF_ERROR(GemmImpl(permuted.Rows(first, m), w.up, up));
    MLA_RETURN_IF_ERROR(LaunchSiluMulF32(F32(gate), F32(up), F32(gate), stream_));
    MLA_RETURN_IF_ERROR(GemmImpl(gate, w.down, expert_out.Rows(first, m)));
  }
  return absl::OkStatus();
}

}  // namespace mla::cuda
