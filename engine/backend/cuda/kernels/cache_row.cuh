// Device reads and writes of one token's latent-cache row in either element layout,
// bit for bit what the host's engine/kv_cache/cache_row.h does:
//   bf16: [c: L × bf16][k_pe: R × bf16]
//   fp8:  [c: L × e4m3][⌈L/128⌉ × fp32 scales][k_pe: R × bf16]   (DeepSeek's FP8 layout)
// FP8 rows may start at any byte (their size need not be even), so their scales and k_pe
// are read byte by byte; bf16 rows are read as 16-bit words.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_CACHE_ROW_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_CACHE_ROW_CUH_

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "engine/backend/cuda/kernels/device_utils.cuh"
#include "engine/kv_cache/cache_layout.h"

namespace mla::cuda {

inline constexpr int kCacheFp8Group = static_cast<int>(kFp8ScaleGroup);

__host__ __device__ __forceinline__ int CacheFp8Groups(int latent) {
  return (latent + kCacheFp8Group - 1) / kCacheFp8Group;
}

// Bytes of one row; CacheLayout::bytes_per_token_per_layer on the host.
__host__ __device__ __forceinline__ int64_t CacheRowBytesOf(bool fp8, int latent, int rope) {
  return fp8 ? latent + 4 * int64_t{CacheFp8Groups(latent)} + 2 * int64_t{rope}
             : 2 * (int64_t{latent} + rope);
}

__device__ __forceinline__ float Fp8E4M3Value(uint8_t code) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E4M3);
  return __half2float(__half(h));
}

__device__ __forceinline__ float LoadF32Bytes(const uint8_t* p) {
  const uint32_t bits = uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
                        (uint32_t{p[3]} << 24);
  return __uint_as_float(bits);
}

__device__ __forceinline__ float LoadBf16Bytes(const uint8_t* p) {
  return Bf16Bits(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}

// One row of a cache layer whose rows are `CacheRowBytes(fp8, latent, rope)` bytes.
struct CacheRowView {
  const uint8_t* row;
  bool fp8;
  int latent;

  __device__ float Latent(int i) const {
    if (!fp8) return Bf16Bits(reinterpret_cast<const uint16_t*>(row)[i]);
    return Fp8E4M3Value(row[i]) * LoadF32Bytes(row + latent + 4 * (i / kCacheFp8Group));
  }
  __device__ float Rope(int i) const {
    if (!fp8) return Bf16Bits(reinterpret_cast<const uint16_t*>(row)[latent + i]);
    return LoadBf16Bytes(row + latent + 4 * CacheFp8Groups(latent) + 2 * i);
  }
  // Element i of [c | k_pe].
  __device__ float At(int i) const { return i < latent ? Latent(i) : Rope(i - latent); }
};

__device__ __forceinline__ CacheRowView CacheRowAt(const void* layer, bool fp8, int latent,
                                                   int rope, int64_t slot) {
  return {static_cast<const uint8_t*>(layer) + slot * CacheRowBytesOf(fp8, latent, rope), fp8,
          latent};
}

// Quantizes one FP8 group of n values with one warp (every lane calls it): the scale is
// amax / 448 (the smallest normal float at least; NaN when the group holds a NaN or an
// infinity, and then the codes are 0), each code e4m3(x / scale) rounded to nearest even
// and saturated at ±448.
__device__ __forceinline__ void QuantizeFp8GroupWarp(const float* x, int n, uint8_t* codes,
                                                     uint8_t* scale_bytes) {
  const int lane = threadIdx.x & 31;
  float amax = 0.0f;
  bool bad = false;
  for (int i = lane; i < n; i += 32) {
    const float a = fabsf(x[i]);
    bad = bad || !isfinite(a);
    amax = a > amax ? a : amax;
  }
  bad = __any_sync(0xffffffffu, bad);
  amax = WarpMax(bad ? 0.0f : amax);
  float scale = amax / 448.0f;
  scale = bad ? __int_as_float(0x7fc00000) : (scale < FLT_MIN ? FLT_MIN : scale);
  for (int i = lane; i < n; i += 32) {
    codes[i] = bad ? uint8_t{0}
                   : static_cast<uint8_t>(__nv_cvt_float_to_fp8(x[i] / scale, __NV_SATFINITE,
                                                                __NV_E4M3));
  }
  if (lane == 0) {
    const uint32_t bits = __float_as_uint(scale);
    for (int b = 0; b < 4; ++b) scale_bytes[b] = static_cast<uint8_t>(bits >> (8 * b));
  }
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_CACHE_ROW_CUH_
