// The 64-row variant of the tensor-core MLA decode split kernel
// (MlaDecodeKernel::kMmaRows64, opt-in until a device has measured it): same plan, partial
// slots, combine and outputs as the other split kernels, planned with 64 query rows per CTA
// (MlaDecodeRowsPerCta).
//
// Why: with 16 query rows per CTA, 128 heads are 8 CTAs that each read every cache block,
// and each does 16 rows' math per 72 KiB it loads; on an H200 the tensor-core kernel reached
// ~100 TFLOP/s there (~10% of the bf16 peak, docs/BENCHMARKS.md), bound by the same
// per-block loop as at 16 heads. Here a CTA of 8 warps takes 64 rows (FlashMLA's tile), so
// a block is read once per 64 rows and each load feeds four times the math.
//
// Warp w takes the 16 rows of row group w mod 4 and half w / 4:
//   1. scores for its rows and the block's keys 32·half .. 32·half + 31 (4 n-tiles) over
//      every k-step, A (q) and B (keys) through ldmatrix.x4 from swizzled rows;
//   2. the row's max over its 32 keys, exchanged with the other half's warp through shared
//      memory (a 64-thread barrier per row group), so both hold the same running max;
//   3. p = exp2(s − max) into shared memory as bf16, each warp its 32 keys (second
//      barrier), and its own partial row sum in registers;
//   4. O = O·alpha + P·V for its rows and the latent's columns 256·half .. 256·half + 255
//      (32 n-tiles, 128 accumulators per thread), V through ldmatrix.x4.trans.
// At a piece's end the two halves add their row sums (third barrier), write their columns
// and the half-0 warp the lse.
//
// Shared memory (DeepSeek's 576): the q tile (72 KiB, loaded when a piece starts), two
// blocks of keys (144 KiB: the next block's copies in flight while the current one is
// computed on), p (9 KiB): 225.5 KiB, one CTA per SM. bf16 caches and rows of at most
// kMlaRingMaxWidth values; other calls run kMma.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_ring.cuh"
#include "engine/backend/cuda/kernels/mla_decode_rows64.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"

namespace mla::cuda {
namespace {

using rows64::kThreads;

__global__ void __launch_bounds__(kThreads, 1) MlaDecodeRows64Kernel(MlaDecodeParams p) {
  unsigned char* smem = DynamicSharedMemory();
  rows64::Rows64Body<false>(p, smem);
}

size_t Rows64Smem(int kv_lora_rank, int rope_dim) {
  return static_cast<size_t>(Rows64SharedBytes(kv_lora_rank + rope_dim));
}

}  // namespace

bool MlaDecodeRows64Runs(int kv_lora_rank, int rope_dim, bool kv_fp8) {
  return !kv_fp8 && MlaDecodeRingSupports(kv_lora_rank, rope_dim) &&
         CurrentDeviceAllowsSharedBytes(Rows64Smem(kv_lora_rank, rope_dim));
}

absl::StatusOr<int> MlaDecodeRows64CtasPerSm(int kv_lora_rank, int rope_dim) {
  return rows64::CtasPerSm(reinterpret_cast<const void*>(&MlaDecodeRows64Kernel),
                           Rows64Smem(kv_lora_rank, rope_dim));
}

absl::Status LaunchMlaDecodeRows64Split(const MlaDecodeParams& p, CudaStream stream) {
  return rows64::Launch(&MlaDecodeRows64Kernel, Rows64Smem(p.kv_lora_rank, p.rope_dim), p, stream,
                        "MlaDecodeRows64Kernel");
}

}  // namespace mla::cuda
