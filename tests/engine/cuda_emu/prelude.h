// Included (-include) before every CUDA source that the emulator compiles as C++: the CUDA
// headers' host side, then what device code uses that only nvcc defines (thread
// coordinates, barriers, shuffles, intrinsics), mapped onto emu_runtime.h. The kernels'
// inline PTX lives in engine/backend/cuda/kernels/ptx_ops.cuh and wgmma_ops.cuh, which
// this target's include path replaces with shadow/ (the emulated instructions).
#ifndef MLA_TESTS_ENGINE_CUDA_EMU_PRELUDE_H_
#define MLA_TESTS_ENGINE_CUDA_EMU_PRELUDE_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tests/engine/cuda_emu/emu_runtime.h"

// Static __shared__ variables are function-local statics: one per kernel, shared by the
// CTA's threads (fibers of one OS thread; CTAs run one at a time).
#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)

#define threadIdx (::mla::cuda::emu::ThreadIdx())
#define blockIdx (::mla::cuda::emu::BlockIdx())
#define blockDim (::mla::cuda::emu::BlockDim())
#define gridDim (::mla::cuda::emu::GridDim())

inline void __syncthreads() { ::mla::cuda::emu::SyncThreads(); }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) ::mla::cuda::emu::Fail("__syncwarp with a partial mask");
  struct None {};
  ::mla::cuda::emu::Collective<None, None>(32, 0x73796e63 /* "sync" */, None{},
                                           [](const void*, void*, const void*) {});
}

// 4- and 8-byte values (8-byte ones are two 32-bit shuffles on the device, the same
// exchange).
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  if (mask != 0xffffffffu || width != 32) {
    ::mla::cuda::emu::Fail("__shfl_xor_sync with a partial mask or width");
  }
  T got{};
  ::mla::cuda::emu::CollectiveBytes(
      32, 0x73686600u + 0x10000u * sizeof(T) + static_cast<uint32_t>(lane_mask), &value, sizeof(T),
      &got, sizeof(T),
      [](const void* in, void* out, const void* context) {
        const int m = *static_cast<const int*>(context);
        for (int lane = 0; lane < 32; ++lane) {
          std::memcpy(static_cast<unsigned char*>(out) + lane * ::mla::cuda::emu::kMaxOperandBytes,
                      static_cast<const unsigned char*>(in) +
                          (lane ^ m) * ::mla::cuda::emu::kMaxOperandBytes,
                      8);
        }
      },
      &lane_mask);
  return got;
}

// Lane l gets lane l − delta's value (its own below delta); 4-byte values.
template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  static_assert(sizeof(T) == 4);
  if (mask != 0xffffffffu || width != 32 || delta > 31) {
    ::mla::cuda::emu::Fail("__shfl_up_sync with a partial mask or width, or delta over 31");
  }
  T got{};
  ::mla::cuda::emu::CollectiveBytes(
      32, 0x73687500u + delta, &value, sizeof(T), &got, sizeof(T),
      [](const void* in, void* out, const void* context) {
        const int d = static_cast<int>(*static_cast<const unsigned*>(context));
        for (int lane = 0; lane < 32; ++lane) {
          std::memcpy(static_cast<unsigned char*>(out) + lane * ::mla::cuda::emu::kMaxOperandBytes,
                      static_cast<const unsigned char*>(in) +
                          (lane >= d ? lane - d : lane) * ::mla::cuda::emu::kMaxOperandBytes,
                      4);
        }
      },
      &delta);
  return got;
}

// The lanes holding the same value as this one (itself included).
inline unsigned __match_any_sync(unsigned mask, unsigned value) {
  if (mask != 0xffffffffu) ::mla::cuda::emu::Fail("__match_any_sync with a partial mask");
  return ::mla::cuda::emu::Collective<unsigned, unsigned>(
      32, 0x6d617463 /* "matc" */, value, [](const void* in, void* out, const void*) {
        const auto at = [](const void* base, int lane) {
          return *reinterpret_cast<const unsigned*>(static_cast<const unsigned char*>(base) +
                                                    lane * ::mla::cuda::emu::kMaxOperandBytes);
        };
        for (int lane = 0; lane < 32; ++lane) {
          unsigned peers = 0;
          for (int other = 0; other < 32; ++other) {
            if (at(in, other) == at(in, lane)) peers |= 1u << other;
          }
          *reinterpret_cast<unsigned*>(static_cast<unsigned char*>(out) +
                                       lane * ::mla::cuda::emu::kMaxOperandBytes) = peers;
        }
      });
}

inline int __any_sync(unsigned mask, int predicate) {
  if (mask != 0xffffffffu) ::mla::cuda::emu::Fail("__any_sync with a partial mask");
  return ::mla::cuda::emu::Collective<int, int>(
      32, 0x616e79 /* "any" */, predicate != 0 ? 1 : 0, [](const void* in, void* out, const void*) {
        int any = 0;
        for (int lane = 0; lane < 32; ++lane) {
          any |= *reinterpret_cast<const int*>(static_cast<const unsigned char*>(in) +
                                               lane * ::mla::cuda::emu::kMaxOperandBytes);
        }
        for (int lane = 0; lane < 32; ++lane) {
          *reinterpret_cast<int*>(static_cast<unsigned char*>(out) +
                                  lane * ::mla::cuda::emu::kMaxOperandBytes) = any;
        }
      });
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  if (mask != 0xffffffffu) ::mla::cuda::emu::Fail("__ballot_sync with a partial mask");
  return ::mla::cuda::emu::Collective<int, unsigned>(
      32, 0x62616c6c /* "ball" */, predicate != 0 ? 1 : 0,
      [](const void* in, void* out, const void*) {
        unsigned ballot = 0;
        for (int lane = 0; lane < 32; ++lane) {
          if (*reinterpret_cast<const int*>(static_cast<const unsigned char*>(in) +
                                            lane * ::mla::cuda::emu::kMaxOperandBytes) != 0) {
            ballot |= 1u << lane;
          }
        }
        for (int lane = 0; lane < 32; ++lane) {
          *reinterpret_cast<unsigned*>(static_cast<unsigned char*>(out) +
                                       lane * ::mla::cuda::emu::kMaxOperandBytes) = ballot;
        }
      });
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }

// Rounded float arithmetic, never contracted (the emulated sources build with
// -ffp-contract=off, so plain expressions are not either).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

// Atomics: relaxed read-modify-writes, as on the device. A fiber runs until it
// synchronizes, so a plain read-modify-write would not be interrupted either; atomic ones
// tell the race-checking build that concurrent updates of one address are intended, while
// a plain access racing with them is still reported.
template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value, std::memory_order_relaxed);
}
template <typename T>
T atomicMax(T* address, T value) {
  std::atomic_ref<T> a(*address);
  T old = a.load(std::memory_order_relaxed);
  while (old < value && !a.compare_exchange_weak(old, value, std::memory_order_relaxed)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* address, T value) {
  std::atomic_ref<T> a(*address);
  T old = a.load(std::memory_order_relaxed);
  while (value < old && !a.compare_exchange_weak(old, value, std::memory_order_relaxed)) {
  }
  return old;
}

inline size_t __cvta_generic_to_shared(const void* p) { return ::mla::cuda::emu::SharedOffset(p); }

[[noreturn]] inline void __trap() { ::mla::cuda::emu::Fail("__trap()"); }

inline unsigned __float_as_uint(float f) { return ::mla::cuda::emu::BitCast<unsigned>(f); }
inline float __uint_as_float(unsigned u) { return ::mla::cuda::emu::BitCast<float>(u); }
inline int __float_as_int(float f) { return ::mla::cuda::emu::BitCast<int>(f); }
inline float __int_as_float(int i) { return ::mla::cuda::emu::BitCast<float>(i); }

// Device code's min and max of integers, and math functions it calls unqualified.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::max;
using std::min;

#endif  // MLA_TESTS_ENGINE_CUDA_EMU_PRELUDE_H_
