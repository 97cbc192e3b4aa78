#include "engine/backend/cpu/decompressed_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/decompressed_attention_kernels.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/common/bf16.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("DecompressedAttention: ", message));
}

internal::SoftmaxRowFn SelectSoftmaxRow() {
  if (ActiveIsa() >= CpuIsa::kAvx2) {
    if (internal::SoftmaxRowFn fn = internal::SoftmaxRowAvx2()) return fn;
  }
  return &internal::SoftmaxRowScalar;
}

bool Takes(const DecompressedAttentionParams& p, int64_t j) {
  return p.take == nullptr || p.take[j] != 0;
}

// Rows [first, first + rows) of a weight view.
MatrixView WeightRows(const MatrixView& w, int64_t first, int64_t rows) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  return MatrixView{base + first * w.row_stride * static_cast<int64_t>(DTypeSize(w.dtype)), w.dtype,
                    rows, w.cols, w.row_stride};
}

MatrixView F32View(const float* data, int64_t rows, int64_t cols) {
  return MatrixView{data, DType::kF32, rows, cols, cols};
}

// Cache row of key t of a sequence with block table `table`.
const uint8_t* KeyRow(const MlaAttentionParams& p, const int32_t* table, int64_t row_bytes,
                      int64_t t) {
  return static_cast<const uint8_t*>(p.kv_cache) +
         (int64_t{table[t / p.block_size]} * p.block_size + t % p.block_size) * row_bytes;
}

// One sequence's running state and the per-call constants its heads share.
struct SequenceRun {
  const DecompressedAttentionParams& p;
  int64_t heads, latent, rope, nope, vdim, qk;
  int64_t rows;             // m: the sequence's query rows this step
  int64_t pos0;             // position of row 0
  const float* q;           // the sequence's first query row
  const float* w_uv;        // [heads, v, L] fp32
  int64_t w_uv_stride;      // floats between rows of w_uv
  int64_t w_uv_head;        // floats between heads of w_uv
  std::vector<float>& o;    // [heads, m, v] running Σ exp(score - max)·v
  std::vector<float>& mx;   // [heads, m] running max
  std::vector<float>& sum;  // [heads, m] running Σ exp(score - max)
  internal::SoftmaxRowFn softmax_row;
  // The bf16 GEMM level is on (cpu_features.h): it rounds every GEMM's activations to bf16
  // anyway, so the scores and the weighted sum also run on bf16 copies of this block's
  // keys and values, with vdpbf16ps at twice the fp32 rate. Exact levels stay in fp32.
  bool bf16_products;

  // Head h over the key block [kb, kb + nk) whose latents are c [nk, L] and k_pe
  // kpe [nk, R]. scratch: kDecompressedKeyBlock · (qk + v) + m · (kDecompressedKeyBlock + v);
  // kv16: kDecompressedKeyBlock · (qk + v) when bf16_products; c16: c rounded to bf16
  // when bf16_products, else null.
  void Head(int64_t h, int64_t kb, int64_t nk, const float* c, const bf16_t* c16,
            const float* kpe, float* scratch, bf16_t* kv16) const {
    // Rows before `first` end before key kb and see nothing of this block.
    const int64_t first = std::max<int64_t>(0, kb - pos0);
    if (first >= rows) return;
    const int64_t m = rows - first;
    float* k = scratch;                            // [nk, qk]: [k_nope | k_pe]
    float* vt = k + kDecompressedKeyBlock * qk;    // [v, nk]
    float* s = vt + kDecompressedKeyBlock * vdim;  // [m, nk] scores, then probabilities
    float* pv = s + rows * kDecompressedKeyBlock;  // [m, v]
    Gemm(c, latent, nk, WeightRows(p.kv_b, h * (nope + vdim), nope), k, qk, nullptr);
    for (int64_t t = 0; t < nk; ++t) std::copy_n(kpe + t * rope, rope, k + t * qk + nope);
    // vᵀ = W_UV · cᵀ has the latents as its "weights": on the bf16 level their bf16 copy
    // puts this GEMM on the bf16 kernels too (exact for W_UV when kv_b is bf16, and for c
    // when the cache is).
    const MatrixView c_view = c16 != nullptr ? MatrixView{c16, DType::kBF16, nk, latent, latent}
                                             : F32View(c, nk, latent);
    Gemm(w_uv + h * w_uv_head, w_uv_stride, vdim, c_view, vt, nk, nullptr);
    MatrixView k_view = F32View(k, nk, qk);
    MatrixView vt_view = F32View(vt, vdim, nk);
    if (bf16_products) {
      bf16_t* k16 = kv16;
      bf16_t* vt16 = kv16 + kDecompressedKeyBlock * qk;
      for (int64_t i = 0; i < nk * qk; ++i) k16[i] = FloatToBf16(k[i]);
      for (int64_t i = 0; i < vdim * nk; ++i) vt16[i] = FloatToBf16(vt[i]);
      k_view = MatrixView{k16, DType::kBF16, nk, qk, qk};
      vt_view = MatrixView{vt16, DType::kBF16, vdim, nk, nk};
    }
    const int64_t q_stride = heads * qk;
    Gemm(q + first * q_stride + h * qk, q_stride, m, k_view, s, nk, nullptr);
    float* o_h = o.data() + h * rows * vdim;
    float* mx_h = mx.data() + h * rows;
    float* sum_h = sum.data() + h * rows;
    for (int64_t i = first; i < rows; ++i) {
      float* si = s + (i - first) * nk;
      // Causal: the row at position pos0 + i sees keys up to itself (at least key kb).
      const int64_t visible = std::min(nk, pos0 + i + 1 - kb);
      const float alpha = softmax_row(si, visible, nk, p.paged.softmax_scale, &mx_h[i], &sum_h[i]);
      float* oi = o_h + i * vdim;
      for (int64_t d = 0; d < vdim; ++d) oi[d] *= alpha;
    }
    Gemm(s, nk, m, vt_view, pv, vdim, nullptr);
    for (int64_t i = 0; i < m * vdim; ++i) o_h[first * vdim + i] += pv[i];
  }
};

// W_UV of every head as fp32 [heads, v, L]: the first operand of the vᵀ GEMM must be
// fp32. Points into kv_b itself when it is fp32.
const float* WuvF32(const DecompressedAttentionParams& p, std::vector<float>& storage,
                    int64_t* stride, int64_t* head_stride) {
  const int64_t heads = p.paged.num_heads, latent = p.paged.kv_lora_rank;
  const int64_t rows_per_head = p.nope_dim + p.v_dim;
  if (p.kv_b.dtype == DType::kF32) {
    *stride = p.kv_b.row_stride;
    *head_stride = rows_per_head * p.kv_b.row_stride;
    return static_cast<const float*>(p.kv_b.data) + p.nope_dim * p.kv_b.row_stride;
  }
  storage.resize(static_cast<size_t>(heads * p.v_dim * latent));
  const auto* w = static_cast<const bf16_t*>(p.kv_b.data);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t r = 0; r < p.v_dim; ++r) {
      const bf16_t* src = w + (h * rows_per_head + p.nope_dim + r) * p.kv_b.row_stride;
      float* dst = storage.data() + (h * p.v_dim + r) * latent;
      for (int64_t d = 0; d < latent; ++d) dst[d] = Bf16ToFloat(src[d]);
    }
  }
  *stride = latent;
  *head_stride = p.v_dim * latent;
  return storage.data();
}

}  // namespace

absl::Status ValidateDecompressedAttentionParams(const DecompressedAttentionParams& params) {
  MlaAttentionParams paged = params.paged;
  paged.q = params.q;
  paged.out = params.out;
  paged.lse = params.out;  // Only checked for presence; this kernel has no lse.
  if (absl::Status s = ValidateMlaAttentionParams(paged); !s.ok()) return s;
  if (params.nope_dim < 1 || params.v_dim < 1) {
    return Invalid(absl::StrCat("bad dims: nope ", params.nope_dim, ", v ", params.v_dim));
  }
  const MatrixView& w = params.kv_b;
  if (w.data == nullptr || (w.dtype != DType::kBF16 && w.dtype != DType::kF32) ||
      w.rows != paged.num_heads * (params.nope_dim + params.v_dim) ||
      w.cols != paged.kv_lora_rank || w.row_stride < w.cols) {
    return Invalid(absl::StrCat("kv_b is [", w.rows, ", ", w.cols, "] ", DTypeName(w.dtype),
                                ", want bf16 or f32 [", paged.num_heads, " · (", params.nope_dim,
                                " + ", params.v_dim, "), ", paged.kv_lora_rank, "]"));
  }
  return absl::OkStatus();
}

absl::Status DecompressedAttention(const DecompressedAttentionParams& params, ThreadPool* pool) {
  if (absl::Status s = ValidateDecompressedAttentionParams(params); !s.ok()) return s;
  const MlaAttentionParams& p = params.paged;
  const int64_t heads = p.num_heads, latent = p.kv_lora_rank, rope = p.rope_dim;
  const int64_t nope = params.nope_dim, vdim = params.v_dim, qk = nope + rope;
  const int64_t row_bytes = CacheRowBytes(p.kv_dtype, latent, rope);
  std::vector<float> w_uv_storage, c, kpe, o, mx, sum, scratch;
  std::vector<bf16_t> kv16, c16;
  const bool bf16_products = ActiveIsa() >= CpuIsa::kAvx512Bf16;
  int64_t w_uv_stride = 0, w_uv_head = 0;
  const float* w_uv = nullptr;
  const internal::SoftmaxRowFn softmax_row = SelectSoftmaxRow();
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  const int64_t slots = std::min<int64_t>(threads, heads);
  for (int64_t j = 0; j < p.batch; ++j) {
    const int64_t rows = p.cu_seqlens_q[j + 1] - p.cu_seqlens_q[j];
    if (!Takes(params, j) || rows == 0) continue;
    if (w_uv == nullptr) w_uv = WuvF32(params, w_uv_storage, &w_uv_stride, &w_uv_head);
    const int64_t pos0 = p.q_pos0[j], keys = pos0 + rows;  // the last row's keys
    const int32_t* table = p.block_table + j * p.max_blocks_per_seq;
    o.assign(static_cast<size_t>(heads * rows * vdim), 0.0f);
    mx.assign(static_cast<size_t>(heads * rows), kNegInf);
    sum.assign(static_cast<size_t>(heads * rows), 0.0f);
    c.resize(static_cast<size_t>(kDecompressedKeyBlock * latent));
    kpe.resize(static_cast<size_t>(kDecompressedKeyBlock * rope));
    if (bf16_products) c16.resize(static_cast<size_t>(kDecompressedKeyBlock * latent));
    const int64_t slot_floats =
        kDecompressedKeyBlock * (qk + vdim) + rows * (kDecompressedKeyBlock + vdim);
    scratch.resize(static_cast<size_t>(slots * slot_floats));
    const int64_t slot_kv16 = bf16_products ? kDecompressedKeyBlock * (qk + vdim) : 0;
    kv16.resize(static_cast<size_t>(slots * slot_kv16));
    const float* q = params.q + int64_t{p.cu_seqlens_q[j]} * heads * qk;
    const SequenceRun run{params,    heads, latent, rope, nope,        vdim,
                          qk,        rows,  pos0,   q,    w_uv,        w_uv_stride,
                          w_uv_head, o,     mx,     sum,  softmax_row, bf16_products};
    for (int64_t kb = 0; kb < keys; kb += kDecompressedKeyBlock) {
      const int64_t nk = std::min(kDecompressedKeyBlock, keys - kb);
      for (int64_t t = 0; t < nk; ++t) {
        DecodeCacheRow(p.kv_dtype, latent, rope, KeyRow(p, table, row_bytes, kb + t),
                       &c[t * latent], &kpe[t * rope]);
      }
      if (bf16_products) {
        for (int64_t i = 0; i < nk * latent; ++i) c16[i] = FloatToBf16(c[i]);
      }
      std::atomic<int64_t> next{0};
      auto work = [&](int64_t slot_begin, int64_t slot_end) {
        for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
          for (int64_t h = next.fetch_add(1); h < heads; h = next.fetch_add(1)) {
            run.Head(h, kb, nk, c.data(), bf16_products ? c16.data() : nullptr, kpe.data(),
                     scratch.data() + slot * slot_floats, kv16.data() + slot * slot_kv16);
          }
        }
      };
      if (pool == nullptr || slots <= 1) {
        work(0, 1);
      } else {
        pool->ParallelFor(slots, work);
      }
    }
    float* out = params.out + int64_t{p.cu_seqlens_q[j]} * heads * vdim;
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t h = 0; h < heads; ++h) {
        const float inv = 1.0f / sum[h * rows + i];
        const float* src = o.data() + (h * rows + i) * vdim;
        float* dst = out + (i * heads + h) * vdim;
        for (int64_t d = 0; d < vdim; ++d) dst[d] = src[d] * inv;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
