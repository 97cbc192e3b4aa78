// wgmma (sm_90a) for the 64-row MLA decode kernel's wgmma build (mla_decode_rows64.cuh,
// mla_decode_rows64_wgmma.cu): the scores of a warpgroup's 32 keys for all 64 rows
// (m64n32k16, A = the q tile and B = the keys from shared memory by descriptor) and its
// half of the output (m64n256k16, A = p from registers, B = V by descriptor). The
// accumulators of warp w of the warpgroup are rows 16w .. 16w + 15 in mma.sync's C layout
// per n-tile of 8 columns (PTX's wgmma D fragments), so they land where the mma.sync
// build's do. The tiles' layout and the descriptors: mla_decode_mma_rule.h (Sw128ChunkWord,
// WgmmaDescriptor), checked against PTX's canonical layouts by a CPU test.
// The instructions (wgmma_ops.cuh) compile only for sm_90a; mla_decode_rows64_wgmma.cu
// refuses to build for anything else (the mma.sync build includes this header but never
// calls them).
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_WGMMA_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_WGMMA_CUH_

#include <cstdint>

#include "engine/backend/cuda/kernels/mla_decode_mma.cuh"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "engine/backend/cuda/kernels/wgmma_ops.cuh"

namespace mla::cuda {

// k-steps of a 576-value row (L = 512, R = 64: the widths the wgmma build takes).
inline constexpr int kWgmmaKSteps = 576 / 16;

__device__ __forceinline__ unsigned SharedAddress(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The scores of keys 32·half .. 32·half + 31 of a block (a swizzled 64-row tile) for the 64
// rows of the q tile, over the row's kWgmmaKSteps k-steps; every warp of the warpgroup calls it and
// gets its 16 rows in c (n-tile j: keys 32·half + 8j ..).
__device__ __forceinline__ void WgmmaScores(const uint32_t* q, const uint32_t* keys, int half,
                                            float (&c)[4][4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int i = 0; i < 4; ++i) c[j][i] = 0.0f;
  }
  const unsigned q_at = SharedAddress(q);
  const unsigned k_at = SharedAddress(keys);
  PinRegisters(c);
  // The wgmma build takes DeepSeek's 576 values only (MlaDecodeWgmmaSupports): a fixed
  // count, unrolled, so that no copies of c between loop paths sit between the wgmmas.
#pragma unroll
  for (int ks = 0; ks < kWgmmaKSteps; ++ks) {
    const uint64_t a =
        WgmmaDescriptor(q_at + Sw128KStepBytes(ks), kWgmmaKMajorLbo, kWgmmaKMajorSbo);
    const uint64_t b =
        WgmmaDescriptor(k_at + WgmmaKeysStartBytes(half, ks), kWgmmaKMajorLbo, kWgmmaKMajorSbo);
    // Each k-step's descriptors are new registers: the fence (an arrive; it does not wait
    // for the wgmmas in flight) lets the next wgmma read them. ptxas would insert it.
    WgmmaFence();
    WgmmaM64N32K16(c, a, b);
  }
  WgmmaCommitAndWait();
  PinRegisters(c);
}

// acc += P · V for this warpgroup's 256 latent columns (256·half ..) over a block's 64 keys:
// P's A fragments of this warp's 16 rows from `p_rows` (p_stride words per row), V the
// block's first 512 values of each key.
__device__ __forceinline__ void WgmmaAccumulate(const uint32_t* p_rows, int p_stride,
                                                const uint32_t* keys, int half, int lane,
                                                float (&acc)[32][4]) {
  uint32_t a[4][4];
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) LoadPFragment(p_rows, p_stride, lane, ks, a[ks]);
  const unsigned v_at = SharedAddress(keys);
  PinRegisters(acc);  // acc was rescaled and a loaded by ordinary instructions.
  PinRegisters(a);
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    const uint64_t b =
        WgmmaDescriptor(v_at + WgmmaVStartBytes(half, ks), kWgmmaNMajorLbo, kWgmmaNMajorSbo);
    WgmmaFence();  // As in WgmmaScores: the descriptor is a new register.
    WgmmaM64N256K16RegA(acc, a[ks], b);
  }
  WgmmaCommitAndWait();
  PinRegisters(acc);
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_WGMMA_CUH_
