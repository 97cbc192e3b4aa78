// The host-boundary shape checks of the CUDA kernels (they run before any launch).
#include <vector>

#include "engine/backend/cuda/kernels/decompressed_attention.h"
#include "engine/backend/cuda/kernels/latent_cache.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/pointwise.h"
#include "engine/backend/cuda/kernels/sampling.h"
#include "gtest/gtest.h"

namespace mla::cuda {
namespace {

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

// Non-null stand-ins: the checks never dereference pointers.
alignas(16) bf16_t g_bf16[4];
int32_t g_i32[4];
float g_f32[4];
MlaDecodePart g_parts[1];

MlaDecodeParams GoodDecode() {
  MlaDecodeParams p;
  p.batch = 2;
  p.num_heads = 16;
  p.kv_lora_rank = 512;
  p.rope_dim = 64;
  p.num_blocks = 10;
  p.max_blocks_per_seq = 4;
  p.softmax_scale = 0.1147f;
  p.num_parts = 1;
  p.num_partial_slots = 2;
  p.q = g_bf16;
  p.kv_cache = g_bf16;
  p.block_table = p.seq_lens = p.split_offsets = g_i32;
  p.parts = g_parts;
  p.partial_out = p.partial_lse = p.lse = g_f32;
  p.out = g_bf16;
  return p;
}

TEST(MlaDecodeChecksTest, AcceptsDeepSeekAndTinyShapes) {
  EXPECT_TRUE(ValidateMlaDecodeParams(GoodDecode()).ok());
  MlaDecodeParams p = GoodDecode();
  p.kv_lora_rank = 32;
  p.rope_dim = 16;
  p.num_heads = 3;
  p.q_rows_per_seq = 2;
  EXPECT_TRUE(ValidateMlaDecodeParams(p).ok());
  p = GoodDecode();
  p.batch = 0;
  p.q = nullptr;
  EXPECT_TRUE(ValidateMlaDecodeParams(p).ok()) << "nothing to do, nothing read";
}

TEST(MlaDecodeChecksTest, RejectsBadShapes) {
  auto expect_invalid = [](auto mutate, const char* what) {
    MlaDecodeParams p = GoodDecode();
    mutate(p);
    const absl::Status s = ValidateMlaDecodeParams(p);
    EXPECT_EQ(s.code(), kInvalid) << what;
    EXPECT_NE(s.message().find("MlaDecode"), absl::string_view::npos) << s;
  };
  expect_invalid([](MlaDecodeParams& p) { p.kv_lora_rank = 576; }, "latent too wide");
  expect_invalid([](MlaDecodeParams& p) { p.kv_lora_rank = 511; }, "odd latent");
  expect_invalid([](MlaDecodeParams& p) { p.rope_dim = 63; }, "odd rope");
  expect_invalid([](MlaDecodeParams& p) { p.block_size = 16; }, "block size");
  expect_invalid([](MlaDecodeParams& p) { p.num_heads = 0; }, "heads");
  expect_invalid([](MlaDecodeParams& p) { p.q_rows_per_seq = 0; }, "s_q");
  expect_invalid([](MlaDecodeParams& p) { p.softmax_scale = 0; }, "scale");
  expect_invalid([](MlaDecodeParams& p) { p.num_parts = 0; }, "no plan");
  expect_invalid([](MlaDecodeParams& p) { p.kv_cache = nullptr; }, "cache");
  expect_invalid([](MlaDecodeParams& p) { p.partial_lse = nullptr; }, "partials");
  expect_invalid([](MlaDecodeParams& p) { p.kv_cache = g_bf16 + 1; }, "unaligned cache");
  // A selection (V3.2's sparse attention) is one query row's, and has entries.
  expect_invalid(
      [](MlaDecodeParams& p) {
        p.selected = g_i32;
        p.topk = 4;
        p.q_rows_per_seq = 2;
      },
      "selection with s_q 2");
  expect_invalid(
      [](MlaDecodeParams& p) {
        p.selected = g_i32;
        p.topk = 0;
      },
      "selection of no entries");
}

TEST(MlaDecodeChecksTest, AcceptsASelectionForOneQueryRow) {
  MlaDecodeParams p = GoodDecode();
  p.selected = g_i32;
  p.topk = 2048;
  EXPECT_TRUE(ValidateMlaDecodeParams(p).ok());
}

TEST(PointwiseChecksTest, RmsNorm) {
  RmsNormParams p{3, 8, 1e-6f, g_bf16, 8, g_bf16, g_bf16, 8};
  EXPECT_TRUE(ValidateRmsNormParams(p).ok());
  p.x_stride = 7;
  EXPECT_EQ(ValidateRmsNormParams(p).code(), kInvalid);
  p.x_stride = 8;
  p.weight = nullptr;
  EXPECT_EQ(ValidateRmsNormParams(p).code(), kInvalid);
  p.num_rows = 0;
  EXPECT_TRUE(ValidateRmsNormParams(p).ok());
}

TEST(PointwiseChecksTest, Rope) {
  RopeParams p;
  p.num_tokens = 2;
  p.num_vectors = 16;
  p.rope_dim = 64;
  p.x = g_bf16;
  p.token_stride = 16 * 192;
  p.vector_stride = 192;
  p.positions = g_i32;
  p.inv_freq = g_f32;
  EXPECT_TRUE(ValidateRopeParams(p).ok());
  p.rope_dim = 63;
  EXPECT_EQ(ValidateRopeParams(p).code(), kInvalid);
  p.rope_dim = 64;
  p.token_stride = 64;
  EXPECT_EQ(ValidateRopeParams(p).code(), kInvalid);
  p.token_stride = 16 * 192;
  p.inv_freq = nullptr;
  EXPECT_EQ(ValidateRopeParams(p).code(), kInvalid);
}

TEST(PointwiseChecksTest, EmbeddingAndSiluMul) {
  EmbeddingParams e{4, 100, 32, g_i32, g_bf16, g_bf16, nullptr};
  EXPECT_TRUE(ValidateEmbeddingParams(e).ok());
  e.vocab_size = 0;
  EXPECT_EQ(ValidateEmbeddingParams(e).code(), kInvalid);
  SiluMulParams s{4, 10, g_bf16, g_bf16 + 1, 20, g_bf16};
  EXPECT_TRUE(ValidateSiluMulParams(s).ok());
  s.in_stride = 9;
  EXPECT_EQ(ValidateSiluMulParams(s).code(), kInvalid);
}

TEST(LatentCacheChecksTest, WriteParams) {
  LatentCacheWriteParams p;
  p.num_tokens = 3;
  p.kv_lora_rank = 512;
  p.rope_dim = 64;
  p.block_size = 64;
  p.num_blocks = 4;
  p.latent = g_bf16;
  p.latent_stride = 576;
  p.k_pe = g_bf16;
  p.k_pe_stride = 576;
  p.slots = g_i32;
  p.kv_cache = g_bf16;
  EXPECT_TRUE(ValidateLatentCacheWriteParams(p).ok());
  p.latent_stride = 500;
  EXPECT_EQ(ValidateLatentCacheWriteParams(p).code(), kInvalid);
  p.latent_stride = 576;
  p.slots = nullptr;
  EXPECT_EQ(ValidateLatentCacheWriteParams(p).code(), kInvalid);
}

TEST(SamplingChecksTest, Argmax) {
  float logits[4] = {};
  ArgmaxParams p{2, 4, logits, 4, g_i32};
  EXPECT_TRUE(ValidateArgmaxParams(p).ok());
  p.logits_stride = 3;
  EXPECT_EQ(ValidateArgmaxParams(p).code(), kInvalid);
  p.logits_stride = 4;
  p.ids = nullptr;
  EXPECT_EQ(ValidateArgmaxParams(p).code(), kInvalid);
}

TEST(SamplingChecksTest, TopK) {
  float logits[8] = {};
  TopKParams p;
  p.num_rows = 2;
  p.vocab_size = 4;
  p.logits = logits;
  p.logits_stride = 4;
  p.k = g_i32;
  p.k_cap = 2;
  p.ids = g_i32;
  p.values = g_f32;
  EXPECT_TRUE(ValidateTopKParams(p).ok());
  p.k_cap = kDeviceTopKMax + 1;
  absl::Status s = ValidateTopKParams(p);
  EXPECT_EQ(s.code(), kInvalid);
  EXPECT_NE(s.message().find("TopK: k_cap must be in [1, 256]"), std::string::npos) << s;
  p.k_cap = 2;
  p.values = nullptr;
  s = ValidateTopKParams(p);
  EXPECT_NE(s.message().find("values is null"), std::string::npos) << s;
  p.num_rows = 0;  // Nothing to read or write.
  EXPECT_TRUE(ValidateTopKParams(p).ok());
  p.logits_stride = 3;
  EXPECT_EQ(ValidateTopKParams(p).code(), kInvalid);
}

TEST(SamplingChecksTest, LogSumExpAndGatherLogits) {
  float logits[8] = {};
  double sums[2] = {};
  LogSumExpParams l{2, 4, logits, 4, g_f32, sums, g_i32};
  EXPECT_TRUE(ValidateLogSumExpParams(l).ok());
  l.log_sum = nullptr;
  absl::Status s = ValidateLogSumExpParams(l);
  EXPECT_NE(s.message().find("LogSumExp: log_sum is null"), std::string::npos) << s;
  l.num_rows = 0;
  EXPECT_TRUE(ValidateLogSumExpParams(l).ok());
  int64_t rows[2] = {0, 1};
  GatherLogitsParams g{2, 4, logits, 4, rows, g_i32, g_f32};
  EXPECT_TRUE(ValidateGatherLogitsParams(g).ok());
  g.logits_stride = 2;
  s = ValidateGatherLogitsParams(g);
  EXPECT_NE(s.message().find("GatherLogits: logits_stride"), std::string::npos) << s;
}

TEST(SamplingChecksTest, WeightSumAndDraw) {
  float logits[8] = {};
  double sums[2] = {};
  DrawRow draws[2];
  WeightSumParams w{2, 4, logits, 4, draws, g_f32, sums};
  EXPECT_TRUE(ValidateWeightSumParams(w).ok());
  w.weight_sum = nullptr;
  absl::Status s = ValidateWeightSumParams(w);
  EXPECT_NE(s.message().find("WeightSum: weight_sum is null"), std::string::npos) << s;
  w.num = 0;
  EXPECT_TRUE(ValidateWeightSumParams(w).ok());
  w.num = 2;
  w.weight_sum = sums;
  w.logits_stride = 3;
  EXPECT_EQ(ValidateWeightSumParams(w).code(), kInvalid);
  DrawParams d{2, 4, logits, 4, draws, g_i32, g_f32};
  EXPECT_TRUE(ValidateDrawParams(d).ok());
  d.ids = nullptr;
  s = ValidateDrawParams(d);
  EXPECT_NE(s.message().find("Draw: ids is null"), std::string::npos) << s;
  d.ids = g_i32;
  d.vocab_size = int64_t{1} << 31;
  d.logits_stride = d.vocab_size;
  s = ValidateDrawParams(d);
  EXPECT_NE(s.message().find("Draw: num must be >= 0 and vocab_size in [1, 2^31)"),
            std::string::npos)
      << s;
}

DecompressedChunkF32Params GoodChunk() {
  DecompressedChunkF32Params p;
  p.num_rows = 3;
  p.heads = 16;
  p.nope = 128;
  p.rope = 64;
  p.v = 128;
  p.latent = 512;
  p.block_size = 64;
  p.q_pos0 = 100;
  p.first_key = 64;
  p.num_keys = 39;
  p.softmax_scale = 0.07f;
  p.cache = g_bf16;
  p.blocks = g_i32;
  p.q = p.kv = g_f32;
  p.q_stride = 16 * 192;
  p.state = p.out = g_f32;
  p.out_stride = 16 * 128;
  return p;
}

// Expects INVALID_ARGUMENT whose message names the kernel and `field`.
void ExpectRefused(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), kInvalid) << field;
  EXPECT_NE(s.message().find("DecompressedChunkF32"), std::string::npos) << s;
  EXPECT_NE(s.message().find(field), std::string::npos) << s;
}

TEST(DecompressedChecksTest, Chunk) {
  EXPECT_TRUE(ValidateDecompressedChunkF32Params(GoodChunk()).ok());
  DecompressedChunkF32Params p = GoodChunk();
  p.nope = 460;  // nope + rope over the shared-memory q
  ExpectRefused(ValidateDecompressedChunkF32Params(p), "nope + rope");
  p = GoodChunk();
  p.v = kDecompressedMaxV + 2;
  ExpectRefused(ValidateDecompressedChunkF32Params(p), "v must be");
  p = GoodChunk();
  p.q_stride = 16 * 192 - 1;
  ExpectRefused(ValidateDecompressedChunkF32Params(p), "q_stride");
  p = GoodChunk();
  p.softmax_scale = 0.0f;
  ExpectRefused(ValidateDecompressedChunkF32Params(p), "softmax_scale");
  p = GoodChunk();
  p.kv = nullptr;
  ExpectRefused(ValidateDecompressedChunkF32Params(p), "kv is null");
  // No keys in the chunk: kv and the cache are not read.
  p.num_keys = 0;
  p.cache = nullptr;
  EXPECT_TRUE(ValidateDecompressedChunkF32Params(p).ok());
  // Not the last chunk: out is not written.
  p = GoodChunk();
  p.last_chunk = false;
  p.out = nullptr;
  EXPECT_TRUE(ValidateDecompressedChunkF32Params(p).ok());
  p.last_chunk = true;
  ExpectRefused(ValidateDecompressedChunkF32Params(p), "out is null");
  // No rows: nothing at all is read.
  p = DecompressedChunkF32Params{};
  p.heads = 1;
  p.nope = p.v = p.latent = p.block_size = 1;
  p.q_stride = 1;
  p.out_stride = 1;
  p.softmax_scale = 1.0f;
  EXPECT_TRUE(ValidateDecompressedChunkF32Params(p).ok());
}

TEST(DecompressedChecksTest, GatherLatent) {
  GatherLatentF32Params p;
  p.cache = g_bf16;
  p.blocks = g_i32;
  p.block_size = 16;
  p.latent = 4;
  p.rope = 2;
  p.out = F32Matrix{g_f32, 1, 4, 4};
  EXPECT_TRUE(ValidateGatherLatentF32Params(p).ok());
  p.out.cols = 3;
  absl::Status s = ValidateGatherLatentF32Params(p);
  EXPECT_EQ(s.code(), kInvalid);
  EXPECT_NE(s.message().find("GatherLatentF32: out must be [keys, 4]"), std::string::npos) << s;
  p.out.cols = 4;
  p.blocks = nullptr;
  s = ValidateGatherLatentF32Params(p);
  EXPECT_NE(s.message().find("blocks is null"), std::string::npos) << s;
  p.out.rows = 0;
  EXPECT_TRUE(ValidateGatherLatentF32Params(p).ok());
}

}  // namespace
}  // namespace mla::cuda
