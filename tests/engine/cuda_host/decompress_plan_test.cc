// How the CUDA decompressed attention cuts keys into chunks: the largest chunk under the
// budget, whole 64-key multiples when it can, clear errors otherwise.
#include "engine/backend/cuda/host/decompress_plan.h"

#include <gtest/gtest.h>

#include "engine/backend/backend.h"

namespace mla::cuda {
namespace {

TEST(DecompressPlanTest, LargestMultipleOf64UnderTheBudget) {
  struct Shape {
    int heads, nope, v, latent;
  };
  // DeepSeek-V3 (128 heads), V2-Lite (16 heads), the tiny test models.
  for (const Shape& s :
       {Shape{128, 128, 128, 512}, Shape{16, 128, 128, 512}, Shape{4, 32, 48, 64}}) {
    absl::StatusOr<DecompressChunking> c =
        PlanDecompressChunks(s.heads, s.nope, s.v, s.latent, kMaxDecompressedChunkBytes);
    ASSERT_TRUE(c.ok()) << c.status();
    const int64_t per_key = 4 * (int64_t{s.heads} * (s.nope + s.v) + s.latent);
    EXPECT_EQ(c->keys_per_chunk % 64, 0);
    EXPECT_EQ(c->latent_bytes, 4 * c->keys_per_chunk * s.latent);
    EXPECT_EQ(c->kv_bytes, 4 * c->keys_per_chunk * s.heads * (s.nope + s.v));
    EXPECT_LE(c->latent_bytes + c->kv_bytes, kMaxDecompressedChunkBytes);
    EXPECT_GT((c->keys_per_chunk + 64) * per_key, kMaxDecompressedChunkBytes);
  }
  // DeepSeek's 128 heads: 130 KiB a key, 448 keys in 64 MiB.
  EXPECT_EQ(PlanDecompressChunks(128, 128, 128, 512, kMaxDecompressedChunkBytes)->keys_per_chunk,
            448);
}

TEST(DecompressPlanTest, SmallBudgetsAreNotRounded) {
  const int64_t per_key = 4 * (2 * (8 + 8) + 16);
  absl::StatusOr<DecompressChunking> c = PlanDecompressChunks(2, 8, 8, 16, 7 * per_key + 3);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->keys_per_chunk, 7);
  c = PlanDecompressChunks(2, 8, 8, 16, per_key);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->keys_per_chunk, 1);
}

TEST(DecompressPlanTest, ErrorsNameTheProblem) {
  absl::StatusOr<DecompressChunking> c = PlanDecompressChunks(0, 128, 128, 512, 1 << 20);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("heads 0"), std::string::npos) << c.status();
  c = PlanDecompressChunks(128, 128, 128, 512, 1000);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("one key needs 133120 bytes"), std::string::npos)
      << c.status();
}

TEST(DecompressPlanTest, StateBytes) {
  EXPECT_EQ(DecompressStateBytes(0, 16, 128), 0);
  EXPECT_EQ(DecompressStateBytes(3, 16, 128), 4 * 3 * 16 * 130);
}

}  // namespace
}  // namespace mla::cuda
