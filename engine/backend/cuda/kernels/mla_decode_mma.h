// The tensor-core split kernels of the MLA decode (mla_decode_mma.cu, mla_decode_ring.cu,
// mla_decode_rows64.cu, mla_decode_rows64_wgmma.cu), for mla_decode.cu's dispatch
// (LaunchMlaDecode, MlaDecodeCtasPerSm, MlaDecodeRowsPerCta); callers use those, the GPU
// tests also the Runs predicates.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/cuda/kernels/cuda_stream.h"
#include "engine/backend/cuda/kernels/mla_decode.h"

namespace mla::cuda {

// The split kernel only (the combine kernel follows it in LaunchMlaDecode), the k-split
// variant when `ksplit`. `p` is validated, and MlaDecodeMmaSupports holds for its widths.
absl::Status LaunchMlaDecodeMmaSplit(const MlaDecodeParams& p, bool ksplit, CudaStream stream);

// CTAs of that kernel one multiprocessor of the current device holds for rows of `width`.
absl::StatusOr<int> MlaDecodeMmaCtasPerSm(int width, bool ksplit);

// The ring kernel: whether it runs for a cache of these widths and element type on the
// current device (MlaDecodeRingTakesCache, and the device allows its shared memory); its
// launch (`p` validated, q and the cache 16-byte aligned) and its CTAs per SM.
bool MlaDecodeRingRuns(int kv_lora_rank, int rope_dim, bool kv_fp8);
absl::Status LaunchMlaDecodeRingSplit(const MlaDecodeParams& p, CudaStream stream);
absl::StatusOr<int> MlaDecodeRingCtasPerSm(int kv_lora_rank, int rope_dim, bool kv_fp8);

// The 64-row kernel, the same way (bf16 caches only).
bool MlaDecodeRows64Runs(int kv_lora_rank, int rope_dim, bool kv_fp8);
absl::Status LaunchMlaDecodeRows64Split(const MlaDecodeParams& p, CudaStream stream);
absl::StatusOr<int> MlaDecodeRows64CtasPerSm(int kv_lora_rank, int rope_dim);

// Its wgmma build (mla_decode_rows64_wgmma.cu: sm_90a), the same way; it also needs an
// image for the device.
bool MlaDecodeWgmmaRuns(int kv_lora_rank, int rope_dim, bool kv_fp8);
absl::Status LaunchMlaDecodeWgmmaSplit(const MlaDecodeParams& p, CudaStream stream);
absl::StatusOr<int> MlaDecodeWgmmaCtasPerSm(int kv_lora_rank, int rope_dim);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_H_
