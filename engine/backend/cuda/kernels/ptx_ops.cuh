// The inline PTX of the tensor-core MLA decode kernels, one wrapper per instruction (sm_80+):
// the m16n8k16 product, ldmatrix, cp.async and its groups, named barriers, and the CTA's
// dynamic shared memory. The kernels' other code is plain CUDA C++. Keeping every
// instruction here lets the CPU emulator (tests/engine/cuda_emu) put its own definitions of
// exactly these functions in their place and run the kernels' remaining code unchanged.
// wgmma (sm_90a): wgmma_ops.cuh.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_PTX_OPS_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_PTX_OPS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace mla::cuda {

// The CTA's dynamic shared memory (its size is the launch's).
__device__ __forceinline__ unsigned char* DynamicSharedMemory() {
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  return dynamic_smem;
}

// d += a · b for one m16n8k16 tile (bf16 inputs, fp32 accumulators).
__device__ __forceinline__ void Mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Four 8 × 8 b16 matrices from shared memory, transposed (mla_decode_mma_rule.h); `row` is
// the 16-byte row this lane addresses.
__device__ __forceinline__ void LdMatrixX4Trans(const uint32_t* row, uint32_t (&r)[4]) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// The same without the transpose: register i of lane (g, t) holds row g, values 2t, 2t + 1
// of matrix i.
__device__ __forceinline__ void LdMatrixX4(const uint32_t* row, uint32_t (&r)[4]) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// One 16-byte asynchronous copy from global to shared memory (cp.async, sm_80+), bypassing
// L1; with `valid` false it reads nothing and writes zeros.
__device__ __forceinline__ void CopyAsync16(uint32_t* smem_dst, const void* global_src,
                                            bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global_src),
               "r"(valid ? 16 : 0)
               : "memory");
}

// Waits for every cp.async this thread issued (the caller's barrier then shows all the
// CTA's copies to all its threads).
__device__ __forceinline__ void WaitCopiesAsync() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Closes this thread's copy group: the copies issued since the last commit.
__device__ __forceinline__ void CommitCopies() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most kPending of this thread's newest copy groups are still in flight.
template <int kPending>
__device__ __forceinline__ void WaitCopiesExceptNewest() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Waits until kThreadCount threads (whole warps) have arrived at barrier `id` (1 .. 15;
// barrier 0 is __syncthreads').
template <int kThreadCount>
__device__ __forceinline__ void NamedBarrierSync(int id) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kThreadCount) : "memory");
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_PTX_OPS_CUH_
