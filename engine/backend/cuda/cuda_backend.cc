#include "engine/backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cublas_handle.h"
#include "engine/backend/cuda/cuda_backend_util.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/gemm_lt.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/moe_routing.h"

namespace mla::cuda {

using internal::F32;
using internal::NeedF32;
using internal::Raw;
using internal::Shape;

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int ordinal) {
  absl::StatusOr<std::vector<CudaDeviceProps>> listed = ListCudaDevices();
  if (!listed.ok()) {
    return absl::UnavailableError(
        absl::StrCat("no usable CUDA device: ", listed.status().message()));
  }
  const std::vector<CudaDeviceProps>& devices = *listed;
  if (ordinal < 0 || ordinal >= static_cast<int>(devices.size())) {
    return absl::UnavailableError(
        absl::StrCat("CUDA device ", ordinal, " does not exist (", devices.size(), " visible)"));
  }
  const CudaDeviceProps& d = devices[static_cast<size_t>(ordinal)];
  std::unique_ptr<CudaBackend> backend(
      new CudaBackend(absl::StrCat("cuda:", ordinal, " (", d.name, ")"),
                      absl::StrCat("cuda:", ordinal, " (", d.name, ", sm_", d.compute_major,
                                   d.compute_minor, ", ", d.total_memory_bytes >> 30, " GiB)")));
  MLA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
  cudaStream_t stream = nullptr;
  MLA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  backend->stream_ = reinterpret_cast<CudaStream>(stream);
  MLA_ASSIGN_OR_RETURN(backend->cublas_, CublasHandle::Create(ordinal));
  auto* handle = static_cast<cublasHandle_t>(backend->cublas_->raw());
  MLA_RETURN_IF_ERROR(CublasStatus(cublasSetStream(handle, stream), "cublasSetStream"));
  // SGEMM stays exact fp32 (no TF32): fp32 weights are the small ones where it matters.
  MLA_RETURN_IF_ERROR(
      CublasStatus(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode"));
  MLA_ASSIGN_OR_RETURN(backend->lt_, GemmLt::Create());
  backend->num_sms_ = d.multiprocessors;
  // The benchmarks compare eager steps with CUDA graphs, and the MoE paths, through these.
  if (const char* env = std::getenv("MLA_CUDA_GRAPHS"); env != nullptr) {
    const std::string_view v = env;
    if (v != "on" && v != "off") {
      return absl::InvalidArgumentError(
          absl::StrCat("MLA_CUDA_GRAPHS: expected on or off, got \"", env, "\""));
    }
    backend->graphs_on_ = v == "on";
  }
  if (const char* env = std::getenv("MLA_CUDA_GROUPED_EXPERTS"); env != nullptr) {
    absl::StatusOr<GroupedExperts> mode = ParseGroupedExperts(env);
    if (!mode.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("MLA_CUDA_GROUPED_EXPERTS: ", mode.status().message()));
    }
    backend->grouped_experts_ = *mode;
  }
  // MLA_CUDA_DECODE_KERNEL is read at the first decode step; a value it does not name is
  // refused here, at start-up, instead (the widths only decide which kernel runs).
  if (absl::StatusOr<MlaDecodeKernel> kernel =
          ResolveMlaDecodeKernel(MlaDecodeKernel::kAuto, kMlaMaxLatent, 64);
      !kernel.ok()) {
    return kernel.status();
  }
  return backend;
}

CudaBackend::CudaBackend(std::string name, std::string description)
    : name_(std::move(name)), description_(std::move(description)) {}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(Raw(stream_));
  DestroyGraphs(graph_cache_.TakeAll());
  if (stream_ != nullptr) cudaStreamDestroy(Raw(stream_));
}

void CudaBackend::Fail(const Op& op, absl::Status status) {
  if (status.ok()) return;
  // While recording, an error only spoils the recording: the region runs again eagerly,
  // where a real error recurs and sticks.
  absl::Status& first = InCapture() ? capture_error_ : error_;
  if (!first.ok()) return;
  const std::string where =
      op.layer >= 0 ? absl::StrCat(op.name, " (layer ", op.layer, ")") : std::string(op.name);
  first = absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

absl::Status CudaBackend::TakeError() {
  // A launch error not yet attributed to an operation (normally none: every launch checks).
  if (error_.ok()) {
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
      Fail({"a kernel launch"}, CudaStatus(static_cast<int>(e), "cudaGetLastError"));
    }
  }
  return std::exchange(error_, absl::OkStatus());
}

absl::Status CudaBackend::Sync() {
  MLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(Raw(stream_)));
  return absl::OkStatus();
}

absl::Status CudaBackend::Reserve(DeviceBuffer& buffer, size_t bytes) {
  if (buffer.bytes() >= bytes) return absl::OkStatus();
  // Freeing memory a recording points into ends it, and outdates every recording.
  if (capturing_) AbortCapture();
  ++generation_;
  // Grow by half again so a slowly growing batch does not reallocate every step.
  MLA_ASSIGN_OR_RETURN(buffer, DeviceBuffer::Allocate(std::max(bytes, buffer.bytes() * 3 / 2)));
  return absl::OkStatus();
}

void* CudaBackend::CacheLayer(int layer) const {
  const int64_t per_layer = int64_t{num_blocks_} * layout_->bytes_per_block_per_layer();
  return cache_.as<unsigned char>() + layer * per_layer;
}

void* CudaBackend::IndexKeyLayer(int layer) const {
  const int64_t latents =
      int64_t{num_blocks_} * layout_->bytes_per_block_per_layer() * layout_->num_layers();
  const int64_t per_layer = int64_t{num_blocks_} * layout_->index_bytes_per_block_per_layer();
  return cache_.as<unsigned char>() + latents + layer * per_layer;
}

// --- Memory ---------------------------------------------------------------------------

absl::StatusOr<Tensor> CudaBackend::AddWeight(std::string_view name, const MatrixView& host) {
  if (host.dtype != DType::kBF16 && host.dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("weight ", std::string(name), ": dtype ",
                                                   DTypeName(host.dtype),
                                                   " (the CUDA backend takes BF16 or F32)"));
  }
  const size_t elem = DTypeSize(host.dtype);
  const size_t row_bytes = static_cast<size_t>(host.cols) * elem;
  absl::StatusOr<DeviceBuffer> buffer =
      DeviceBuffer::Allocate(row_bytes * static_cast<size_t>(host.rows));
  if (!buffer.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("weight ", std::string(name), ": ", buffer.status().message()));
  }
  if (host.rows > 0 && host.cols > 0) {
    MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy2D(buffer->data(), row_bytes, host.data,
                                          static_cast<size_t>(host.row_stride) * elem, row_bytes,
                                          static_cast<size_t>(host.rows), cudaMemcpyHostToDevice));
  }
  weight_bytes_ += static_cast<int64_t>(buffer->bytes());
  Tensor t{buffer->data(), host.dtype, host.rows, host.cols, host.cols};
  weights_.push_back(std::move(*buffer));
  return t;
}

absl::Status CudaBackend::AllocateCache(const CacheLayout& layout, int32_t num_blocks) {
  if (layout.dtype() != CacheDType::kBF16 && layout.dtype() != CacheDType::kFp8E4M3) {
    return absl::UnimplementedError(
        absl::StrCat("the CUDA backend has no ", CacheDTypeName(layout.dtype()), " latent cache"));
  }
  if (num_blocks < 1) return absl::InvalidArgumentError("cache blocks must be >= 1");
  const int64_t bytes = int64_t{num_blocks} * layout.bytes_per_block();
  absl::StatusOr<DeviceBuffer> cache = DeviceBuffer::Allocate(static_cast<size_t>(bytes));
  if (!cache.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("latent cache of ", num_blocks, " blocks (",
                                                     bytes >> 20, " MiB) does not fit on ",
                                                     description_, ": ", cache.status().message()));
  }
  cache_ = std::move(*cache);
  ++generation_;  // recordings point into the old cache
  layout_ = layout;
  num_blocks_ = num_blocks;
  return absl::OkStatus();
}

// The disk tier's copies: after the stream's pending work (a step's cache writes), one
// host copy per layer of the block's share of that layer.
absl::Status CudaBackend::ForEachLayerOfBlock(
    int32_t block, size_t bytes,
    absl::FunctionRef<absl::Status(int64_t host_offset, int64_t device_offset, int64_t size)>
        copy) {
  if (!layout_ || block < 0 || block >= num_blocks_ ||
      static_cast<int64_t>(bytes) != layout_->bytes_per_block()) {
    return absl::InvalidArgumentError(absl::StrCat("cache block copy: block ", block, " of ",
                                                   num_blocks_, ", ", bytes, " bytes"));
  }
  MLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(Raw(stream_)));
  const int64_t per_block = layout_->bytes_per_block_per_layer();
  const int64_t per_layer = int64_t{num_blocks_} * per_block;
  const int layers = layout_->num_layers();
  for (int l = 0; l < layers; ++l) {
    MLA_RETURN_IF_ERROR(copy(l * per_block, l * per_layer + int64_t{block} * per_block, per_block));
  }
  // V3.2: every layer's indexer keys of the block follow the latents, on both sides.
  const int64_t per_index = layout_->index_bytes_per_block_per_layer();
  const int64_t index_base = layers * per_layer;
  for (int l = 0; l < layers && per_index > 0; ++l) {
    MLA_RETURN_IF_ERROR(copy(layers * per_block + l * per_index,
                             index_base + l * num_blocks_ * per_index + block * per_index,
                             per_index));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) {
  return ForEachLayerOfBlock(block, bytes.size(), [&](int64_t host, int64_t device, int64_t n) {
    return cache_.CopyToHost(bytes.data() + host, n, device);
  });
}

absl::Status CudaBackend::WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) {
  MLA_RETURN_IF_ERROR(
      ForEachLayerOfBlock(block, bytes.size(), [&](int64_t host, int64_t device, int64_t n) {
        return cache_.CopyFromHost(bytes.data() + host, n, device);
      }));
  // The copies ran on the legacy stream, which stream_ is not ordered against, and from
  // pageable memory they return before the DMA lands: the next step's kernels must not
  // read the block before it does.
  return DeviceSynchronize();
}

absl::Status CudaBackend::PoisonCacheWithNaN() {
  MLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(Raw(stream_)));
  MLA_RETURN_IF_ERROR(cache_.Fill(0xff));
  // cudaMemset is asynchronous and on the legacy stream: done before stream_ writes rows.
  return DeviceSynchronize();
}

Tensor CudaBackend::Activation(int slot, int64_t rows, int64_t cols) {
  if (slot >= static_cast<int>(activations_.size())) activations_.resize(slot + 1);
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(rows * cols, 1)) * sizeof(float);
  if (absl::Status s = Reserve(activations_[slot], bytes); !s.ok()) {
    Fail({"activation memory"}, std::move(s));
    return Tensor{nullptr, DType::kF32, 0, cols, cols};
  }
  return Tensor{activations_[slot].data(), DType::kF32, rows, cols, cols};
}

BackendMemory CudaBackend::Memory() const {
  BackendMemory m;
  m.weight_bytes = weight_bytes_;
  m.cache_bytes = static_cast<int64_t>(cache_.bytes());
  for (const DeviceBuffer& b : activations_) m.workspace_bytes += static_cast<int64_t>(b.bytes());
  for (const DeviceBuffer* b : {&block_table_,    &seq_lens_,         &q_pos0_,
                                &cu_seqlens_q_,   &row_seq_dev_,      &slots_,
                                &tokens_,         &gemm_in_,          &expert_ids_,
                                &expert_weights_, &counts_,           &offsets_,
                                &sorted_pairs_,   &pair_rows_,        &permuted_,
                                &expert_out_,     &expert_gate_,      &expert_up_,
                                &probe_stats_,    &plan_parts_dev_,   &plan_splits_dev_,
                                &q_bf16_,         &out_bf16_,         &partial_out_,
                                &partial_lse_,    &decompress_dev_,   &decompress_latent_,
                                &decompress_kv_,  &decompress_state_, &indexer_scores_,
                                &row_lens_dev_}) {
    m.workspace_bytes += static_cast<int64_t>(b->bytes());
  }
  return m;
}

std::optional<DeviceMemoryStatus> CudaBackend::DeviceMemory() const {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return std::nullopt;
  return DeviceMemoryStatus{static_cast<int64_t>(total_bytes), static_cast<int64_t>(free_bytes)};
}

// --- Transfers ------------------------------------------------------------------------

void CudaBackend::Upload(std::span<const float> host, Tensor dst, Op op) {
  auto timer = profiler_.Time(op);
  if (static_cast<int64_t>(host.size()) != dst.rows * dst.cols || dst.dtype != DType::kF32) {
    return Fail(op, absl::InvalidArgumentError(
                        absl::StrCat(host.size(), " host values for an F32 tensor ", Shape(dst))));
  }
  if (dst.empty()) return;
  const size_t row = static_cast<size_t>(dst.cols) * sizeof(float);
  Fail(op, CudaStatus(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(dst.stride) * sizeof(float),
                                        host.data(), row, row, static_cast<size_t>(dst.rows),
                                        cudaMemcpyHostToDevice, Raw(stream_)),
                      "cudaMemcpy2DAsync"));
}

void CudaBackend::Download(const Tensor& src, std::span<float> host, Op op) {
  auto timer = profiler_.Time(op);
  if (static_cast<int64_t>(host.size()) != src.rows * src.cols || src.dtype != DType::kF32) {
    return Fail(op, absl::InvalidArgumentError(
                        absl::StrCat(host.size(), " host values for an F32 tensor ", Shape(src))));
  }
  if (src.empty()) return;
  const size_t row = static_cast<size_t>(src.cols) * sizeof(float);
  Fail(op,
       CudaStatus(cudaMemcpy2DAsync(
                      host.data(), row, src.data, static_cast<size_t>(src.stride) * sizeof(float),
                      row, static_cast<size_t>(src.rows), cudaMemcpyDeviceToHost, Raw(stream_)),
                  "cudaMemcpy2DAsync"));
  Fail(op, Sync());
}

// --- Per-step state -------------------------------------------------------------------

void CudaBackend::BeginStep(const StepBatch& batch) {
  const Op op{"step_upload"};
  step_ = &batch;
  ++step_number_;
  decode_only_ = batch.batch == batch.num_tokens;
  row_seq_.assign(static_cast<size_t>(batch.num_tokens), 0);
  for (int64_t s = 0; s < batch.batch; ++s) {
    for (int32_t r = batch.cu_seqlens_q[s]; r < batch.cu_seqlens_q[s + 1]; ++r) {
      row_seq_[static_cast<size_t>(r)] = static_cast<int32_t>(s);
    }
  }
  auto upload = [&](DeviceBuffer& dst, const void* src, size_t bytes) -> absl::Status {
    MLA_RETURN_IF_ERROR(Reserve(dst, std::max<size_t>(bytes, 8)));
    if (bytes == 0) return absl::OkStatus();
    MLA_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst.data(), src, bytes, cudaMemcpyHostToDevice, Raw(stream_)));
    return absl::OkStatus();
  };
  auto bytes = [](const auto& v) { return v.size() * sizeof(v[0]); };
  table_width_ = BlockTableWidth(batch.max_blocks);
  const std::vector<int32_t>* table = &batch.block_table;
  if (table_width_ != batch.max_blocks) {  // re-strided only when the bucket pads it
    table_host_.assign(static_cast<size_t>(batch.batch * table_width_), 0);
    for (int64_t s = 0; s < batch.batch && batch.max_blocks > 0; ++s) {
      std::copy_n(batch.block_table.begin() + s * batch.max_blocks, batch.max_blocks,
                  table_host_.begin() + s * table_width_);
    }
    table = &table_host_;
  }
  for (absl::Status s :
       {upload(block_table_, table->data(), bytes(*table)),
        upload(seq_lens_, batch.seq_lens.data(), bytes(batch.seq_lens)),
        upload(q_pos0_, batch.q_pos0.data(), bytes(batch.q_pos0)),
        upload(cu_seqlens_q_, batch.cu_seqlens_q.data(), bytes(batch.cu_seqlens_q)),
        upload(row_seq_dev_, row_seq_.data(), bytes(row_seq_)),
        upload(slots_, batch.slots.data(), bytes(batch.slots)),
        upload(decompress_dev_, batch.decompress.data(), bytes(batch.decompress))}) {
    Fail(op, std::move(s));
  }
  // The split-KV plan goes up with the step's other inputs, before any region a graph
  // records, for the heads of the last attention (the model's; a first step plans at its
  // first attention instead). A V3.2 step whose longest sequence sees more keys than the
  // last sparse attention's top-k selects (DeepseekModel's rule): its plan counts the
  // selected keys.
  if (layout_ && last_heads_ > 0 && batch.decompress.empty() && CanSplitKvDecode(last_heads_)) {
    const bool sparse =
        layout_->index_key_dim() > 0 && last_topk_ > 0 && batch.batch > 0 &&
        *std::max_element(batch.seq_lens.begin(), batch.seq_lens.end()) > last_topk_;
    Fail(op, PlanSplitKv(last_heads_, sparse ? last_topk_ : 0));
  }
}

// --- Operations -----------------------------------------------------------------------

void CudaBackend::Embed(const Tensor& table, std::span<const int32_t> tokens, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  if (static_cast<int64_t>(tokens.size()) != out.rows || table.cols != out.cols) {
    return Fail(op, absl::InvalidArgumentError(absl::StrCat(tokens.size(), " tokens, table ",
                                                            Shape(table), ", out ", Shape(out))));
  }
  if (absl::Status s = Reserve(tokens_, std::max<size_t>(tokens.size_bytes(), 4)); !s.ok()) {
    return Fail(op, std::move(s));
  }
  if (!tokens.empty()) {
    Fail(op, CudaStatus(cudaMemcpyAsync(tokens_.data(), tokens.data(), tokens.size_bytes(),
                                        cudaMemcpyHostToDevice, Raw(stream_)),
                        "cudaMemcpyAsync"));
  }
  EmbedF32Params p;
  p.ids = tokens_.as<int32_t>();
  if (table.dtype == DType::kBF16) {
    p.table_bf16 = static_cast<const bf16_t*>(table.data);
  } else {
    p.table_f32 = static_cast<const float*>(table.data);
  }
  p.vocab = table.rows;
  p.table_stride = table.stride;
  p.out = F32(out);
  Fail(op, LaunchEmbedF32(p, stream_));
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  if (weight.cols != x.cols) {
    return Fail(op, absl::InvalidArgumentError(
                        absl::StrCat("weight ", Shape(weight), " for rows of ", x.cols)));
  }
  RmsNormF32Params p;
  p.x = F32(x);
  p.out = F32(out);
  p.eps = eps;
  internal::VectorOf(weight, &p.weight_f32, &p.weight_bf16);
  Fail(op, LaunchRmsNormF32(p, stream_));
}

absl::Status CudaBackend::GemmImpl(const Tensor& x, const Tensor& w, const Tensor& y) {
  if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("x ", Shape(x), " · wᵀ ", Shape(w), " into y ", Shape(y)));
  }
  if (x.dtype != DType::kF32 || y.dtype != DType::kF32) {
    return absl::InvalidArgumentError("x and y must be F32");
  }
  if (y.empty()) return absl::OkStatus();
  if (w.dtype == DType::kF32) {
    // Column-major view: yᵀ [n, m] = w [n, k] · xᵀ [k, m].
    const float one = 1.0f, zero = 0.0f;
    return CublasStatus(
        cublasSgemm(static_cast<cublasHandle_t>(cublas_->raw()), CUBLAS_OP_T, CUBLAS_OP_N,
                    static_cast<int>(w.rows), static_cast<int>(x.rows), static_cast<int>(x.cols),
                    &one, static_cast<const float*>(w.data), static_cast<int>(w.stride),
                    static_cast<const float*>(x.data), static_cast<int>(x.stride), &zero,
                    static_cast<float*>(y.data), static_cast<int>(y.stride)),
        "cublasSgemm");
  }
  if (w.dtype != DType::kBF16) return absl::InvalidArgumentError("weights must be BF16 or F32");
  MLA_RETURN_IF_ERROR(Reserve(gemm_in_, static_cast<size_t>(x.rows * x.cols) * sizeof(bf16_t)));
  MLA_RETURN_IF_ERROR(LaunchToBf16(F32(x), gemm_in_.as<bf16_t>(), stream_));
  GemmLtParams p;
  p.m = x.rows;
  p.n = w.rows;
  p.k = x.cols;
  p.x = gemm_in_.as<bf16_t>();
  p.ldx = x.cols;
  p.w = static_cast<const bf16_t*>(w.data);
  p.ldw = w.stride;
  p.y = y.data;
  p.ldy = y.stride;
  p.out_type = GemmOutType::kF32;
  return lt_->Run(p, stream_);
}

void CudaBackend::Gemm(const Tensor& x, const Tensor& w, Tensor y, Op op) {
  auto timer = profiler_.Time(op);
  Fail(op, GemmImpl(x, w, y));
}

void CudaBackend::Copy(const Tensor& src, Tensor dst, Op op) {
  auto timer = profiler_.Time(op);
  if (src.rows != dst.rows || src.cols != dst.cols) {
    return Fail(
        op, absl::InvalidArgumentError(absl::StrCat("copy ", Shape(src), " into ", Shape(dst))));
  }
  if (absl::Status s = NeedF32(op, {&src, &dst}); !s.ok()) return Fail(op, std::move(s));
  if (dst.empty()) return;
  const size_t row = static_cast<size_t>(dst.cols) * sizeof(float);
  Fail(op, CudaStatus(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(dst.stride) * sizeof(float),
                                        src.data, static_cast<size_t>(src.stride) * sizeof(float),
                                        row, static_cast<size_t>(dst.rows),
                                        cudaMemcpyDeviceToDevice, Raw(stream_)),
                      "cudaMemcpy2DAsync"));
}

void CudaBackend::Fill(Tensor t, float value, Op op) {
  auto timer = profiler_.Time(op);
  Fail(op, LaunchFillF32(F32(t), value, stream_));
}

void CudaBackend::Add(const Tensor& x, Tensor y, Op op) {
  auto timer = profiler_.Time(op);
  Fail(op, LaunchAddF32(F32(x), F32(y), stream_));
}

void CudaBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor out, Op op) {
  auto timer = profiler_.Time(op);
  Fail(op, LaunchSiluMulF32(F32(gate), F32(up), F32(out), stream_));
}

void CudaBackend::Rope(const Tensor& cos, const Tensor& sin, Tensor x, int heads,
                       int64_t head_stride, Op op) {
  RopeImpl(cos, sin, x, heads, head_stride, /*halves=*/false, op);
}

void CudaBackend::RopeImpl(const Tensor& cos, const Tensor& sin, const Tensor& x, int heads,
                           int64_t head_stride, bool halves, const Op& op) {
  auto timer = profiler_.Time(op);
  RopeF32Params p;
  p.cos = F32(cos);
  p.sin = F32(sin);
  p.x = F32(x);
  p.heads = heads;
  p.head_stride = head_stride;
  p.halves = halves;
  Fail(op, LaunchRopeF32(p, stream_));
}

}  // namespace mla::cuda
