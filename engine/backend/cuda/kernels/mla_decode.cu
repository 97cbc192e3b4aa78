// The split-KV MLA decode and its combine step (interface and math in mla_decode.h).
//
// Split kernel, one CTA per (head tile, part), kThreads threads, per cache block of 64 keys:
//   1. load the block's 64 × (L + R) bf16 keys into shared memory; slots at or past the
//      sequence's length are never read (they become zeros, so NaN there cannot leak);
//   2. scores: thread (key k, row group g) computes 4 rows' dot products with key k;
//   3. online softmax: one warp per 2 rows updates the running max m and sum l (log2
//      domain) and turns scores into probabilities p;
//   4. output: thread t owns latent columns t and t + 256 of all 16 rows in registers and
//      adds Σ_k p[r][k] · c_k[col] after rescaling by exp2(m_old − m_new).
// Shared memory: q tile fp32 [16][L + R], key block [64][stride] 32-bit words (stride is
// odd, so the 32 keys that a warp reads at one column hit 32 different banks), p [16][64].
// This is a CUDA-core kernel: it is meant to be correct on any sm_80+ device and simple to
// check; tensor-core (wgmma) tiles in FlashMLA's manner are the next step for speed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/cache_row.cuh"
#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/backend/cuda/kernels/launch.cuh"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_split.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = kMlaDecodeRowsPerCta;               // 16
constexpr int kKeys = kMlaBlockSize;                      // 64
constexpr int kRowGroups = kThreads / kKeys;              // 4
constexpr int kRowsPerGroup = kRows / kRowGroups;         // 4
constexpr int kRowsPerWarp = kRows / kWarps;              // 2
constexpr int kColsPerThread = kMlaMaxLatent / kThreads;  // 2
constexpr int kCombineThreads = 128;
constexpr int kCombineWeights = 2048;
static_assert(kRowGroups * kKeys == kThreads && kRowsPerGroup * kRowGroups == kRows);
static_assert(kRowsPerWarp * kWarps == kRows && kKeys == 64);

// Words (bf16 pairs) per key row in shared memory: at least (L + R) / 2 and odd.
__host__ __device__ inline int KeyStrideWords(int width) { return (width / 2) | 1; }

__host__ __device__ inline size_t SplitSharedBytes(int width) {
  return sizeof(float) * (size_t{kRows} * width + size_t{kRows} * kKeys + 3 * kRows) +
         sizeof(uint32_t) * size_t{kKeys} * KeyStrideWords(width);
}

// Where one CTA keeps its state (carved out of dynamic shared memory).
struct SplitShared {
  float* q;        // [kRows][width]
  float* p;        // [kRows][kKeys]
  float* m;        // [kRows] running max, log2 domain
  float* l;        // [kRows] running sum of exp2(score - m)
  float* alpha;    // [kRows] rescale of the output for the current block
  uint32_t* keys;  // [kKeys][stride] bf16 pairs
};

__device__ SplitShared CarveShared(unsigned char* base, int width) {
  SplitShared s;
  s.q = reinterpret_cast<float*>(base);
  s.p = s.q + kRows * width;
  s.m = s.p + kRows * kKeys;
  s.l = s.m + kRows;
  s.alpha = s.l + kRows;
  s.keys = reinterpret_cast<uint32_t*>(s.alpha + kRows);
  return s;
}

// Step 2: scores in the log2 domain, -inf where a row may not see the key.
__device__ void ComputeScores(const SplitShared& s, int width, int first_key, int row0, int seq_len,
                              int s_q, int heads, float scale_log2) {
  const int key = threadIdx.x % kKeys;
  const int group = threadIdx.x / kKeys;
  const uint32_t* k = s.keys + key * KeyStrideWords(width);
  float acc[kRowsPerGroup] = {};
  for (int w = 0; w < width / 2; ++w) {
    const uint32_t kw = k[w];
    const float k0 = Bf16Lo(kw);
    const float k1 = Bf16Hi(kw);
#pragma unroll
    for (int i = 0; i < kRowsPerGroup; ++i) {
      const float2 q =
          reinterpret_cast<const float2*>(s.q + (group * kRowsPerGroup + i) * width)[w];
      acc[i] = fmaf(q.x, k0, fmaf(q.y, k1, acc[i]));
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerGroup; ++i) {
    const int r = group * kRowsPerGroup + i;
    // Row r is query row (row0 + r) / heads of the sequence: it sees keys below its limit.
    const int limit = seq_len - s_q + 1 + (row0 + r) / heads;
    s.p[r * kKeys + key] = first_key + key < limit ? acc[i] * scale_log2 : -INFINITY;
  }
}

// Step 3: online softmax, one warp per kRowsPerWarp rows, each lane two keys.
__device__ void SoftmaxStep(const SplitShared& s) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp * kRowsPerWarp + i;
    float* pr = s.p + r * kKeys;
    const float s0 = pr[lane];
    const float s1 = pr[lane + 32];
    const float m_old = s.m[r];
    const float m_new = fmaxf(m_old, WarpMax(fmaxf(s0, s1)));
    float p0 = 0.0f;
    float p1 = 0.0f;
    float alpha = 1.0f;
    if (m_new != -INFINITY) {  // Otherwise nothing was visible yet: keep zeros.
      p0 = exp2f(s0 - m_new);
      p1 = exp2f(s1 - m_new);
      alpha = exp2f(m_old - m_new);
    }
    const float sum = WarpSum(p0 + p1);
    pr[lane] = p0;
    pr[lane + 32] = p1;
    if (lane == 0) {
      s.l[r] = s.l[r] * alpha + sum;
      s.m[r] = m_new;
      s.alpha[r] = alpha;
    }
  }
}

// Step 4: acc[r][j] (column threadIdx.x + j·kThreads) = acc·alpha + Σ_k p[r][k]·c_k.
__device__ void AccumulateOutput(const SplitShared& s, int width, int latent,
                                 float (&acc)[kRows][kColsPerThread]) {
  const uint16_t* keys = reinterpret_cast<const uint16_t*>(s.keys);
  const int stride = 2 * KeyStrideWords(width);  // in bf16 elements
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float alpha = s.alpha[r];
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) acc[r][j] *= alpha;
  }
  for (int k = 0; k < kKeys; k += 4) {
    float kv[kColsPerThread][4];
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) {
      const int col = threadIdx.x + j * kThreads;
#pragma unroll
      for (int u = 0; u < 4; ++u)
        kv[j][u] = col < latent ? Bf16Bits(keys[(k + u) * stride + col]) : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float4 pr = *reinterpret_cast<const float4*>(s.p + r * kKeys + k);
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        acc[r][j] =
            fmaf(pr.x, kv[j][0],
                 fmaf(pr.y, kv[j][1], fmaf(pr.z, kv[j][2], fmaf(pr.w, kv[j][3], acc[r][j]))));
      }
    }
  }
}

// The query tile of one sequence: rows row0 .. row0 + kRows − 1 of its s_q · heads rows,
// converted to fp32 (rows past the end are zero).
__device__ void LoadQueryTile(const MlaDecodeParams& p, int seq, int row0, int rows_total,
                              int width, float* q) {
  const uint16_t* src = p.q + (static_cast<int64_t>(seq) * rows_total + row0) * width;
  const int valid = min(kRows, rows_total - row0) * width;
  for (int i = threadIdx.x; i < kRows * width; i += kThreads) {
    q[i] = i < valid ? Bf16Bits(src[i]) : 0.0f;
  }
}

// The CUDA-core split kernel's state and steps, walked by WalkPart (mla_decode_split.cuh).
struct SimtSplit {
  const MlaDecodeParams& p;
  SplitShared s;
  MlaSplitTile t;
  int stride;  // words per key row in shared memory
  float acc[kRows][kColsPerThread];

  __device__ void BeginPiece(int seq) { LoadQueryTile(p, seq, t.row0, t.rows_total, t.width, s.q); }

  __device__ void Scores(int first_key, int seq_len) {
    ComputeScores(s, t.width, first_key, t.row0, seq_len, p.q_rows_per_seq, p.num_heads,
                  t.scale_log2);
  }
  __device__ void Softmax() { SoftmaxStep(s); }
  __device__ void Accumulate() { AccumulateOutput(s, t.width, p.kv_lora_rank, acc); }

  // Writes one finished piece (final output or partial slot), then clears the state.
  __device__ void FinishPiece(int seq, int split) {
    const int latent = p.kv_lora_rank;
    const MlaPieceOutput o = MlaPieceOutputOf(p, seq, split);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = t.row0 + r;
      const float l = s.l[r];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int col = threadIdx.x + j * kThreads;
        if (row < t.rows_total && col < latent) {
          const int64_t at = (o.base * t.rows_total + row) * latent + col;
          if (o.final_out) {
            p.out[at] = ToBf16Bits(acc[r][j] * inv);
          } else {
            p.partial_out[at] = acc[r][j] * inv;
          }
        }
        acc[r][j] = 0.0f;
      }
    }
    FinishPieceLse<kRows>(p, o, t.row0, t.rows_total, s.m, s.l);
  }
};

// Two CTAs per multiprocessor, as its shared memory allows: at most 128 registers a thread
// (the wide FP8 loader pushed it to 136, which would have left room for one).
__global__ void __launch_bounds__(kThreads, 2) MlaDecodeSplitKernel(MlaDecodeParams p) {
  unsigned char* smem = DynamicSharedMemory();
  const int width = p.kv_lora_rank + p.rope_dim;
  SimtSplit k{p, CarveShared(smem, width), MlaSplitTileOf(p), KeyStrideWords(width), {}};
  WalkPart<kThreads>(p, k);
}

// One CTA per (query row, sequence, kCombineThreads latent columns): grid.z spreads a row's
// columns over several multiprocessors, since at batch 1 rows × sequences alone leave most
// of them idle. Sequences with one piece were finished by the split kernel; empty ones (no
// piece) get zeros and lse = -inf. The pieces' weights exp(lse_s − lse) are computed once
// per CTA into shared memory (up to kCombineWeights pieces; past that, per column).
__global__ void __launch_bounds__(kCombineThreads) MlaDecodeCombineKernel(MlaDecodeParams p) {
  __shared__ float weights[kCombineWeights];
  const int rows_total = p.q_rows_per_seq * p.num_heads;
  const int row = blockIdx.x;
  const int seq = blockIdx.y;
  const int first = p.split_offsets[seq];
  const int n = p.split_offsets[seq + 1] - first;
  if (n == 1) return;  // Uniform over the CTA, as every branch below.
  const int latent = p.kv_lora_rank;
  const int col = blockIdx.z * kCombineThreads + threadIdx.x;
  const int64_t out_row = static_cast<int64_t>(seq) * rows_total + row;
  const float* lse_s = p.partial_lse + static_cast<int64_t>(first) * rows_total + row;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < n; i += kCombineThreads) {
    m = fmaxf(m, lse_s[static_cast<int64_t>(i) * rows_total]);
  }
  m = BlockMax(m);
  const bool writes_lse = blockIdx.z == 0 && threadIdx.x == 0;
  if (m == -INFINITY) {  // No key anywhere: an empty sequence.
    if (col < latent) p.out[out_row * latent + col] = 0;
    if (writes_lse) p.lse[out_row] = -INFINITY;
    return;
  }
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += kCombineThreads) {
    sum += expf(lse_s[static_cast<int64_t>(i) * rows_total] - m);
  }
  const float lse = m + logf(BlockSum(sum));
  const bool cached = n <= kCombineWeights;
  if (cached) {
    for (int i = threadIdx.x; i < n; i += kCombineThreads) {
      weights[i] = expf(lse_s[static_cast<int64_t>(i) * rows_total] - lse);
    }
    __syncthreads();
  }
  if (col < latent) {
    const float* part_out =
        p.partial_out + (static_cast<int64_t>(first) * rows_total + row) * latent + col;
    const int64_t slot_stride = static_cast<int64_t>(rows_total) * latent;
    float v = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float w = cached ? weights[i] : expf(lse_s[static_cast<int64_t>(i) * rows_total] - lse);
      v = fmaf(w, part_out[i * slot_stride], v);
    }
    p.out[out_row * latent + col] = ToBf16Bits(v);
  }
  if (writes_lse) p.lse[out_row] = lse;
}

// The split kernel that runs for a resolved kernel on a cache of these widths and element
// type: the opt-in ones hand what they cannot take to the next (wgmma → 64 rows → mma,
// ring → mma); the device is asked only about the kernels on that path.
enum class SplitRun { kSimt, kMma, kMmaKSplit, kRing, kRows64, kWgmma };

SplitRun SplitForCache(MlaDecodeKernel kernel, int kv_lora_rank, int rope_dim, bool kv_fp8) {
  switch (kernel) {
    case MlaDecodeKernel::kSimt:
      return SplitRun::kSimt;
    case MlaDecodeKernel::kMmaKSplit:
      return SplitRun::kMmaKSplit;
    case MlaDecodeKernel::kMmaRing:
      return MlaDecodeRingRuns(kv_lora_rank, rope_dim, kv_fp8) ? SplitRun::kRing : SplitRun::kMma;
    case MlaDecodeKernel::kMmaWgmma:
      if (MlaDecodeWgmmaRuns(kv_lora_rank, rope_dim, kv_fp8)) return SplitRun::kWgmma;
      [[fallthrough]];
    case MlaDecodeKernel::kMmaRows64:
      return MlaDecodeRows64Runs(kv_lora_rank, rope_dim, kv_fp8) ? SplitRun::kRows64
                                                                 : SplitRun::kMma;
    case MlaDecodeKernel::kMma:
    case MlaDecodeKernel::kAuto:
      break;
  }
  return SplitRun::kMma;
}

// The split kernel for a call with a tensor-core `kernel` (resolved).
absl::Status LaunchTensorCoreSplit(MlaDecodeKernel kernel, const MlaDecodeParams& p,
                                   CudaStream stream) {
  // The opt-in kernels copy q and the cache in 16-byte pieces: a call whose pointers are
  // not aligned so (never the backend's, cudaMalloc'd) runs the tensor-core kernel.
  // So does a selection, which only the kernels walked by WalkPart gather.
  const bool aligned =
      (reinterpret_cast<uintptr_t>(p.q) | reinterpret_cast<uintptr_t>(p.kv_cache)) % 16 == 0;
  const SplitRun run = aligned && p.selected == nullptr
                           ? SplitForCache(kernel, p.kv_lora_rank, p.rope_dim, p.kv_fp8)
                       : kernel == MlaDecodeKernel::kMmaKSplit ? SplitRun::kMmaKSplit
                                                               : SplitRun::kMma;
  switch (run) {
    case SplitRun::kRing:
      return LaunchMlaDecodeRingSplit(p, stream);
    case SplitRun::kRows64:
      return LaunchMlaDecodeRows64Split(p, stream);
    case SplitRun::kWgmma:
      return LaunchMlaDecodeWgmmaSplit(p, stream);
    case SplitRun::kMma:
      return LaunchMlaDecodeMmaSplit(p, false, stream);
    case SplitRun::kMmaKSplit:
      return LaunchMlaDecodeMmaSplit(p, true, stream);
    case SplitRun::kSimt:
      break;
  }
  return absl::InternalError("MlaDecode: the CUDA-core kernel is not a tensor-core split");
}

// The kernel that resolves from `kernel` for these widths (checked), and the split kernel
// that runs for it on a cache of this element type.
absl::StatusOr<SplitRun> SplitRunOf(int kv_lora_rank, int rope_dim, MlaDecodeKernel kernel,
                                    bool kv_fp8, const char* caller) {
  if (kv_lora_rank < 2 || kv_lora_rank % 2 != 0 || rope_dim < 0 || rope_dim % 2 != 0 ||
      kv_lora_rank > kMlaMaxLatent || rope_dim > kMlaMaxRope) {
    return absl::InvalidArgumentError(absl::StrCat(caller, ": widths out of range"));
  }
  const absl::StatusOr<MlaDecodeKernel> resolved =
      ResolveMlaDecodeKernel(kernel, kv_lora_rank, rope_dim);
  if (!resolved.ok()) return resolved.status();
  return SplitForCache(*resolved, kv_lora_rank, rope_dim, kv_fp8);
}

}  // namespace

absl::StatusOr<int> MlaDecodeCtasPerSm(int kv_lora_rank, int rope_dim, MlaDecodeKernel kernel,
                                       bool kv_fp8) {
  const int width = kv_lora_rank + rope_dim;
  const absl::StatusOr<SplitRun> run =
      SplitRunOf(kv_lora_rank, rope_dim, kernel, kv_fp8, "MlaDecodeCtasPerSm");
  if (!run.ok()) return run.status();
  switch (*run) {
    case SplitRun::kRing:
      return MlaDecodeRingCtasPerSm(kv_lora_rank, rope_dim, kv_fp8);
    case SplitRun::kRows64:
      return MlaDecodeRows64CtasPerSm(kv_lora_rank, rope_dim);
    case SplitRun::kWgmma:
      return MlaDecodeWgmmaCtasPerSm(kv_lora_rank, rope_dim);
    case SplitRun::kMma:
      return MlaDecodeMmaCtasPerSm(width, false);
    case SplitRun::kMmaKSplit:
      return MlaDecodeMmaCtasPerSm(width, true);
    case SplitRun::kSimt:
      break;
  }
  const size_t smem = SplitSharedBytes(width);
  const void* split = reinterpret_cast<const void*>(&MlaDecodeSplitKernel);
  if (absl::Status s = AllowDynamicSharedBytes(split, smem); !s.ok()) return s;
  int ctas = 0;
  MLA_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, MlaDecodeSplitKernel, kThreads, smem));
  return std::max(ctas, 1);
}

absl::StatusOr<int> MlaDecodeRowsPerCta(int kv_lora_rank, int rope_dim, MlaDecodeKernel kernel,
                                        bool kv_fp8) {
  const absl::StatusOr<SplitRun> run =
      SplitRunOf(kv_lora_rank, rope_dim, kernel, kv_fp8, "MlaDecodeRowsPerCta");
  if (!run.ok()) return run.status();
  return *run == SplitRun::kRows64 || *run == SplitRun::kWgmma ? kRows64Rows : kMlaDecodeRowsPerCta;
}

absl::StatusOr<std::string> MlaDecodeSplitName(int kv_lora_rank, int rope_dim,
                                               MlaDecodeKernel kernel, bool kv_fp8) {
  const absl::StatusOr<SplitRun> run =
      SplitRunOf(kv_lora_rank, rope_dim, kernel, kv_fp8, "MlaDecodeSplitName");
  if (!run.ok()) return run.status();
  switch (*run) {
    case SplitRun::kSimt:
      return std::string("simt");
    case SplitRun::kMma:
      return std::string("mma");
    case SplitRun::kMmaKSplit:
      return std::string("mma_ksplit");
    case SplitRun::kRing:
      return std::string("mma_ring");
    case SplitRun::kRows64:
      return std::string("mma_rows64");
    case SplitRun::kWgmma:
      return std::string("mma_wgmma");
  }
  return std::string("?");
}

absl::Status LaunchMlaDecode(const MlaDecodeParams& p, CudaStream stream) {
  if (absl::Status s = ValidateMlaDecodeParams(p); !s.ok()) return s;
  if (p.batch == 0) return absl::OkStatus();
  if (p.num_parts > 65535 || p.batch > 65535) {
    return absl::InvalidArgumentError("MlaDecode: num_parts and batch must be <= 65535");
  }
  const absl::StatusOr<MlaDecodeKernel> kernel =
      ResolveMlaDecodeKernel(p.kernel, p.kv_lora_rank, p.rope_dim);
  if (!kernel.ok()) return kernel.status();
  const int rows_total = p.q_rows_per_seq * p.num_heads;
  if (*kernel != MlaDecodeKernel::kSimt) {
    // It moves q and out in 32-bit pairs and partial_out in 64-bit ones.
    if (reinterpret_cast<uintptr_t>(p.q) % 4 != 0 || reinterpret_cast<uintptr_t>(p.out) % 4 != 0 ||
        reinterpret_cast<uintptr_t>(p.partial_out) % 8 != 0) {
      return absl::InvalidArgumentError(
          "MlaDecode: the tensor-core kernel needs q and out 4-byte aligned and partial_out "
          "8-byte aligned");
    }
    if (absl::Status s = LaunchTensorCoreSplit(*kernel, p, stream); !s.ok()) return s;
  } else {
    const size_t smem = SplitSharedBytes(p.kv_lora_rank + p.rope_dim);
    const void* split = reinterpret_cast<const void*>(&MlaDecodeSplitKernel);
    if (absl::Status s = AllowDynamicSharedBytes(split, smem); !s.ok()) return s;
    const dim3 grid((rows_total + kRows - 1) / kRows, p.num_parts);
    if (absl::Status s = LaunchKernel("MlaDecodeSplitKernel", MlaDecodeSplitKernel, grid,
                                      dim3(kThreads), smem, stream, p);
        !s.ok()) {
      return s;
    }
  }
  const int column_chunks = (p.kv_lora_rank + kCombineThreads - 1) / kCombineThreads;
  return LaunchKernel("MlaDecodeCombineKernel", MlaDecodeCombineKernel,
                      dim3(rows_total, p.batch, column_chunks), dim3(kCombineThreads), 0, stream,
                      p);
}

}  // namespace mla::cuda
