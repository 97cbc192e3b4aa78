// Small device helpers shared by the kernels: bf16 bit conversions (bf16 is kept as its
// uint16_t bits in every params struct, see engine/common/bf16.h) and reductions.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_DEVICE_UTILS_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_DEVICE_UTILS_CUH_

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace mla::cuda {

__device__ __forceinline__ float Bf16Bits(uint16_t v) {
  return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

// The low and high bf16 of a 32-bit word (little endian: the element at the lower address
// is the low half).
__device__ __forceinline__ float Bf16Lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float Bf16Hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// Round to nearest even, as FloatToBf16 does on the host.
__device__ __forceinline__ uint16_t ToBf16Bits(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// ToBf16Bits in integer arithmetic (the same bits, quiet NaN as the host's FloatToBf16),
// for values stored byte by byte: ptxas (CUDA 13.0, sm_90) compiles a byte store of the
// 16-bit result of cvt.rn.bf16.f32 into a float-to-integer conversion (F2I.U8.F16) of it,
// which wrote 0 or 1 for every low byte of an FP8 cache row's k_pe.
__device__ __forceinline__ uint32_t Bf16BitsAsInteger(float f) {
  const uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits >> 16) | 0x40u;
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  static constexpr float kIdentity = -INFINITY;
};

// `Op` over a warp's 32 lanes, returned to every lane.
template <typename Op>
__device__ __forceinline__ float WarpReduce(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = Op()(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) { return WarpReduce<SumOp>(v); }
__device__ __forceinline__ float WarpMax(float v) { return WarpReduce<MaxOp>(v); }

// `Op` over the whole CTA, returned to every thread. Every thread must call it; it may be
// called again right away (the trailing barrier protects the scratch).
template <typename Op>
__device__ __forceinline__ float BlockReduce(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  v = WarpReduce<Op>(v);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) >> 5;
    float t = lane < warps ? partial[lane] : Op::kIdentity;
    t = WarpReduce<Op>(t);
    if (lane == 0) total = t;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();
  return result;
}

__device__ __forceinline__ float BlockSum(float v) { return BlockReduce<SumOp>(v); }
__device__ __forceinline__ float BlockMax(float v) { return BlockReduce<MaxOp>(v); }

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_DEVICE_UTILS_CUH_
