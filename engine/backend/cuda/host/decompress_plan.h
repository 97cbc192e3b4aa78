// How CudaBackend's decompressed attention cuts a sequence's keys into chunks (plain C++,
// tested on any machine).
//
// Up-projecting every key a long prefill chunk sees at once would need
// 4 · keys · heads · (nope + v) bytes: 16 GiB for DeepSeek's 128 heads at 128K keys. The
// backend instead up-projects `keys_per_chunk` keys at a time into one fp32 buffer (plus
// their gathered fp32 latents, the GEMM's input) and folds each chunk into a per-row
// online softmax, so the scratch stays under kMaxDecompressedChunkBytes (backend.h),
// which the device memory plan counts.
#ifndef MLA_ENGINE_BACKEND_CUDA_HOST_DECOMPRESS_PLAN_H_
#define MLA_ENGINE_BACKEND_CUDA_HOST_DECOMPRESS_PLAN_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace mla::cuda {

struct DecompressChunking {
  int64_t keys_per_chunk = 0;
  int64_t latent_bytes = 0;  // fp32 [keys_per_chunk, L]: the gathered latents
  int64_t kv_bytes = 0;      // fp32 [keys_per_chunk, heads · (nope + v)]: k_nope | v
};

// The largest chunk whose two buffers fit `budget_bytes`, rounded down to a multiple of 64
// keys (one cache block of the decode kernel, and a GEMM row count cuBLASLt tiles well)
// when at least 64 fit. INVALID_ARGUMENT for non-positive dimensions, or when not even one
// key fits the budget.
absl::StatusOr<DecompressChunking> PlanDecompressChunks(int heads, int nope, int v, int latent,
                                                        int64_t budget_bytes);

// The per-row online-softmax state of a sequence's `rows` query rows: (m, l) and the
// v-wide accumulator per head, fp32.
int64_t DecompressStateBytes(int64_t rows, int heads, int v);

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_HOST_DECOMPRESS_PLAN_H_
