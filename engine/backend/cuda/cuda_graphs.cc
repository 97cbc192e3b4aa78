// CudaBackend's CUDA graphs (Backend::BeginGraphRegion): a decode step's region, from the
// first layer to lm_head, recorded once per key and replayed for later steps with the
// same key. The region reads only device buffers that BeginStep, Upload and Embed refill
// every step (tokens, positions' angles, block tables, lengths, slots, the split-KV plan),
// so a replay computes the new step; what a launch bakes in (row counts, the block table's
// width, the plan's size, the model's variant: V3.2's dense or sparse attention) is the
// key, and a buffer that moves (Reserve growing it, a new cache) outdates every recording
// (the generation).
//
// A key is recorded the second time it is seen in a generation: its first, eager run sizes
// every buffer, so that recording allocates nothing. A recording that fails (an operation
// that waits on the host, like the per-expert MoE path, or a buffer that must grow after
// all) runs the region again eagerly and is not retried for that key until the
// generation changes.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/cuda_check.h"

namespace mla::cuda {

using internal::Raw;

namespace {

cudaGraphExec_t Exec(void* handle) { return static_cast<cudaGraphExec_t>(handle); }

}  // namespace

StepGraphKey CudaBackend::CurrentGraphKey(uint32_t variant) const {
  const bool split_kv = planned_step_ == step_number_;
  StepGraphKey key = DecodeStepKey(step_->num_tokens, step_->batch, step_->max_blocks,
                                   split_kv ? &decode_plan_ : nullptr, grouped_experts_);
  key.variant = variant;
  return key;
}

GraphRegion CudaBackend::BeginGraphRegion(uint32_t variant) {
  if (!graphs_on_ || !error_.ok() || step_ == nullptr || !layout_ || last_heads_ == 0 ||
      !decode_only_) {
    return GraphRegion::kEager;
  }
  // A step the split-KV kernel takes must have its plan from BeginStep: planning inside the
  // region would record a copy from host memory that changes every step.
  if (CanSplitKvDecode(last_heads_) && planned_step_ != step_number_) return GraphRegion::kEager;
  // A replay skips WriteCache's host check of the slots; it happens here instead.
  const int64_t num_slots = int64_t{num_blocks_} * layout_->block_size();
  for (const int64_t slot : step_->slots) {
    if (slot < 0 || slot >= num_slots) return GraphRegion::kEager;  // WriteCache reports it
  }
  const StepGraphKey key = CurrentGraphKey(variant);
  StepGraphCache::Decision d = graph_cache_.Decide(key, generation_);
  DestroyGraphs(d.stale);
  switch (d.action) {
    case StepGraphCache::Action::kEager:
      return GraphRegion::kEager;
    case StepGraphCache::Action::kReplay:
      if (const cudaError_t e = cudaGraphLaunch(Exec(d.exec), Raw(stream_)); e != cudaSuccess) {
        Fail({"graph_replay"}, CudaStatus(static_cast<int>(e), "cudaGraphLaunch"));
        return GraphRegion::kEager;
      }
      ++graph_replays_;
      return GraphRegion::kReplayed;
    case StepGraphCache::Action::kRecord:
      break;
  }
  if (cudaStreamBeginCapture(Raw(stream_), cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    graph_cache_.Failed(key, generation_);
    return GraphRegion::kEager;
  }
  capturing_ = true;
  capture_aborted_ = false;
  capture_error_ = absl::OkStatus();
  capture_key_ = key;
  capture_generation_ = generation_;
  return GraphRegion::kCapturing;
}

bool CudaBackend::EndGraphRegion(bool complete) {
  if (!InCapture()) return false;
  cudaGraph_t graph = nullptr;
  if (capturing_) {
    if (const cudaError_t e = cudaStreamEndCapture(Raw(stream_), &graph); e != cudaSuccess) {
      Fail({"graph_capture"}, CudaStatus(static_cast<int>(e), "cudaStreamEndCapture"));
    }
    capturing_ = false;
  }
  cudaGraphExec_t exec = nullptr;
  bool ok = complete && !capture_aborted_ && capture_error_.ok() && graph != nullptr &&
            capture_generation_ == generation_;
  if (ok && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) ok = false;
  if (graph != nullptr) cudaGraphDestroy(graph);
  // Errors of a recording are the recording's (a call not allowed while recording); clear
  // them so that the eager run starts clean.
  cudaGetLastError();
  if (ok && cudaGraphLaunch(exec, Raw(stream_)) != cudaSuccess) {
    cudaGraphExecDestroy(exec);
    cudaGetLastError();
    ok = false;
  }
  const bool aborted = capture_aborted_;
  capture_aborted_ = false;
  if (ok) {
    graph_cache_.Recorded(capture_key_, generation_, exec);
    ++graph_captures_;
    return false;
  }
  if (!aborted && complete) {
    graph_cache_.Failed(capture_key_, capture_generation_);
    std::fprintf(stderr, "cuda graphs: decode steps of %lld rows stay eager for now: %s\n",
                 static_cast<long long>(capture_key_.rows),
                 capture_error_.ok() ? "the recording failed"
                                     : std::string(capture_error_.message()).c_str());
  }
  capture_error_ = absl::OkStatus();
  return true;
}

void CudaBackend::AbortCapture() {
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(Raw(stream_), &graph);
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaGetLastError();
  capturing_ = false;
  capture_aborted_ = true;
}

void CudaBackend::DestroyGraphs(const std::vector<void*>& execs) {
  for (void* exec : execs) cudaGraphExecDestroy(Exec(exec));
}

}  // namespace mla::cuda
