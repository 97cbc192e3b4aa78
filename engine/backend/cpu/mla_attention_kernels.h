// Per-instruction-set inner loops of MlaAttention (mla_attention.h). Internal to the CPU
// backend. The driver in mla_attention.cc converts one block of keys to fp32 at a time and
// hands it, a few query vectors (heads × rows) at a time, to AttendTile, so that every
// key is loaded and converted once per work item and then reused by all heads.
#ifndef MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_KERNELS_H_
#define MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_KERNELS_H_

#include <cstdint>

#include "engine/common/bf16.h"

namespace mla::cpu::internal {

// Keys converted per step. 48 × 576 × 4 B = 108 KiB stays in L2 while every tile of
// query vectors streams over it.
inline constexpr int kMlaKeyBlock = 48;
// Query vectors (head, row pairs) per AttendTile call.
inline constexpr int kMlaTileVectors = 4;

// Row stride of the converted keys: L + R rounded up to whole 8-float vectors.
inline int64_t MlaKeyStride(int64_t width) { return (width + 7) / 8 * 8; }

struct MlaTileArgs {
  const float* q = nullptr;  // [nqv, width], rows `width` apart
  int nqv = 0;               // 1 .. kMlaTileVectors
  const float* keys = nullptr;  // [nk, ldk] fp32; columns [width, ldk) are zero
  int64_t ldk = 0;
  int nk = 0;                   // keys in the block, 1 .. kMlaKeyBlock
  const int* nvalid = nullptr;  // [nqv] query vector t sees keys [0, nvalid[t])
  int latent = 0;               // L: the value width (first L columns of each key)
  int width = 0;                // L + R
  float scale = 0.0f;
  float* m = nullptr;       // [nqv] running max of the scores seen so far (-inf at first)
  float* l = nullptr;       // [nqv] running Σ exp(score - m)
  float* o = nullptr;       // [nqv, L] running Σ exp(score - m)·c, rows L apart
  float* scores = nullptr;  // scratch [kMlaTileVectors, kMlaKeyBlock]
};

struct MlaKernelOps {
  // dst[k·ldk + d] = rows[k][d] as fp32 for k < nk, d < width; zero for d in [width, ldk).
  void (*convert_keys)(const bf16_t* const* rows, int nk, int width, int64_t ldk,
                       float* dst);
  // One online-softmax step of args.nqv query vectors over one converted key block.
  void (*attend_tile)(const MlaTileArgs& args);
};

const MlaKernelOps& MlaKernelOpsScalar();
// Null on targets without the AVX2 variant.
const MlaKernelOps* MlaKernelOpsAvx2();

}  // namespace mla::cpu::internal

#endif  // MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_KERNELS_H_
