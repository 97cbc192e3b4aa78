// The emulator's engine/backend/cuda/kernels/wgmma_ops.cuh: wgmma as a warpgroup-wide
// instruction whose product lands at the warpgroup's wait (or at issue with
// MLA_EMU_ASYNC=early), reading its shared-memory operands through the descriptors
// (fragments.h).
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_WGMMA_OPS_CUH_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_WGMMA_OPS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "tests/engine/cuda_emu/emu_runtime.h"
#include "tests/engine/cuda_emu/fragments.h"

#define MLA_HAVE_WGMMA 1

namespace mla::cuda {

namespace emu_wgmma {

struct Operands {
  float* d;
  uint32_t a[4];
  uint64_t desc_a;
  uint64_t desc_b;
};

// n, A from registers, B MN-major: the instruction's shape, uniform over the warpgroup.
struct Shape {
  int n;
  bool a_from_registers;
  bool b_n_major;
};

inline void Issue(const Shape& shape, const Operands& mine) {
  struct None {};
  emu::Collective<Operands, None>(
      128, 0x77676d6d00ull + static_cast<uint64_t>(shape.n) /* "wgmm" + n */, mine,
      [](const void* in, void*, const void* context) {
        const Shape& s = *static_cast<const Shape*>(context);
        emu::WgmmaIssue w{};
        w.n = s.n;
        w.a_from_registers = s.a_from_registers;
        w.b_n_major = s.b_n_major;
        const auto* ops = static_cast<const unsigned char*>(in);
        const auto& first = *reinterpret_cast<const Operands*>(ops);
        w.desc_a = first.desc_a;
        w.desc_b = first.desc_b;
        for (int t = 0; t < 128; ++t) {
          const auto& o = *reinterpret_cast<const Operands*>(ops + t * emu::kMaxOperandBytes);
          if (o.desc_b != w.desc_b || (!s.a_from_registers && o.desc_a != w.desc_a)) {
            emu::Fail("wgmma descriptors differ between the warpgroup's threads");
          }
          w.threads[t].d = o.d;
          for (int i = 0; i < 4; ++i) w.threads[t].a_regs[i] = o.a[i];
        }
        emu::DeferToWarpgroupWait(
            [](const void* c) { emu::RunWgmma(*static_cast<const emu::WgmmaIssue*>(c)); }, &w,
            sizeof(w));
      },
      &shape);
}

}  // namespace emu_wgmma

inline void FenceProxyAsyncShared() {}
inline void WgmmaFence() {}
inline void WgmmaCommitAndWait() { emu::WaitAsyncGroup(); }

inline void WgmmaM64N32K16(float (&c)[4][4], uint64_t desc_a, uint64_t desc_b) {
  static constexpr emu_wgmma::Shape kShape{32, false, false};
  emu_wgmma::Issue(kShape, {&c[0][0], {0, 0, 0, 0}, desc_a, desc_b});
}

inline void WgmmaM64N256K16RegA(float (&d)[32][4], const uint32_t (&a)[4], uint64_t desc_b) {
  static constexpr emu_wgmma::Shape kShape{256, true, true};
  emu_wgmma::Issue(kShape, {&d[0][0], {a[0], a[1], a[2], a[3]}, 0, desc_b});
}

template <int N>
inline void PinRegisters(float (&)[N][4]) {}
template <int N>
inline void PinRegisters(uint32_t (&)[N][4]) {}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_WGMMA_OPS_CUH_
