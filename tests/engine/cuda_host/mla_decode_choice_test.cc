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
  const absl::StatusOr<K> unknown = ResolveMlaDecodeKernel(K::kAuto, 512, 64, "wgmma");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("MLA_CUDA_DECODE_KERNEL=wgmma"), std::string::npos);
}

}  // namespace
}  // namespace mla::cuda
