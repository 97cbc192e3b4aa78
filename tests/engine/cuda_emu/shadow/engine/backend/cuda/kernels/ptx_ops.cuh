// The emulator's engine/backend/cuda/kernels/ptx_ops.cuh: the same functions, each doing
// what its PTX instruction does (PTX ISA: mma.sync m16n8k16 and ldmatrix fragment layouts,
// cp.async groups, bar.sync), on emu_runtime.h's threads and shared memory.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_PTX_OPS_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_PTX_OPS_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "tests/engine/cuda_emu/emu_runtime.h"
#include "tests/engine/cuda_emu/fragments.h"

namespace mla::cuda {

inline unsigned char* DynamicSharedMemory() { return emu::SharedBase(); }

// d += a · b for one m16n8k16 tile (bf16 inputs, fp32 accumulators).
inline void Mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                     uint32_t b1) {
  const emu::MmaOperands in{{a0, a1, a2, a3}, {b0, b1}, {d[0], d[1], d[2], d[3]}};
  const emu::Floats4 out = emu::Collective<emu::MmaOperands, emu::Floats4>(
      32, 0x6d6d61 /* "mma" */, in, emu::ComputeMma16816);
  for (int i = 0; i < 4; ++i) d[i] = out.v[i];
}

inline void LdMatrixX4Trans(const uint32_t* row, uint32_t (&r)[4]) {
  const emu::Words4 out = emu::Collective<uint32_t, emu::Words4>(
      32, 0x6c6474 /* "ldt" */, emu::SharedOffset(row), emu::ComputeLdMatrixX4Trans);
  std::memcpy(r, out.v, sizeof(r));
}

inline void LdMatrixX4(const uint32_t* row, uint32_t (&r)[4]) {
  const emu::Words4 out = emu::Collective<uint32_t, emu::Words4>(
      32, 0x6c64 /* "ld" */, emu::SharedOffset(row), emu::ComputeLdMatrixX4);
  std::memcpy(r, out.v, sizeof(r));
}

inline void CopyAsync16(uint32_t* smem_dst, const void* global_src, bool valid) {
  if ((reinterpret_cast<uintptr_t>(smem_dst) & 15) != 0 ||
      (valid && (reinterpret_cast<uintptr_t>(global_src) & 15) != 0)) {
    emu::Fail("cp.async of 16 bytes between addresses not 16-byte aligned");
  }
  emu::CopyAsync(smem_dst, global_src, 16, valid);
}

inline void WaitCopiesAsync() {
  emu::CommitCopies();
  emu::WaitCopies(0);
}

inline void CommitCopies() { emu::CommitCopies(); }

template <int kPending>
inline void WaitCopiesExceptNewest() {
  emu::WaitCopies(kPending);
}

template <int kThreadCount>
inline void NamedBarrierSync(int id) {
  if (id == 0) emu::Fail("a named barrier on barrier 0 (__syncthreads')");
  emu::Barrier(id, kThreadCount);
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_PTX_OPS_CUH_
