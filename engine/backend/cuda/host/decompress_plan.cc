#include "engine/backend/cuda/host/decompress_plan.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mla::cuda {

absl::StatusOr<DecompressChunking> PlanDecompressChunks(int heads, int nope, int v, int latent,
                                                        int64_t budget_bytes) {
  if (heads < 1 || nope < 1 || v < 1 || latent < 1) {
    return absl::InvalidArgumentError(absl::StrCat("decompress plan: heads ", heads, ", nope ",
                                                   nope, ", v ", v, " and latent ", latent,
                                                   " must be >= 1"));
  }
  const int64_t per_key = 4 * (int64_t{heads} * (nope + v) + latent);
  int64_t keys = budget_bytes / per_key;
  if (keys < 1) {
    return absl::InvalidArgumentError(absl::StrCat("decompress plan: one key needs ", per_key,
                                                   " bytes, over the budget of ", budget_bytes));
  }
  if (keys >= 64) keys -= keys % 64;
  DecompressChunking c;
  c.keys_per_chunk = keys;
  c.latent_bytes = 4 * keys * latent;
  c.kv_bytes = 4 * keys * heads * (nope + v);
  return c;
}

int64_t DecompressStateBytes(int64_t rows, int heads, int v) {
  return 4 * rows * heads * (int64_t{v} + 2);
}

}  // namespace mla::cuda
