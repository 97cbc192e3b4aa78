// The warp-wide and warpgroup-wide instructions the decode kernels use, as the PTX ISA
// defines them, computed for all members at once (emu_runtime.h's Collective): mma.sync
// m16n8k16 (bf16 in, fp32 accumulators), ldmatrix .x4 with and without .trans, and wgmma
// m64nNk16 with operands from shared memory by descriptor (128-byte swizzle, PTX's
// canonical K-major and MN-major layouts) or A from registers.
#ifndef MLA_TESTS_ENGINE_CUDA_EMU_FRAGMENTS_H_
#define MLA_TESTS_ENGINE_CUDA_EMU_FRAGMENTS_H_

#include <cstdint>

namespace mla::cuda::emu {

struct MmaOperands {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};
struct Floats4 {
  float v[4];
};
struct Words4 {
  uint32_t v[4];
};

// Collective compute functions (in: the 32 lanes' operands, out: their results).
void ComputeMma16816(const void* in, void* out, const void* context);
void ComputeLdMatrixX4(const void* in, void* out, const void* context);
void ComputeLdMatrixX4Trans(const void* in, void* out, const void* context);

// A warpgroup's wgmma: D (64 × n) += A (64 × 16) · B (16 × n). Operand A from shared
// memory (K-major) by `desc_a`, or from each thread's registers (a_regs: mma.sync's A
// fragment of its warp's 16 rows) when a_from_registers; B by `desc_b`, K-major (b_n_major
// false: row n of B^T holds its 16 k values) or MN-major (n contiguous). Each thread's
// accumulators d (n / 8 tiles of 4 floats, mma.sync's C layout for its warp's 16 rows).
struct WgmmaThread {
  float* d;
  uint32_t a_regs[4];
};
struct WgmmaIssue {
  int n;
  bool a_from_registers;
  bool b_n_major;
  uint64_t desc_a;
  uint64_t desc_b;
  WgmmaThread threads[128];
};
// Runs one issued wgmma (reads shared memory now).
void RunWgmma(const WgmmaIssue& w);

// The byte of shared memory a descriptor's canonical layout puts operand element
// (row, k) at: K-major (row = m or n, k contiguous within 128-byte rows) or MN-major
// (row = n contiguous). Fails on descriptors these kernels do not use (swizzle other than
// 128 bytes, a base offset).
uint32_t DescriptorByte(uint64_t desc, bool mn_major, int row, int k);

}  // namespace mla::cuda::emu

#endif  // MLA_TESTS_ENGINE_CUDA_EMU_FRAGMENTS_H_
