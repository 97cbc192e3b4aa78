// Portable MLA inner loops: the fallback on CPUs without AVX2 and the specification the
// SIMD variants follow (same blocking, same online-softmax update).
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/backend/cpu/mla_attention_kernels.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::cpu::internal {
namespace {

// Block layout: keys row-major, [kMlaKeyBlock, width].
int64_t BlockFloatsScalar(int width, int latent) {
  return (int64_t{kMlaKeyBlock} * width + 15) / 16 * 16;
}

void ConvertKeysScalar(const uint8_t* const* rows, int nk, int width, int latent, float* block) {
  for (int k = 0; k < nk; ++k) {
    DecodeCacheRow(CacheDType::kBF16, latent, width - latent, rows[k], block + k * width,
                   block + k * width + latent);
  }
}

void ConvertKeysFp8Scalar(const uint8_t* const* rows, int nk, int width, int latent, float* block) {
  for (int k = 0; k < nk; ++k) {
    DecodeCacheRow(CacheDType::kFp8E4M3, latent, width - latent, rows[k], block + k * width,
                   block + k * width + latent);
  }
}

void AttendTileScalar(const MlaTileArgs& a) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float corr[kMlaTileVectors];
  for (int t = 0; t < a.nqv; ++t) {
    const float* q = a.q + t * a.width;
    float* p = a.scores + t * kMlaKeyBlock;
    const int nv = a.nvalid[t];
    float block_max = kNegInf;
    for (int k = 0; k < nv; ++k) {
      const float* key = a.block + k * a.width;
      float s = 0.0f;
      for (int d = 0; d < a.width; ++d) s += q[d] * key[d];
      p[k] = s * a.scale;
      block_max = std::max(block_max, p[k]);
    }
    if (nv == 0) {
      corr[t] = 1.0f;
      continue;
    }
    const float m_new = std::max(a.m[t], block_max);
    corr[t] = std::exp(a.m[t] - m_new);  // 0 on the first block (m = -inf)
    float sum = 0.0f;
    for (int k = 0; k < nv; ++k) {
      p[k] = std::exp(p[k] - m_new);
      sum += p[k];
    }
    a.l[t] = a.l[t] * corr[t] + sum;
    a.m[t] = m_new;
  }
  for (int t = 0; t < a.nqv; ++t) {
    float* o = a.o + t * a.latent;
    const float* p = a.scores + t * kMlaKeyBlock;
    for (int d = 0; d < a.latent; ++d) o[d] *= corr[t];
    for (int k = 0; k < a.nvalid[t]; ++k) {
      const float* value = a.block + k * a.width;
      for (int d = 0; d < a.latent; ++d) o[d] += p[k] * value[d];
    }
  }
}

constexpr MlaKernelOps kScalarOps = {BlockFloatsScalar, ConvertKeysScalar, ConvertKeysFp8Scalar,
                                     AttendTileScalar, nullptr};

}  // namespace

const MlaKernelOps& MlaKernelOpsScalar() { return kScalarOps; }

}  // namespace mla::cpu::internal
