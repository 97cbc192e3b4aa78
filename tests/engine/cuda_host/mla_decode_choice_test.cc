// Which MLA decode split kernel runs (engine/backend/cuda/kernels/mla_decode_choice.cc):
// host logic, no device needed.
#include <gtest/gtest.h>

#include "engine/backend/cuda/kernels/mla_decode.h"

namespace mla::cuda {
namespace {

TEST(MlaDecodeChoiceTest, TensorCoreKernelTakesDeepSeekAndTinyWidthsOnly) {
  EXPECT_TRUE(MlaDecodeMmaSupports(512, 64));  // DeepSeek V2 / V3
  EXPECT_TRUE(MlaDecodeMmaSupports(32, 16));   // tiny models
  EXPECT_TRUE(MlaDecodeMmaSupports(64, 0));    // no rope part
  EXPECT_TRUE(MlaDecodeMmaSupports(512, 128));
  EXPECT_FALSE(MlaDecodeMmaSupports(36, 6));   // latent not a multiple of 8
  EXPECT_FALSE(MlaDecodeMmaSupports(64, 8));   // row not a multiple of 16
  EXPECT_FALSE(MlaDecodeMmaSupports(520, 8));  // past kMlaMaxLatent
  EXPECT_FALSE(MlaDecodeMmaSupports(512, 144));
  EXPECT_FALSE(MlaDecodeMmaSupports(0, 16));
}

TEST(MlaDecodeChoiceTest, ExplicitChoicesAndTheEnvironment) {
  using K = MlaDecodeKernel;
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kSimt, 512, 64, "mma"), K::kSimt);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kMma, 512, 64, nullptr), K::kMma);
  const absl::StatusOr<K> refused = ResolveMlaDecodeKernel(K::kMma, 36, 6, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("36 + 6"), std::string::npos) << refused.status();
  // kAuto: the tensor-core kernel where it fits unless the environment asks for simt.
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, nullptr), K::kMma);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, ""), K::kMma);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, "simt"), K::kSimt);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, "mma"), K::kMma);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 36, 6, "mma"), K::kSimt);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 36, 6, nullptr), K::kSimt);
  // The k-split variant: asked for, or named by the environment, where the widths allow.
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kMmaKSplit, 512, 64, "simt"), K::kMmaKSplit);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, "mma_ksplit"), K::kMmaKSplit);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 36, 6, "mma_ksplit"), K::kSimt);
  EXPECT_FALSE(ResolveMlaDecodeKernel(K::kMmaKSplit, 36, 6, nullptr).ok());
  // The ring kernel: rows of at most kMlaRingMaxWidth values; named by the environment for
  // wider ones it falls back to the tensor-core kernel, asked for explicitly it is refused.
  EXPECT_TRUE(MlaDecodeRingSupports(512, 64));
  EXPECT_TRUE(MlaDecodeRingSupports(32, 16));
  EXPECT_FALSE(MlaDecodeRingSupports(512, 80));
  EXPECT_FALSE(MlaDecodeRingSupports(36, 6));
  // Its caches: any bf16 one of those widths; FP8 rows whose codes, scales and k_pe start
  // 16-byte aligned (DeepSeek's 512 + 16 + 128 bytes), copied as they are.
  EXPECT_TRUE(MlaDecodeRingTakesCache(512, 64, false));
  EXPECT_TRUE(MlaDecodeRingTakesCache(512, 64, true));
  EXPECT_TRUE(MlaDecodeRingTakesCache(32, 16, false));
  EXPECT_FALSE(MlaDecodeRingTakesCache(32, 16, true));   // 68-byte rows
  EXPECT_FALSE(MlaDecodeRingTakesCache(256, 64, true));  // scales end at 264
  EXPECT_FALSE(MlaDecodeRingTakesCache(40, 8, true));    // the scale starts at byte 40
  EXPECT_FALSE(MlaDecodeRingTakesCache(136, 8, true));   // codes in 8-byte chunks (L mod 16)
  EXPECT_FALSE(MlaDecodeRingTakesCache(512, 80, false));
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kMmaRing, 512, 64, "simt"), K::kMmaRing);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, "mma_ring"), K::kMmaRing);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 128, "mma_ring"), K::kMma);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 36, 6, "mma_ring"), K::kSimt);
  const absl::StatusOr<K> too_wide = ResolveMlaDecodeKernel(K::kMmaRing, 512, 128, nullptr);
  ASSERT_FALSE(too_wide.ok());
  EXPECT_NE(too_wide.status().message().find("512 + 128"), std::string::npos) << too_wide.status();
  // The 64-row kernel: the ring's widths.
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kMmaRows64, 512, 64, nullptr), K::kMmaRows64);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, "mma_rows64"), K::kMmaRows64);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 128, "mma_rows64"), K::kMma);
  EXPECT_FALSE(ResolveMlaDecodeKernel(K::kMmaRows64, 512, 128, nullptr).ok());
  // The wgmma build: DeepSeek's widths only; named for others, the 64-row rules.
  EXPECT_TRUE(MlaDecodeWgmmaSupports(512, 64));
  EXPECT_FALSE(MlaDecodeWgmmaSupports(512, 0));
  EXPECT_FALSE(MlaDecodeWgmmaSupports(256, 64));
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 64, "mma_wgmma"), K::kMmaWgmma);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 256, 64, "mma_wgmma"), K::kMmaRows64);
  EXPECT_EQ(*ResolveMlaDecodeKernel(K::kAuto, 512, 128, "mma_wgmma"), K::kMma);
  EXPECT_FALSE(ResolveMlaDecodeKernel(K::kMmaWgmma, 256, 64, nullptr).ok());
  const absl::StatusOr<K> unknown = ResolveMlaDecodeKernel(K::kAuto, 512, 64, "wgmma");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("MLA_CUDA_DECODE_KERNEL=wgmma"), std::string::npos);
}

}  // namespace
}  // namespace mla::cuda
