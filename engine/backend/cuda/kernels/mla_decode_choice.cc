// Which MLA decode split kernel runs (mla_decode.h): host logic, tested on any machine.
#include <cstdint>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/kv_cache/cache_layout.h"

namespace mla::cuda {

bool MlaDecodeMmaSupports(int kv_lora_rank, int rope_dim) {
  // k-steps of 16 over the whole key row, n-tiles of 8 latent columns for p·v.
  return kv_lora_rank >= 8 && kv_lora_rank <= kMlaMaxLatent && kv_lora_rank % 8 == 0 &&
         rope_dim >= 0 && rope_dim <= kMlaMaxRope && (kv_lora_rank + rope_dim) % 16 == 0;
}

bool MlaDecodeRingSupports(int kv_lora_rank, int rope_dim) {
  return MlaDecodeMmaSupports(kv_lora_rank, rope_dim) &&
         kv_lora_rank + rope_dim <= kMlaRingMaxWidth;
}

bool MlaDecodeRingTakesCache(int kv_lora_rank, int rope_dim, bool kv_fp8) {
  if (!MlaDecodeRingSupports(kv_lora_rank, rope_dim)) return false;
  if (!kv_fp8) return true;
  // DeepSeek's FP8 row: [L e4m3 codes][⌈L/128⌉ fp32 scales][R bf16 k_pe].
  const int64_t rope_at = kv_lora_rank + 4 * Fp8ScaleGroups(kv_lora_rank);
  const int64_t row_bytes = rope_at + 2 * int64_t{rope_dim};
  return kv_lora_rank % 16 == 0 && rope_dim % 8 == 0 && row_bytes % 16 == 0 && rope_at % 16 == 0;
}

bool MlaDecodeWgmmaSupports(int kv_lora_rank, int rope_dim) {
  return kv_lora_rank == 512 && rope_dim == 64;
}

absl::StatusOr<MlaDecodeKernel> ResolveMlaDecodeKernel(MlaDecodeKernel wanted, int kv_lora_rank,
                                                       int rope_dim, const char* environment) {
  const bool mma_fits = MlaDecodeMmaSupports(kv_lora_rank, rope_dim);
  switch (wanted) {
    case MlaDecodeKernel::kSimt:
      return MlaDecodeKernel::kSimt;
    case MlaDecodeKernel::kMma:
    case MlaDecodeKernel::kMmaKSplit:
      if (!mma_fits) {
        return absl::InvalidArgumentError(
            absl::StrCat("MlaDecode: the tensor-core kernel needs kv_lora_rank a multiple of 8 and "
                         "kv_lora_rank + rope_dim a multiple of 16, got ",
                         kv_lora_rank, " + ", rope_dim));
      }
      return wanted;
    case MlaDecodeKernel::kMmaRing:
    case MlaDecodeKernel::kMmaRows64:
      if (!MlaDecodeRingSupports(kv_lora_rank, rope_dim)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "MlaDecode: the ring and 64-row kernels need kv_lora_rank a multiple of 8 and "
            "kv_lora_rank + rope_dim a multiple of 16 and at most ",
            kMlaRingMaxWidth, ", got ", kv_lora_rank, " + ", rope_dim));
      }
      return wanted;
    case MlaDecodeKernel::kMmaWgmma:
      if (!MlaDecodeWgmmaSupports(kv_lora_rank, rope_dim)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "MlaDecode: the wgmma kernel takes kv_lora_rank 512 and rope_dim 64 only, got ",
            kv_lora_rank, " + ", rope_dim));
      }
      return wanted;
    case MlaDecodeKernel::kAuto:
      break;
  }
  const absl::string_view env = environment == nullptr ? "" : environment;
  // The tensor-core kernel where it takes the widths: measured 2.3x the CUDA-core one's
  // bandwidth on an H200 (docs/BENCHMARKS.md); "simt" forces the CUDA-core one.
  if (env == "simt") return MlaDecodeKernel::kSimt;
  if (env.empty() || env == "mma") return mma_fits ? MlaDecodeKernel::kMma : MlaDecodeKernel::kSimt;
  if (env == "mma_ksplit") return mma_fits ? MlaDecodeKernel::kMmaKSplit : MlaDecodeKernel::kSimt;
  if (env == "mma_wgmma" && MlaDecodeWgmmaSupports(kv_lora_rank, rope_dim)) {
    return MlaDecodeKernel::kMmaWgmma;
  }
  if (env == "mma_ring" || env == "mma_rows64" || env == "mma_wgmma") {
    if (MlaDecodeRingSupports(kv_lora_rank, rope_dim)) {
      return env == "mma_ring" ? MlaDecodeKernel::kMmaRing : MlaDecodeKernel::kMmaRows64;
    }
    return mma_fits ? MlaDecodeKernel::kMma : MlaDecodeKernel::kSimt;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("MLA_CUDA_DECODE_KERNEL=", env,
                   ": expected simt, mma, mma_ksplit, mma_ring, mma_rows64 or mma_wgmma"));
}

absl::StatusOr<MlaDecodeKernel> ResolveMlaDecodeKernel(MlaDecodeKernel wanted, int kv_lora_rank,
                                                       int rope_dim) {
  static const char* const environment = std::getenv("MLA_CUDA_DECODE_KERNEL");
  return ResolveMlaDecodeKernel(wanted, kv_lora_rank, rope_dim, environment);
}

}  // namespace mla::cuda
