#include "engine/backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend/cuda/cublas_handle.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/gemm_lt.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/kernels/forward_f32.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/moe_routing.h"
#include "engine/backend/host_sampling.h"

namespace mla::cuda {
namespace {

std::string Shape(const Tensor& t) { return absl::StrCat("[", t.rows, ", ", t.cols, "]"); }

F32Matrix F32(const Tensor& t) {
  return F32Matrix{static_cast<float*>(t.data), t.rows, t.cols, t.stride};
}

cudaStream_t Raw(CudaStream s) { return reinterpret_cast<cudaStream_t>(s); }

absl::Status NeedF32(const Op& op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->dtype != DType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat(op.name, ": activations must be F32, got ", DTypeName(t->dtype)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

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
  return backend;
}

CudaBackend::CudaBackend(std::string name, std::string description)
    : name_(std::move(name)), description_(std::move(description)) {}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) {
    cudaStreamSynchronize(Raw(stream_));
    cudaStreamDestroy(Raw(stream_));
  }
}

void CudaBackend::Fail(const Op& op, absl::Status status) {
  if (status.ok() || !error_.ok()) return;
  const std::string where =
      op.layer >= 0 ? absl::StrCat(op.name, " (layer ", op.layer, ")") : std::string(op.name);
  error_ = absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

absl::Status CudaBackend::TakeError() {
  // A launch error not yet attributed to an operation (normally none: every launch checks).
  if (error_.ok()) {
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
      error_ = CudaStatus(static_cast<int>(e), "a kernel launch");
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
  // Grow by half again so a slowly growing batch does not reallocate every step.
  MLA_ASSIGN_OR_RETURN(buffer, DeviceBuffer::Allocate(std::max(bytes, buffer.bytes() * 3 / 2)));
  return absl::OkStatus();
}

bf16_t* CudaBackend::CacheLayer(int layer) const {
  const int64_t per_layer = int64_t{num_blocks_} * layout_->bytes_per_block_per_layer();
  return reinterpret_cast<bf16_t*>(cache_.as<unsigned char>() + layer * per_layer);
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
  if (layout.dtype() != CacheDType::kBF16) {
    return absl::UnimplementedError(
        absl::StrCat("the CUDA backend stores a ", CacheDTypeName(CacheDType::kBF16),
                     " latent cache only, not ", CacheDTypeName(layout.dtype())));
  }
  if (layout.index_key_dim() > 0) {
    return absl::UnimplementedError(
        "the CUDA backend has no DeepSeek-V3.2 sparse attention (indexer keys) yet; use "
        "--device=cpu");
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
  layout_ = layout;
  num_blocks_ = num_blocks;
  return absl::OkStatus();
}

// The disk tier's copies: after the stream's pending work (a step's cache writes), one
// host copy per layer of the block's share of that layer.
absl::Status CudaBackend::ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) {
  if (!layout_ || block < 0 || block >= num_blocks_ ||
      static_cast<int64_t>(bytes.size()) != layout_->bytes_per_block()) {
    return absl::InvalidArgumentError(absl::StrCat("cache block copy: block ", block, " of ",
                                                   num_blocks_, ", ", bytes.size(), " bytes"));
  }
  MLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(Raw(stream_)));
  const int64_t per_block = layout_->bytes_per_block_per_layer();
  const int64_t per_layer = int64_t{num_blocks_} * per_block;
  for (int l = 0; l < layout_->num_layers(); ++l) {
    MLA_RETURN_IF_ERROR(cache_.CopyToHost(bytes.data() + l * per_block, per_block,
                                          l * per_layer + int64_t{block} * per_block));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) {
  if (!layout_ || block < 0 || block >= num_blocks_ ||
      static_cast<int64_t>(bytes.size()) != layout_->bytes_per_block()) {
    return absl::InvalidArgumentError(absl::StrCat("cache block copy: block ", block, " of ",
                                                   num_blocks_, ", ", bytes.size(), " bytes"));
  }
  MLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(Raw(stream_)));
  const int64_t per_block = layout_->bytes_per_block_per_layer();
  const int64_t per_layer = int64_t{num_blocks_} * per_block;
  for (int l = 0; l < layout_->num_layers(); ++l) {
    MLA_RETURN_IF_ERROR(cache_.CopyFromHost(bytes.data() + l * per_block, per_block,
                                            l * per_layer + int64_t{block} * per_block));
  }
  return absl::OkStatus();
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
  for (const DeviceBuffer* b :
       {&block_table_,     &seq_lens_,    &q_pos0_,       &cu_seqlens_q_, &row_seq_dev_,
        &slots_,           &tokens_,      &gemm_in_,      &expert_ids_,   &expert_weights_,
        &counts_,          &offsets_,     &sorted_pairs_, &pair_rows_,    &permuted_,
        &expert_out_,      &expert_gate_, &expert_up_,    &probe_stats_,  &plan_parts_dev_,
        &plan_splits_dev_, &q_bf16_,      &out_bf16_,     &partial_out_,  &partial_lse_}) {
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
  for (absl::Status s :
       {upload(block_table_, batch.block_table.data(), bytes(batch.block_table)),
        upload(seq_lens_, batch.seq_lens.data(), bytes(batch.seq_lens)),
        upload(q_pos0_, batch.q_pos0.data(), bytes(batch.q_pos0)),
        upload(cu_seqlens_q_, batch.cu_seqlens_q.data(), bytes(batch.cu_seqlens_q)),
        upload(row_seq_dev_, row_seq_.data(), bytes(row_seq_)),
        upload(slots_, batch.slots.data(), bytes(batch.slots))}) {
    Fail(op, std::move(s));
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
  if (weight.dtype == DType::kBF16) {
    p.weight_bf16 = static_cast<const bf16_t*>(weight.data);
  } else {
    p.weight_f32 = static_cast<const float*>(weight.data);
  }
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
  auto timer = profiler_.Time(op);
  RopeF32Params p;
  p.cos = F32(cos);
  p.sin = F32(sin);
  p.x = F32(x);
  p.heads = heads;
  p.head_stride = head_stride;
  Fail(op, LaunchRopeF32(p, stream_));
}

void CudaBackend::WriteCache(int layer, const Tensor& latent, const Tensor& k_pe, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  const int64_t lat = layout_->latent_dim(), rope = layout_->rope_dim();
  const int64_t num_slots = int64_t{num_blocks_} * layout_->block_size();
  if (latent.cols != lat || k_pe.cols != rope || latent.rows != k_pe.rows ||
      latent.rows != static_cast<int64_t>(step_->slots.size()) || layer < 0 ||
      layer >= layout_->num_layers()) {
    return Fail(op, absl::InvalidArgumentError(
                        absl::StrCat("latent ", Shape(latent), " and k_pe ", Shape(k_pe),
                                     " do not match the cache rows [", step_->slots.size(), ", ",
                                     lat, " + ", rope, "] of layer ", layer)));
  }
  // All slots are checked before anything is written: a bad step leaves the cache as it was.
  for (const int64_t slot : step_->slots) {
    if (slot < 0 || slot >= num_slots) {
      return Fail(op, absl::OutOfRangeError(
                          absl::StrCat("cache slot ", slot, " outside [0, ", num_slots, ")")));
    }
  }
  CacheWriteF32Params p;
  p.latent = F32(latent);
  p.k_pe = F32(k_pe);
  p.slots = slots_.as<int64_t>();
  p.cache = CacheLayer(layer);
  Fail(op, LaunchCacheWriteF32(p, stream_));
}

void CudaBackend::MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                               Tensor out, Tensor lse, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr) {
    return Fail(op, absl::FailedPreconditionError("no cache or no step"));
  }
  const int64_t lat = layout_->latent_dim(), width = lat + layout_->rope_dim();
  if (q.cols != heads * width || q.stride != q.cols || out.cols != heads * lat ||
      out.stride != out.cols || lse.cols != heads || lse.stride != heads ||
      q.rows != step_->num_tokens || out.rows != q.rows || lse.rows != q.rows) {
    return Fail(
        op, absl::InvalidArgumentError(absl::StrCat("q ", Shape(q), ", out ", Shape(out), ", lse ",
                                                    Shape(lse), " must be dense rows of ", heads,
                                                    " heads for ", step_->num_tokens, " tokens")));
  }
  if (CanSplitKvDecode(heads)) {
    return Fail(op, SplitKvDecode(layer, heads, softmax_scale, q, out, lse));
  }
  MlaAttentionF32Params p;
  p.num_rows = q.rows;
  p.heads = heads;
  p.latent = static_cast<int>(lat);
  p.rope = layout_->rope_dim();
  p.block_size = layout_->block_size();
  p.max_blocks = step_->max_blocks;
  p.softmax_scale = softmax_scale;
  p.cache = CacheLayer(layer);
  p.block_table = block_table_.as<int32_t>();
  p.q_pos0 = q_pos0_.as<int32_t>();
  p.cu_seqlens_q = cu_seqlens_q_.as<int32_t>();
  p.row_seq = row_seq_dev_.as<int32_t>();
  p.q = static_cast<const float*>(q.data);
  p.out = static_cast<float*>(out.data);
  p.lse = static_cast<float*>(lse.data);
  Fail(op, LaunchMlaAttentionF32(p, stream_));
}

bool CudaBackend::CanSplitKvDecode(int heads) const {
  return split_kv_decode_ && decode_only_ && layout_->block_size() == kMlaBlockSize &&
         layout_->latent_dim() <= kMlaMaxLatent && layout_->latent_dim() % 2 == 0 &&
         layout_->rope_dim() <= kMlaMaxRope && layout_->rope_dim() % 2 == 0 && heads >= 1 &&
         num_sms_ > 0;
}

// q rounds to bf16 for the kernel (its scores are bf16 products with fp32 sums); its bf16
// output loses nothing downstream, since W_UV's GEMM rounds its input to bf16 anyway.
absl::Status CudaBackend::SplitKvDecode(int layer, int heads, float softmax_scale, const Tensor& q,
                                        const Tensor& out, const Tensor& lse) {
  const int lat = layout_->latent_dim(), rope = layout_->rope_dim();
  const int64_t batch = step_->batch;
  if (planned_step_ != step_number_ || planned_heads_ != heads) {
    MlaDecodePlanOptions options;
    options.num_sms = num_sms_;
    options.num_heads = heads;
    options.max_blocks_per_seq = static_cast<int>(step_->max_blocks);
    MlaDecodePlan plan;
    MLA_RETURN_IF_ERROR(PlanMlaDecode(step_->seq_lens, options, &plan));
    const size_t parts_bytes = plan.parts.size() * sizeof(MlaDecodePart);
    const size_t splits_bytes = plan.split_offsets.size() * sizeof(int32_t);
    MLA_RETURN_IF_ERROR(Reserve(plan_parts_dev_, std::max<size_t>(parts_bytes, 32)));
    MLA_RETURN_IF_ERROR(Reserve(plan_splits_dev_, std::max<size_t>(splits_bytes, 4)));
    // Synchronous copies: `plan` is a local that an asynchronous copy could outlive.
    MLA_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(plan_parts_dev_.data(), plan.parts.data(), parts_bytes, cudaMemcpyHostToDevice));
    MLA_CUDA_RETURN_IF_ERROR(cudaMemcpy(plan_splits_dev_.data(), plan.split_offsets.data(),
                                        splits_bytes, cudaMemcpyHostToDevice));
    plan_parts_ = plan.num_parts;
    plan_partial_slots_ = plan.num_partial_slots();
    planned_step_ = step_number_;
    planned_heads_ = heads;
  }
  const size_t rows = static_cast<size_t>(batch) * heads;
  MLA_RETURN_IF_ERROR(Reserve(q_bf16_, rows * (lat + rope) * sizeof(bf16_t)));
  MLA_RETURN_IF_ERROR(Reserve(out_bf16_, rows * lat * sizeof(bf16_t)));
  const size_t slots = static_cast<size_t>(std::max(plan_partial_slots_, 1));
  MLA_RETURN_IF_ERROR(Reserve(partial_out_, slots * heads * lat * sizeof(float)));
  MLA_RETURN_IF_ERROR(Reserve(partial_lse_, slots * heads * sizeof(float)));
  MLA_RETURN_IF_ERROR(LaunchToBf16(F32(q), q_bf16_.as<bf16_t>(), stream_));
  MlaDecodeParams p;
  p.batch = static_cast<int>(batch);
  p.q_rows_per_seq = 1;
  p.num_heads = heads;
  p.kv_lora_rank = lat;
  p.rope_dim = rope;
  p.block_size = kMlaBlockSize;
  p.num_blocks = num_blocks_;
  p.max_blocks_per_seq = static_cast<int>(step_->max_blocks);
  p.softmax_scale = softmax_scale;
  p.num_parts = plan_parts_;
  p.num_partial_slots = plan_partial_slots_;
  p.q = q_bf16_.as<bf16_t>();
  p.kv_cache = CacheLayer(layer);
  p.block_table = block_table_.as<int32_t>();
  p.seq_lens = seq_lens_.as<int32_t>();
  p.parts = plan_parts_dev_.as<MlaDecodePart>();
  p.split_offsets = plan_splits_dev_.as<int32_t>();
  p.partial_out = partial_out_.as<float>();
  p.partial_lse = partial_lse_.as<float>();
  p.out = out_bf16_.as<bf16_t>();
  p.lse = static_cast<float*>(lse.data);
  MLA_RETURN_IF_ERROR(LaunchMlaDecode(p, stream_));
  return LaunchFromBf16(out_bf16_.as<bf16_t>(), F32(out), stream_);
}

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
    // The host issues one GEMM triple per used expert, so it needs the offsets.
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
    MLA_RETURN_IF_ERROR(Reserve(permuted_, static_cast<size_t>(pairs * hidden) * sizeof(float)));
    MLA_RETURN_IF_ERROR(Reserve(expert_out_, static_cast<size_t>(pairs * hidden) * sizeof(float)));
    MLA_RETURN_IF_ERROR(
        Reserve(expert_gate_, static_cast<size_t>(max_rows * inter) * sizeof(float)));
    MLA_RETURN_IF_ERROR(Reserve(expert_up_, static_cast<size_t>(max_rows * inter) * sizeof(float)));
    const Tensor permuted{permuted_.data(), DType::kF32, pairs, hidden, hidden};
    const Tensor expert_out{expert_out_.data(), DType::kF32, pairs, hidden, hidden};
    MLA_RETURN_IF_ERROR(
        LaunchGatherRowsF32(F32(x), sorted_pairs_.as<int32_t>(), top_k, F32(permuted), stream_));
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
    return LaunchCombineExpertsF32(F32(expert_out), pair_rows_.as<int32_t>(),
                                   expert_weights_.as<float>(), top_k, F32(out), stream_);
  };
  Fail(op, run());
}

absl::StatusOr<AttentionSharpness> CudaBackend::ProbeAttention(int layer, int64_t seq,
                                                               int64_t num_keys,
                                                               const Tensor& q_row, int heads,
                                                               float softmax_scale, Op op) {
  auto timer = profiler_.Time(op);
  if (!layout_ || step_ == nullptr || seq < 0 || seq >= step_->batch) {
    return absl::InvalidArgumentError(
        absl::StrCat(op.name, ": sequence ", seq, " outside the step's batch"));
  }
  const int64_t width = layout_->latent_dim() + layout_->rope_dim();
  if (num_keys < 1 || num_keys > step_->max_blocks * layout_->block_size() || q_row.rows != 1 ||
      q_row.cols != heads * width) {
    return absl::InvalidArgumentError(
        absl::StrCat(op.name, ": ", num_keys, " keys, q ", Shape(q_row), " for ", heads, " heads"));
  }
  MLA_RETURN_IF_ERROR(Reserve(probe_stats_, static_cast<size_t>(heads) * 3 * sizeof(float)));
  ProbeF32Params p;
  p.heads = heads;
  p.latent = layout_->latent_dim();
  p.rope = layout_->rope_dim();
  p.block_size = layout_->block_size();
  p.num_keys = num_keys;
  p.softmax_scale = softmax_scale;
  p.cache = CacheLayer(layer);
  p.blocks = block_table_.as<int32_t>() + seq * step_->max_blocks;
  p.q = static_cast<const float*>(q_row.data);
  p.stats = probe_stats_.as<float>();
  MLA_RETURN_IF_ERROR(LaunchProbeF32(p, stream_));
  std::vector<float> stats(static_cast<size_t>(heads) * 3);
  MLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(stats.data(), probe_stats_.data(),
                                           stats.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                           Raw(stream_)));
  MLA_RETURN_IF_ERROR(Sync());
  AttentionSharpness out;
  out.layer = layer;
  out.context_tokens = num_keys;
  for (int h = 0; h < heads; ++h) {
    const double m = stats[h * 3], z = stats[h * 3 + 1], a = stats[h * 3 + 2];
    out.entropy += m + std::log(z) - a / z;  // H = m + log Z − A / Z
    out.max_weight += 1.0 / z;               // the max key has weight e⁰ / Z
  }
  out.entropy /= heads;
  out.max_weight /= heads;
  return out;
}

void CudaBackend::Sample(const Tensor& logits, std::span<const RowSampling> rows,
                         std::span<RowSample> out, Op op) {
  auto timer = profiler_.Time(op);
  if (rows.size() != out.size()) {
    return Fail(op, absl::InvalidArgumentError("one result per sampled row"));
  }
  logits_host_.resize(static_cast<size_t>(logits.rows * logits.cols));
  Download(logits, logits_host_, op);
  if (!error_.ok()) return;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].row < 0 || rows[i].row >= logits.rows) {
      out[i].status = absl::InvalidArgumentError(
          absl::StrCat(op.name, ": row ", rows[i].row, " outside ", Shape(logits)));
      continue;
    }
    SampleHostRow(std::span<const float>(logits_host_.data() + rows[i].row * logits.cols,
                                         static_cast<size_t>(logits.cols)),
                  rows[i], out[i]);
  }
}

// --- DeepSeek-V3.2 sparse attention: not on the device yet (AllocateCache refuses a cache
// with indexer keys, so a V3.2 model fails at load; these only guard direct calls).

void CudaBackend::LayerNorm(const Tensor&, const Tensor&, const Tensor&, float, Tensor, Op op) {
  Fail(op, absl::UnimplementedError("not implemented on CUDA yet"));
}
void CudaBackend::RopeHalves(const Tensor&, const Tensor&, Tensor, int, int64_t, Op op) {
  Fail(op, absl::UnimplementedError("not implemented on CUDA yet"));
}
void CudaBackend::WriteIndexKeys(int, const Tensor&, Op op) {
  Fail(op, absl::UnimplementedError("not implemented on CUDA yet"));
}
void CudaBackend::IndexerTopK(int, int, float, float, const Tensor&, const Tensor&, Tensor, Op op) {
  Fail(op, absl::UnimplementedError("not implemented on CUDA yet"));
}
void CudaBackend::SparseMlaAttention(int, int, float, const Tensor&, const Tensor&, Tensor, Tensor,
                                     Op op) {
  Fail(op, absl::UnimplementedError("not implemented on CUDA yet"));
}

}  // namespace mla::cuda
