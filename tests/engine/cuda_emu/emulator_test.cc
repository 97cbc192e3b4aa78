// The emulator's own checks: that it reports the kernel bugs it exists to catch (a
// barrier some threads never reach, lanes that diverge at a warp-wide instruction, shared
// memory read before its asynchronous copy has landed), and that shuffles, ldmatrix and
// mma compute what the PTX ISA says on random data. Compiled with prelude.h, like the
// kernels.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend/cuda/kernels/ptx_ops.cuh"
#include "gtest/gtest.h"
#include "tests/engine/cuda_emu/emu_runtime.h"

namespace mla::cuda::emu {
namespace {

struct Args {
  int mode = 0;
  const uint32_t* in = nullptr;
  uint32_t* out = nullptr;
};

enum Mode { kBarrierMismatch, kDivergentShuffle, kReadBeforeWait, kShuffle, kMma };

__global__ void TestKernel(Args a) {
  uint32_t* smem = reinterpret_cast<uint32_t*>(DynamicSharedMemory());
  const int t = static_cast<int>(threadIdx.x);
  switch (a.mode) {
    case kBarrierMismatch:
      if (t < 32) __syncthreads();  // the other warp never arrives
      break;
    case kDivergentShuffle:
      if (t % 2 == 0) a.out[t] = __shfl_xor_sync(0xffffffffu, t, 1);
      break;
    case kReadBeforeWait:
      CopyAsync16(smem + 4 * t, a.in + 4 * t, true);
      CommitCopies();
      a.out[t] = smem[4 * t];  // no wait: the copy may not have landed
      WaitCopiesExceptNewest<0>();
      break;
    case kShuffle:
      a.out[t] = __shfl_xor_sync(0xffffffffu, a.in[t], 5);
      break;
    case kMma: {
      // A (16 × 16) row-major and B^T (8 × 16) in shared memory as bf16 pairs, loaded with
      // ldmatrix (non-transposed, so B^T's rows are B's columns); D = A · B.
      for (int i = t; i < 16 * 8 + 8 * 8; i += 32) smem[i] = a.in[i];
      __syncwarp();
      uint32_t fa[4];
      uint32_t fb[4];
      // Matrices 0..3 of A: rows 0-7 / 8-15 × values 0-7 / 8-15, in a0..a3's order.
      LdMatrixX4(smem + (t % 8 + 8 * ((t / 8) % 2)) * 8 + 4 * (t / 16), fa);
      // B^T: rows 0-7 × values 0-7 and 8-15 (the last two matrices repeat them).
      LdMatrixX4(smem + 128 + (t % 8) * 8 + 4 * ((t / 8) % 2), fb);
      float d[4] = {0, 0, 0, 0};
      Mma16816(d, fa[0], fa[1], fa[2], fa[3], fb[0], fb[1]);
      for (int i = 0; i < 4; ++i) std::memcpy(&a.out[4 * t + i], &d[i], 4);
      break;
    }
  }
}

absl::Status Launch(Args a, int threads, size_t shared = 4096) {
  return RunFunction([a] { TestKernel(a); }, dim3(1), dim3(threads), shared);
}

float Bf16(uint32_t bits16) {
  const uint32_t u = bits16 << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(CudaEmulatorTest, ReportsABarrierSomeThreadsNeverReach) {
  const absl::Status s = Launch({kBarrierMismatch}, 64);
  EXPECT_NE(s.message().find("deadlock"), absl::string_view::npos) << s;
}

TEST(CudaEmulatorTest, ReportsLanesThatDivergeAtAShuffle) {
  std::vector<uint32_t> out(32);
  const absl::Status s = Launch({kDivergentShuffle, nullptr, out.data()}, 32);
  // The even lanes wait at the shuffle for odd ones that have finished.
  EXPECT_NE(s.message().find("32-thread instruction"), absl::string_view::npos) << s;
}

TEST(CudaEmulatorTest, AsynchronousCopiesLandAtTheWait) {
  std::vector<uint32_t> in(4 * 32, 7u);
  void* device = Allocate(in.size() * 4);
  std::memcpy(device, in.data(), in.size() * 4);
  std::vector<uint32_t> out(32);
  ASSERT_TRUE(Launch({kReadBeforeWait, static_cast<uint32_t*>(device), out.data()}, 32).ok());
  // Late (the default): the read sees shared memory's initial NaN bytes, not the copy.
  for (uint32_t v : out) EXPECT_EQ(v, AsyncEarly() ? 7u : 0xffffffffu);
  Free(device);
}

TEST(CudaEmulatorTest, ShuffleXorExchangesLanes) {
  std::vector<uint32_t> in(64), out(64);
  for (int i = 0; i < 64; ++i) in[i] = 1000u + static_cast<uint32_t>(i);
  ASSERT_TRUE(Launch({kShuffle, in.data(), out.data()}, 64).ok());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], in[(i & ~31) | ((i % 32) ^ 5)]) << i;
}

TEST(CudaEmulatorTest, LdMatrixAndMmaComputeTheProduct) {
  std::mt19937 rng(3);
  std::vector<uint32_t> in(16 * 8 + 8 * 8);
  for (uint32_t& w : in) {
    // Small integers in bf16 (exact products and sums): sign, exponent for 1 .. 4.
    const auto value = [&] { return (rng() % 2 ? 0x8000u : 0u) | (0x3f80u + (rng() % 3) * 0x80u); };
    w = value() | (value() << 16);
  }
  std::vector<uint32_t> out(4 * 32);
  ASSERT_TRUE(Launch({kMma, in.data(), out.data()}, 32).ok());
  auto a = [&](int r, int k) { return Bf16((in[r * 8 + k / 2] >> (16 * (k % 2))) & 0xffffu); };
  auto b = [&](int k, int n) {  // B^T row n
    return Bf16((in[128 + n * 8 + k / 2] >> (16 * (k % 2))) & 0xffffu);
  };
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const int row = lane / 4 + 8 * (i / 2);
      const int col = 2 * (lane % 4) + i % 2;
      float want = 0.0f;
      for (int k = 0; k < 16; ++k) want += a(row, k) * b(k, col);
      float got;
      std::memcpy(&got, &out[4 * lane + i], 4);
      EXPECT_EQ(got, want) << "lane " << lane << " register " << i;
    }
  }
}

}  // namespace
}  // namespace mla::cuda::emu
