#include "tests/engine/cuda_emu/fragments.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "tests/engine/cuda_emu/emu_runtime.h"

namespace mla::cuda::emu {
namespace {

float Bf16(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float Lo(uint32_t w) { return Bf16(static_cast<uint16_t>(w & 0xffffu)); }
float Hi(uint32_t w) { return Bf16(static_cast<uint16_t>(w >> 16)); }

template <typename T>
const T& InOf(const void* in, int rank) {
  return *reinterpret_cast<const T*>(static_cast<const unsigned char*>(in) +
                                     rank * kMaxOperandBytes);
}
template <typename T>
T& OutOf(void* out, int rank) {
  return *reinterpret_cast<T*>(static_cast<unsigned char*>(out) + rank * kMaxOperandBytes);
}

uint16_t SharedHalf(uint32_t byte) {
  uint16_t v;
  std::memcpy(&v, SharedAt(byte, 2), 2);
  return v;
}

// Row `r` (8 b16 values) of matrix `m` of an ldmatrix .x4: the address lane 8m + r gave.
uint16_t LdMatrixValue(const void* in, int m, int r, int c) {
  const uint32_t row = InOf<uint32_t>(in, 8 * m + r);
  if (row % 16 != 0) Fail(absl::StrCat("ldmatrix row address ", row, " not 16-byte aligned"));
  return SharedHalf(row + 2 * c);
}

uint32_t Swizzle128(uint32_t address) { return address ^ (((address >> 7) & 7u) << 4); }

}  // namespace

void ComputeMma16816(const void* in, void* out, const void*) {
  // A: 16 × 16 row-major, B: 16 × 8 (k × n), from the lanes' fragments (PTX ISA, m16n8k16
  // .bf16: lane = 4g + t; a0/a1 rows g / g + 8, columns 2t, 2t + 1; a2/a3 the same at
  // columns + 8; b0 k = 2t, 2t + 1 at column g, b1 k + 8; c0/c1 row g, c2/c3 row g + 8).
  float a[16][16];
  float b[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const MmaOperands& o = InOf<MmaOperands>(in, lane);
    const int g = lane / 4;
    const int t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i % 2);
      const int col = 2 * t + 8 * (i / 2);
      a[row][col] = Lo(o.a[i]);
      a[row][col + 1] = Hi(o.a[i]);
    }
    for (int i = 0; i < 2; ++i) {
      b[2 * t + 8 * i][g] = Lo(o.b[i]);
      b[2 * t + 8 * i + 1][g] = Hi(o.b[i]);
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const MmaOperands& o = InOf<MmaOperands>(in, lane);
    Floats4& d = OutOf<Floats4>(out, lane);
    const int g = lane / 4;
    const int t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2);
      const int col = 2 * t + i % 2;
      float sum = o.c[i];
      for (int k = 0; k < 16; ++k) sum += a[row][k] * b[k][col];
      d.v[i] = sum;
    }
  }
}

// Register m of lane (g, t): without .trans row g's values 2t, 2t + 1 of matrix m; with
// it, the same of the transposed matrix (rows 2t, 2t + 1 of column g).
void LdMatrixX4(const void* in, void* out, bool trans) {
  for (int lane = 0; lane < 32; ++lane) {
    Words4& r = OutOf<Words4>(out, lane);
    const int g = lane / 4;
    const int t2 = 2 * (lane % 4);
    for (int m = 0; m < 4; ++m) {
      const uint16_t lo = trans ? LdMatrixValue(in, m, t2, g) : LdMatrixValue(in, m, g, t2);
      const uint16_t hi = trans ? LdMatrixValue(in, m, t2 + 1, g) : LdMatrixValue(in, m, g, t2 + 1);
      r.v[m] = uint32_t{lo} | (uint32_t{hi} << 16);
    }
  }
}

void ComputeLdMatrixX4(const void* in, void* out, const void*) { LdMatrixX4(in, out, false); }
void ComputeLdMatrixX4Trans(const void* in, void* out, const void*) { LdMatrixX4(in, out, true); }

uint32_t DescriptorByte(uint64_t desc, bool mn_major, int row, int k) {
  const uint32_t start = static_cast<uint32_t>(desc & 0x3FFF) << 4;
  const uint32_t lbo = static_cast<uint32_t>((desc >> 16) & 0x3FFF) << 4;
  const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4;
  if (((desc >> 49) & 7) != 0) Fail("a wgmma descriptor with a base offset");
  if ((desc >> 62) != 1) Fail("a wgmma descriptor without the 128-byte swizzle");
  // 16-bit values, T = 8 per 16 bytes. K-major: ((8, m), (T, 2k)) : ((8T, SBO), (1, T));
  // MN-major: ((T, 8, m), (8, k)) : ((1, T, LBO), (8T, SBO)); then Swizzle<3, 4, 3> on the
  // byte address.
  const uint32_t unswizzled =
      mn_major ? start + 2u * (row % 64) + lbo * (row / 64) + 128u * (k % 8) + sbo * (k / 8)
               : start + 128u * (row % 8) + sbo * (row / 8) + 2u * k;
  return Swizzle128(unswizzled);
}

void RunWgmma(const WgmmaIssue& w) {
  float a[64][16];
  for (int m = 0; m < 64; ++m) {
    for (int k = 0; k < 16; ++k) {
      if (w.a_from_registers) {
        // Warp m / 16's lane (g, t) holds its rows in mma.sync's A layout.
        const int warp = m / 16;
        const int r = m % 16;
        const int g = r % 8;
        const int t = (k % 8) / 2;
        const int reg = (r / 8) + 2 * (k / 8);
        const uint32_t word = w.threads[32 * warp + 4 * g + t].a_regs[reg];
        a[m][k] = k % 2 == 0 ? Lo(word) : Hi(word);
      } else {
        a[m][k] = Bf16(SharedHalf(DescriptorByte(w.desc_a, false, m, k)));
      }
    }
  }
  for (int n = 0; n < w.n; ++n) {
    float b[16];
    for (int k = 0; k < 16; ++k) {
      b[k] = w.b_n_major ? Bf16(SharedHalf(DescriptorByte(w.desc_b, true, n, k)))
                         : Bf16(SharedHalf(DescriptorByte(w.desc_b, false, n, k)));
    }
    for (int m = 0; m < 64; ++m) {
      float sum = 0.0f;
      for (int k = 0; k < 16; ++k) sum += a[m][k] * b[k];
      // Thread (warp m / 16, lane 4g + t) holds row m at tile n / 8, register
      // 2·(row ≥ 8) + (n mod 2), for g = row mod 8 and t = (n mod 8) / 2.
      const int warp = m / 16;
      const int r = m % 16;
      const int lane = 4 * (r % 8) + (n % 8) / 2;
      const int reg = 2 * (r / 8) + n % 2;
      w.threads[32 * warp + lane].d[4 * (n / 8) + reg] += sum;
    }
  }
}

}  // namespace mla::cuda::emu
