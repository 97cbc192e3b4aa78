// The wgmma build of the 64-row MLA decode split kernel (MlaDecodeKernel::kMmaWgmma,
// opt-in until a device has run it): mla_decode_rows64.cu's kernel, the same warps, walk,
// softmax and outputs (mla_decode_rows64.cuh), with both products as wgmma instead of
// mma.sync: each warpgroup (the 4 warps of one half) computes the scores of its 32 keys
// for all 64 rows (m64n32k16 × the row's k-steps, q and the keys read by descriptor) and
// its 256 latent columns of the output (m64n256k16 × 4, p from registers, V by
// descriptor), instead of each warp reading its own operands with ldmatrix (4× the
// shared-memory reads; the 128-head case is bound by the math and these reads,
// docs/BENCHMARKS.md). The q tile and key blocks are stored in PTX's canonical 128-byte
// swizzle (mla_decode_mma_rule.h), 1024-byte aligned.
//
// wgmma exists only on sm_90a: this file is its own CMake target built for sm_90a alone,
// and the host runs it only where its image loads (an H100 / H200) with DeepSeek's widths
// (L = 512: 256 columns per half, one n256 tile; R = 64) and a bf16 cache; other calls
// run kMmaRows64's rules.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/mla_decode_ring.cuh"
#include "engine/backend/cuda/kernels/mla_decode_rows64.cuh"
#include "engine/backend/cuda/kernels/ptx_ops.cuh"
#include "engine/backend/cuda/kernels/wgmma_ops.cuh"

// Built for anything but sm_90a, the wgmma helpers would compile to traps that a device
// could load: refuse instead (CMakeLists.txt builds this file for sm_90a alone).
#if defined(__CUDA_ARCH__) && !MLA_HAVE_WGMMA
#error "mla_decode_rows64_wgmma.cu is built for sm_90a only"
#endif

namespace mla::cuda {
namespace {

using rows64::kThreads;

__global__ void __launch_bounds__(kThreads, 1) MlaDecodeRows64WgmmaKernel(MlaDecodeParams p) {
  unsigned char* smem = DynamicSharedMemory();
  rows64::Rows64Body<true>(p, smem);
}

size_t WgmmaSmem(int kv_lora_rank, int rope_dim) {
  return static_cast<size_t>(Rows64WgmmaSharedBytes(kv_lora_rank + rope_dim));
}

}  // namespace

bool MlaDecodeWgmmaRuns(int kv_lora_rank, int rope_dim, bool kv_fp8) {
  return !kv_fp8 && MlaDecodeWgmmaSupports(kv_lora_rank, rope_dim) &&
         CurrentDeviceRuns(reinterpret_cast<const void*>(&MlaDecodeRows64WgmmaKernel)) &&
         CurrentDeviceAllowsSharedBytes(WgmmaSmem(kv_lora_rank, rope_dim));
}

absl::StatusOr<int> MlaDecodeWgmmaCtasPerSm(int kv_lora_rank, int rope_dim) {
  return rows64::CtasPerSm(reinterpret_cast<const void*>(&MlaDecodeRows64WgmmaKernel),
                           WgmmaSmem(kv_lora_rank, rope_dim));
}

absl::Status LaunchMlaDecodeWgmmaSplit(const MlaDecodeParams& p, CudaStream stream) {
  return rows64::Launch(&MlaDecodeRows64WgmmaKernel, WgmmaSmem(p.kv_lora_rank, p.rope_dim), p,
                        stream, "MlaDecodeRows64WgmmaKernel");
}

}  // namespace mla::cuda
